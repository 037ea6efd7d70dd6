"""Accounts on the running edge with SIPp peers (docs/identity.md#accounts).

Proves: an agent of one account never reaches another account's trunk (403 Trunk Of Another
Account before any carrier is tried, the refusal's record and ``explain`` naming the account and
the stage), a shared route entry opens it; an account's concurrent-call limit and its CPS are
never exceeded under a SIPp burst, with 503 naming the account and Retry-After, and every counter
back to zero; a daily spend cap (an account's, a trunk's) reached while long calls still run, by
the cost those calls have accrued so far, refuses the next call, and each call's cost is counted
once when it ends.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from routing.call.cdr import cost_micros
from routing.tables import admin, keys
from routing.tables.cdrstore import CdrStore
from routing.tables.model import Account, RouteEntry
from tests.helpers import wait_until
from tests.sipp import reject_uac_scenario, uac, uas

from .conftest import AGENT2_IP, AGENT_IP, CARRIER_A, CARRIER_B, DID, Edge
from .replies import final_invite_responses, header_values, status_line

GW_PORT = 5080
AGENT_PORT = 5090
DEST = "+442071838750"
_runs = itertools.count()


def provision(edge: Edge, acme: Account = Account("acme"), globex: Account = Account("globex"),
              **b_extra: object) -> None:
    """acme: carrier-a (route +44, 0.0100), agent bot (AGENT_IP), the DID; globex: carrier-b (route +33,
    0.0200 and ``b_extra``), agent other (AGENT2_IP)."""
    admin.put_account(edge.redis, acme)
    admin.put_account(edge.redis, globex)
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, GW_PORT)], account="acme")
    edge.trunk("carrier-b", [f"{CARRIER_B}/32"], [(CARRIER_B, GW_PORT)], account="globex", **b_extra)
    edge.agent("bot", [f"sip:{AGENT_IP}:{AGENT_PORT}"], [f"{AGENT_IP}/32"], account="acme")
    edge.agent("other", [f"sip:{AGENT2_IP}:{AGENT_PORT}"], [f"{AGENT2_IP}/32"], account="globex")
    edge.did(DID, "carrier-a", "bot")
    edge.route("+44", "carrier-a", "0.0100")


def place(edge: Edge, src: str, number: str = DEST, port: int = 5070) -> tuple[int, str]:
    caller = uac(edge.workdir / f"caller-{next(_runs)}", src, port, edge.sip, number,
                 scenario=reject_uac_scenario(edge.workdir))
    assert caller.wait() == 0, caller.output()
    return caller.final_status()[0]


def edgectl(edge: Edge, *args: str) -> subprocess.CompletedProcess[str]:
    path = Path(edge.settings.run_dir).parent / "settings.yaml"
    return subprocess.run([str(Path(sys.executable).parent / "edgectl"), "--settings", str(path), *args],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "250"})


def records(edge: Edge, since_ms: int, count: int) -> list[dict]:
    def found() -> list[dict]:
        return CdrStore(edge.redis, 86400).records(since_ms, int(time.time() * 1000) + 1000)
    return wait_until(lambda: len(found()) >= count and found(), timeout=20, what=f"{count} call record(s)")


def today() -> str:
    return time.strftime("%Y%m%d", time.gmtime())


def test_an_agent_of_one_account_cannot_reach_another_accounts_trunk(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    since = int(time.time() * 1000) - 1
    gateway = uas(edge.workdir / "gw-a", CARRIER_A, GW_PORT, scenario="uas_answer.xml", answer_ms=50, rtp_echo=False)
    # globex's agent dials +44, served only by acme's carrier-a: refused before any carrier is tried
    assert place(edge, AGENT2_IP) == (403, "Trunk Of Another Account")
    # acme's own agent reaches it
    assert place(edge, AGENT_IP) == (200, "OK")
    gateway.wait()
    assert len(gateway.received_requests("INVITE")) == 1  # only acme's call reached the carrier
    refused, answered = records(edge, since, 2)
    assert (refused["reject_tag"], refused["agent"], refused["account"], refused["sip_code"]) == \
        ("account_route", "other", "globex", 403)
    assert (answered["trunk"], answered["account"], answered["status"]) == ("carrier-a", "acme", "answered")
    explained = json.loads(edgectl(edge, "explain", refused["call_id"], "--json").stdout)
    assert explained["refusal"]["stage"] == "route" and explained["refusal"]["account"] == "globex"
    text = edgectl(edge, "explain", refused["call_id"]).stdout
    assert "403 Trunk Of Another Account [account_route] at stage route, account globex" in text
    replay = " ".join(step["detail"] for step in explained["replay"]["steps"])
    assert "carrier-a skipped: it is of account acme, not globex, and the entry is not shared" in replay
    # the operator marks the entry shared: every account's agents may use it
    admin.put_route(edge.redis, RouteEntry("+44", "carrier-a", Decimal("0.0100"), shared=True), replace=True)
    gateway = uas(edge.workdir / "gw-a2", CARRIER_A, GW_PORT, scenario="uas_answer.xml", answer_ms=50, rtp_echo=False)
    assert place(edge, AGENT2_IP) == (200, "OK")
    gateway.wait()


def test_account_call_limit_never_exceeded_under_a_burst(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, acme=Account("acme", max_calls=3))
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario="uas_answer.xml", calls=12, answer_ms=1500,
                rtp_echo=False)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario=reject_uac_scenario(edge.workdir),
                  calls=12, rate=1000, limit=12)
    # while the burst rings, the account never holds more than its 3 slots
    wait_until(lambda: edge.leases().get(keys.account_lease("acme")) == 3, what="account slots taken")
    assert carrier.wait(timeout=60) == 0, carrier.output()
    reached = len(agent.received_requests("INVITE"))
    agent.stop()
    finals = carrier.final_status()
    assert finals.count((200, "OK")) == 3 and reached == 3  # the agent never saw more calls than the account allows
    assert finals.count((503, "Account Limit Reached: acme")) == 9
    refused = [r for r in final_invite_responses(carrier) if status_line(r) == (503, "Account Limit Reached: acme")]
    assert [header_values(r, "Retry-After") for r in refused] == [["7"]] * 9  # limits.retry_after_s
    wait_until(lambda: edge.leases().get(keys.account_lease("acme"), 0) == 0, what="account slots back to zero")


def test_account_cps_never_exceeded_under_a_burst(clean_edge: Edge) -> None:
    """An account paced at 0.25 calls/s holds one token, refilled every 4 s: a burst of 10 (far
    shorter than 4 s) admits exactly one call; the others are told to retry when the next token comes."""
    edge = clean_edge
    provision(edge, acme=Account("acme", max_cps=0.25))
    gateway = uas(edge.workdir / "gw-a", CARRIER_A, GW_PORT, scenario="uas_answer.xml", calls=10, answer_ms=50,
                  rtp_echo=False)
    agent = uac(edge.workdir / "bot", AGENT_IP, 5070, edge.sip, DEST, scenario=reject_uac_scenario(edge.workdir),
                calls=10, rate=1000, limit=10)
    assert agent.wait(timeout=60) == 0, agent.output()
    gateway.stop()
    finals = agent.final_status()
    assert finals.count((200, "OK")) == 1 and len(gateway.received_requests("INVITE")) == 1
    assert finals.count((503, "Account CPS Limit Reached: acme")) == 9
    refused = [r for r in final_invite_responses(agent) if status_line(r)[0] == 503]
    assert [header_values(r, "Retry-After") for r in refused] == [["4"]] * 9  # the wait for the next token


@pytest.mark.parametrize("capped", ["account", "trunk"])
def test_a_spend_cap_reached_while_long_calls_run_refuses_the_next_call(clean_edge: Edge, capped: str) -> None:
    """carrier-b at 1.20/min billed per second (0.02 a second); cap 0.10: two calls of 8 s
    have accrued it long before they end."""
    edge = clean_edge
    cap = Decimal("0.10")
    provision(edge, globex=Account("globex", daily_spend_cap=cap if capped == "account" else None),
              billing_increment=(1, 1), daily_spend_cap=cap if capped == "trunk" else None)
    edge.route("+33", "carrier-b", "1.2000")
    since = int(time.time() * 1000) - 1
    gateway = uas(edge.workdir / "gw-b", CARRIER_B, GW_PORT, scenario="uas_answer.xml", calls=2, answer_ms=50,
                  rtp_echo=False)
    calls = uac(edge.workdir / "long", AGENT2_IP, 5070, edge.sip, "+33142685300", scenario="uac_simple.xml",
                calls=2, rate=10, hold_ms=8000)
    spend_key = keys.account_spend("globex", today()) if capped == "account" else keys.spend("carrier-b", today())
    wait_until(lambda: int(edge.redis.get(spend_key) or 0) >= cost_micros(cap), timeout=8,
               what=f"the running calls' cost accrued to {cap}")
    assert calls.proc.poll() is None and len(edge.call_records()) == 2  # both still running
    reason = "Account Spend Cap Reached: globex" if capped == "account" else "Daily Spend Cap Reached: carrier-b"
    assert place(edge, AGENT2_IP, "+33142685301", port=5072) == (403, reason)  # the long calls hold port 5070
    assert calls.wait(timeout=30) == 0, calls.output()
    gateway.wait()
    answered = [r for r in records(edge, since, 3) if r["status"] == "answered"]
    assert len(answered) == 2 and all(r["spend_accrued"] != "0.000000" for r in answered)
    total = sum(cost_micros(r["cost"]) for r in answered)  # each call's cost counted once, accrued or at the end
    wait_until(lambda: int(edge.redis.get(keys.spend("carrier-b", today())) or 0) == total,
               what=f"trunk spend {total}")
    assert int(edge.redis.get(keys.account_spend("globex", today())) or 0) == total
