"""The 2xx of an initial INVITE taken by the native route ANSWERED (routing/kamailio/fastanswer.py),
against the running edge with SIPp peers.

Proves: a plain answer is noted by the native route (its htable entry, which the plugin never
writes), the call clock then puts the answer in the live call hash and extends the leases from the
admission's ``admission_ttl_s`` to ``lease_ttl_s``, the answered counter and the setup-time histogram
count it once, and the record has the answer time, the hop that answered and the callee's codecs.
Answers with something to decide stay with the plugin, proven by their own tests: a session-timer
takeover (test_session_timers.py: the 2xx gains ``Session-Expires``), a held answer
(test_hold_answer.py), a policy breach in the answer (test_media.py), a failover hop's record
(test_call_records.py).
"""

from __future__ import annotations

import re
import subprocess
import time

from routing.ops.render import admission_ttl_s
from routing.tables import keys
from tests.helpers import wait_until
from tests.sipp import uac, uas

from .conftest import AGENT_IP, CARRIER_A, DID, Edge
from .test_call_records import SIMPLE_UAC, SIMPLE_UAS, wait_records


def _htable_get(edge: Edge, table: str, key: str) -> str | None:
    """``kamcmd htable.get``: the entry's value, None when there is none."""
    out = subprocess.run(["kamcmd", "-s", f"unix:{edge.settings.run_dir}/kamailio_ctl", "htable.get", table, key],
                         capture_output=True, text=True, timeout=10)
    if out.returncode != 0 or "error" in out.stdout.lower():
        return None
    match = re.search(r"value:\s*(.*)", out.stdout, re.S)
    return match.group(1).strip() if match else out.stdout.strip()


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one series of a Prometheus exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit("}", 1)[1].split()[0])  # xhttp_prom: "{labels} value timestamp"
    return 0.0


def _provision(edge: Edge) -> None:
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"])
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"])
    edge.did(DID, "carrier-a", "bot")


def test_a_plain_answer_is_taken_natively_and_the_call_clock_extends_its_leases(clean_edge: Edge) -> None:
    edge = clean_edge
    _provision(edge)
    before = edge.metrics("kamailio")
    since = int(time.time() * 1000) - 1
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario=SIMPLE_UAS, answer_ms=100)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario=SIMPLE_UAC, hold_ms=5000)

    prefix = keys.call(edge.settings.node, "")

    def answered() -> tuple[str, dict] | None:
        for key in edge.redis.scan_iter(match=prefix + "*"):
            fields = edge.redis.hgetall(key)
            if fields.get("answer_ms"):
                return key[len(prefix):], fields
        return None

    call_id, fields = wait_until(answered, timeout=10, what="the answer in the live call hash (call clock)")
    note = _htable_get(edge, "answered", call_id)
    assert note is not None, "the native route ANSWERED noted no answer"
    sec, usec, code, hop, sdp = note.split("|", 4)
    assert int(sec) * 1000 + int(usec) // 1000 == int(fields["answer_ms"]), (note, fields["answer_ms"])
    assert (code, hop) == ("200", f"bot sip:{AGENT_IP}:5090") and sdp.startswith("v=0"), note
    assert fields["codecs_callee"].startswith("PCMU"), fields
    # the leases now last lease_ttl_s (the longest call + 60 s), no longer the admission's admission_ttl_s
    lease_ttl, admission_ttl = edge.settings.sip.max_call_duration_s + 60, admission_ttl_s(edge.settings)
    assert abs(lease_ttl - admission_ttl) > 5, (lease_ttl, admission_ttl)
    member = keys.lease_member(edge.settings.node, call_id)
    answer_s = int(fields["answer_ms"]) / 1000
    for lease in (keys.trunk_lease("carrier-a"), keys.agent_lease("bot")):
        expiry = edge.redis.zscore(lease, member)
        # extended by the call clock's next tick (at most ~1 s after the answer) to lease_ttl_s from then
        assert expiry is not None and 0 <= expiry - (answer_s + lease_ttl) < 2.5, (lease, expiry - answer_s, lease_ttl)
    assert _htable_get(edge, "extend", call_id) is None  # done by the clock
    assert carrier.wait() == 0, carrier.output()
    assert agent.wait() == 0, agent.output()
    (rec,) = wait_records(edge, since, 1)
    assert rec["status"] == "answered" and rec["gateways"] == [{"gateway": f"bot sip:{AGENT_IP}:5090", "result": "200"}]
    assert rec["answer_ms"] == int(fields["answer_ms"]) and rec["codecs_callee"][0].startswith("PCMU"), rec
    wait_until(lambda: _htable_get(edge, "answered", call_id) is None, timeout=5, what="the note removed with the record")
    after = edge.metrics("kamailio")
    labels = {"direction": "origination", "trunk": "carrier-a", "agent": "bot"}
    assert _sample(after, "byoc_edge_calls_answered_total", **labels) - _sample(
        before, "byoc_edge_calls_answered_total", **labels) == 1
    setup = ("byoc_edge_setup_time_seconds_count", {"direction": "origination", "trunk": "carrier-a"})
    assert _sample(after, setup[0], **setup[1]) - _sample(before, setup[0], **setup[1]) == 1
