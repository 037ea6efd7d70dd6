"""Transfers on the running edge: an inbound carrier call whose agent hands the caller off with a
REFER (RFC 3515), relayed to the carrier rewritten (``refer`` mode); the carrier's NOTIFYs reach
the agent, the outcome is kept in the call record, and an agent that never hangs up is hung up
by the edge after the final 2xx NOTIFY."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from routing.tables import admin
from routing.tables.cdrstore import CdrStore
from routing.tables.model import Agent, Direction, Gateway, ReferToFormat, TransferMode, Trunk
from tests.sipp import uac, uas
from tests.helpers import wait_until

from .conftest import AGENT2_IP, AGENT_IP, CARRIER_A, DID, Edge

GW = 5080
_runs = itertools.count()


def provision(edge: Edge, *, trunk: dict | None = None, agent: dict | None = None) -> None:
    admin.put_trunk(edge.redis, Trunk("carrier-a", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",),
                                      gateways=(Gateway("sip.carrier-a.example", GW),), **(trunk or {})))
    admin.put_agent(edge.redis, Agent("bot", (f"sip:{AGENT_IP}:5090",), (f"{AGENT_IP}/32",), **(agent or {})))
    edge.did(DID, "carrier-a", "bot")


def explain(edge: Edge, call_id: str) -> str:
    """``edgectl explain CALL-ID`` as an operator runs it."""
    path = Path(edge.settings.run_dir).parent / "settings.yaml"
    done = subprocess.run([str(Path(sys.executable).parent / "edgectl"), "--settings", str(path), "explain", call_id],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "250"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def _call_id(run) -> str:
    return re.search(r"^Call-ID:\s*(\S+)", run.messages(), re.M | re.I).group(1)


def _header(message: str, name: str) -> list[str]:
    return [m.strip() for m in re.findall(rf"^{name}:(.*)$", message, re.M | re.I)]


def _transfer(edge: Edge, refer_to: str, sipfrag: str = "200 OK"):
    """The carrier calls the DID; the agent answers and REFERs to ``refer_to``; the carrier
    accepts and NOTIFYs ``sipfrag``.  Returns (carrier, agent) SIPp runs, finished."""
    agent = uas(edge.workdir / f"agent-{next(_runs)}", AGENT_IP, 5090, scenario="uas_agent_refer.xml",
                answer_ms=20, rtp_echo=False, extra=["-key", "refer_to", refer_to])
    carrier = uac(edge.workdir / f"carrier-{next(_runs)}", CARRIER_A, 5070, edge.sip, DID,
                  scenario="uac_transferee.xml", extra=["-key", "sipfrag", sipfrag])
    return carrier, agent


def transfers(edge: Edge, result: str) -> float:
    """``byoc_edge_transfers_total{mode="refer",result=...}`` of Kamailio's /metrics (0 when absent)."""
    for family in text_string_to_metric_families(edge.metrics("kamailio")):
        for sample in family.samples:
            if sample.name == "byoc_edge_transfers_total" and sample.labels == {"mode": "refer", "result": result}:
                return sample.value
    return 0.0


def _record(edge: Edge, since_ms: int) -> dict:
    store = CdrStore(edge.redis, 86400)
    found = wait_until(lambda: store.records(since_ms, int(time.time() * 1000) + 1000),
                       what="the transferred call's record")
    assert len(found) == 1, found
    return found[0]


def test_inbound_call_referred_to_a_number_reaches_the_carrier_rewritten_and_the_silent_agent_is_hung_up(
        clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, trunk={"transfer": TransferMode.REFER, "refer_to": ReferToFormat.SIP},
              agent={"x_headers": ("X-Ctx",)})
    since, accepted = int(time.time() * 1000), transfers(edge, "accepted")
    carrier, agent = _transfer(edge, f"sip:+442071838751@{edge.sip}?X-Ctx=ticket-42&X-Secret=s3cret")
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert agent.wait(timeout=30) == 0, agent.output()

    # the carrier's REFER: the trunk's Refer-To format at its gateway's host, only allowed context
    [refer] = carrier.received_requests("REFER")
    assert _header(refer, "Refer-To") == ["<sip:+442071838751@sip.carrier-a.example?X-Ctx=ticket-42>"]
    assert AGENT_IP not in "".join(_header(refer, "Referred-By")) and _header(refer, "Referred-By")
    # the NOTIFYs reached the agent, and the 202 did
    notifies = agent.received_requests("NOTIFY")
    assert [n.split("\n\n", 1)[-1].strip().splitlines()[-1] for n in notifies] == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]
    assert (202, "Accepted") in agent.received_status()
    # neither side hung up: the edge did, after sip.transfer_bye_delay_s, on both legs
    assert carrier.received_requests("BYE") and agent.received_requests("BYE")

    record = _record(edge, since)
    assert record["status"] == "answered" and record["hangup"] == "edge"
    assert record["transfer"] == {"mode": "refer", "target": "+442071838751", "refer_code": "202", "result": "200",
                                  "refer_to": "sip:+442071838751@sip.carrier-a.example?X-Ctx=ticket-42"}
    assert "transferred and the agent sent no BYE" in edge.log()
    assert transfers(edge, "accepted") == accepted + 1
    assert "transfer (refer) to +442071838751: REFER 202, the carrier's final NOTIFY 200 (done)" in \
        explain(edge, _call_id(carrier))


def test_transfer_refer_to_in_tel_form_for_a_carrier_that_wants_it(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, trunk={"refer_to": ReferToFormat.TEL})
    carrier, agent = _transfer(edge, "tel:+44-20-7183-8751")
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert agent.wait(timeout=30) == 0, agent.output()
    [refer] = carrier.received_requests("REFER")
    assert _header(refer, "Refer-To") == ["<tel:+442071838751>"]


def test_failed_transfer_keeps_the_call_until_a_side_hangs_up(clean_edge: Edge) -> None:
    """A final 486 sipfrag: the edge hangs nobody up; the carrier's caller, still connected to the
    agent, hangs up 6 s later (its scenario), and the record keeps the transfer's result."""
    edge = clean_edge
    provision(edge)
    since, failed = int(time.time() * 1000), transfers(edge, "failed")
    carrier, agent = _transfer(edge, f"sip:+442071838751@{edge.sip}", sipfrag="486 Busy Here")
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert agent.wait(timeout=30) == 0, agent.output()
    assert not carrier.received_requests("BYE")  # the BYE came from the carrier's side, not from the edge
    record = _record(edge, since)
    assert record["hangup"] == "caller"
    assert record["transfer"]["result"] == "486" and record["transfer"]["refer_code"] == "202"
    assert transfers(edge, "failed") == failed + 1
    assert "the carrier's final NOTIFY 486 (failed)" in explain(edge, _call_id(carrier))


@pytest.mark.parametrize(("refer_to", "reason"), [
    ("sip:+19005550123@{edge}", "Transfer Not Allowed"),  # a premium number (node's blocked prefixes)
    ("sip:queue@pbx.unlisted.example", "Transfer Target Not Allowed"),  # a SIP host nobody listed
])
def test_refused_transfer_never_reaches_the_carrier(clean_edge: Edge, refer_to: str, reason: str) -> None:
    edge = clean_edge
    provision(edge)
    agent = uas(edge.workdir / f"agent-{next(_runs)}", AGENT_IP, 5090, scenario="uas_agent_refer_refused.xml",
                answer_ms=20, rtp_echo=False, extra=["-key", "refer_to", refer_to.format(edge=edge.sip)])
    carrier = uac(edge.workdir / f"carrier-{next(_runs)}", CARRIER_A, 5070, edge.sip, DID,
                  scenario="uac_wait_bye.xml")
    assert agent.wait(timeout=30) == 0, agent.output()
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert (403, reason) in agent.received_status()
    assert not carrier.received_requests("REFER")
    assert f"refused by the edge, 403 {reason}" in explain(edge, _call_id(carrier))


def test_transfer_to_an_on_net_sip_uri_passes_as_written(clean_edge: Edge) -> None:
    """A human queue the edge knows as an agent entry: its host is an on-net target."""
    edge = clean_edge
    provision(edge)
    admin.put_agent(edge.redis, Agent("humans", (f"sip:queue@{AGENT2_IP}:5090",), ()))
    carrier, agent = _transfer(edge, f"sip:queue@{AGENT2_IP}:5090?X-Ctx=ticket-42")
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert agent.wait(timeout=30) == 0, agent.output()
    [refer] = carrier.received_requests("REFER")
    assert _header(refer, "Refer-To") == [f"<sip:queue@{AGENT2_IP}:5090>"]  # X-Ctx is not on bot's allow-list
