"""Node-wide admission (settings ``overload``), real stack: the native request route answers the
excess of a burst ``503`` with ``Retry-After`` before any redis access; the admitted calls complete
and nothing is left behind."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import re
from typing import Iterator

import pytest

from tests.sipp import reject_uac_scenario, uac, uas
from tests.integration.conftest import AGENT_IP, CARRIER_A, DID, Edge, restarted
from tests.integration.replies import final_invite_responses, header_values, status_line
from tests.helpers import wait_until

_runs = itertools.count()
MAX_CPS = 5
RETRY_AFTER_S = 3


@pytest.fixture(scope="module")
def admitting_edge(edge: Edge) -> Iterator[Edge]:
    """The edge with Kamailio restarted to admit MAX_CPS new calls per second node-wide."""
    overload = edge.settings.overload.model_copy(update={"max_cps": MAX_CPS, "retry_after_s": RETRY_AFTER_S})
    with restarted(edge, "kamailio", overload=overload):
        yield edge


def _provision(edge: Edge) -> None:
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"])
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"])
    edge.did(DID, "carrier-a", "bot")


def _rejections(edge: Edge, tag: str) -> int:
    match = re.search(rf'^byoc_edge_rejections_total\{{reason="{tag}"\}} (\d+)', edge.metrics("kamailio"), re.M)
    return int(match.group(1)) if match else 0


def test_burst_above_node_cps_gets_503_with_retry_after_and_admitted_calls_complete(
        admitting_edge: Edge, clean_edge: Edge) -> None:
    edge = clean_edge
    _provision(edge)
    calls = 40
    shed_before = _rejections(edge, "node_cps")
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario="uas_answer.xml", calls=calls, answer_ms=20,
                rtp_echo=False)
    # 40 INVITEs in about 0.2 s from the carrier: far above 5 per second
    carrier = uac(edge.workdir / f"carrier-{next(_runs)}", CARRIER_A, 5070, edge.sip, DID,
                  scenario=reject_uac_scenario(edge.workdir), calls=calls, rate=200, limit=calls)
    assert carrier.wait() == 0, carrier.output()
    finals = final_invite_responses(carrier)
    assert len(finals) == calls
    answered = [m for m in finals if status_line(m) == (200, "OK")]
    shed = [m for m in finals if status_line(m) == (503, "Node CPS Limit Reached")]
    assert len(answered) + len(shed) == calls, [status_line(m) for m in finals]
    # a tail-drop pipe over 1 s windows: the burst spans at most two windows
    assert MAX_CPS <= len(answered) <= 2 * MAX_CPS, len(answered)
    assert all(header_values(m, "Retry-After") == [str(RETRY_AFTER_S)] for m in shed)
    # the refusals never reached the routing: no transaction toward the agent, no call record
    assert len(agent.received_requests("INVITE")) == len(answered)
    agent.stop()
    assert _rejections(edge, "node_cps") - shed_before == len(shed)
    wait_until(lambda: edge.active_leases() == 0 and not edge.call_records(), what="no slot or call left")


def test_calls_above_node_max_calls_get_503_while_the_held_calls_complete(edge: Edge, clean_edge: Edge) -> None:
    """Two calls held up; a third, from another caller, meets the node's concurrent-call ceiling."""
    overload = edge.settings.overload.model_copy(update={"max_calls": 2, "retry_after_s": RETRY_AFTER_S})
    with restarted(edge, "kamailio", overload=overload):
        _provision(edge)
        agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario="uas_answer.xml", calls=3, answer_ms=20,
                    rtp_echo=False)
        held = uac(edge.workdir / f"held-{next(_runs)}", CARRIER_A, 5070, edge.sip, DID, scenario="uac_simple.xml",
                   calls=2, rate=20, hold_ms=4000)
        wait_until(lambda: len(edge.call_records()) == 2 and all(
            edge.redis.hget(k, "answer_ms") for k in edge.call_records()), what="two calls answered and held")
        third = uac(edge.workdir / f"third-{next(_runs)}", CARRIER_A, 5071, edge.sip, DID,
                    scenario=reject_uac_scenario(edge.workdir), calls=1, rate=1, limit=1)
        assert third.wait() == 0, third.output()
        [final] = final_invite_responses(third)
        assert status_line(final) == (503, "Node Call Limit Reached")
        assert header_values(final, "Retry-After") == [str(RETRY_AFTER_S)]
        assert held.wait() == 0, held.output()  # both held calls ended with their BYE answered
        assert len(agent.received_requests("INVITE")) == 2
        agent.stop()
        wait_until(lambda: edge.active_leases() == 0 and not edge.call_records(), what="no slot or call left")


def _transactions_in_use(edge: Edge) -> int:
    """tm's transactions in use, as the admission route reads them (``$stat(inuse_transactions)``)."""
    out = subprocess.run(["kamcmd", "-s", f"unix:{edge.settings.run_dir}/kamailio_ctl", "stats.get_statistics",
                          "inuse_transactions"], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"inuse_transactions\s*=\s*(\d+)", out).group(1))


def test_new_calls_are_shed_while_the_nodes_transactions_are_backed_up(edge: Edge, clean_edge: Edge) -> None:
    """With room for one transaction, a second INVITE that arrives while the first is still
    trying its agent (nobody answers there) is shed at once."""
    overload = edge.settings.overload.model_copy(update={"max_transactions": 1, "retry_after_s": RETRY_AFTER_S})
    with restarted(edge, "kamailio", overload=overload):
        _provision(edge)  # the agent's address has no listener: its INVITE waits for the failover timer
        wait_until(lambda: _transactions_in_use(edge) == 0, timeout=15, what="no transaction in use")
        carrier = uac(edge.workdir / f"carrier-{next(_runs)}", CARRIER_A, 5070, edge.sip, DID,
                      scenario=reject_uac_scenario(edge.workdir), calls=2, rate=10, limit=2)
        assert carrier.wait() == 0, carrier.output()
        finals = [status_line(m) for m in final_invite_responses(carrier)]
        assert sorted(finals) == [(503, "Agent Unreachable"), (503, "Node Overloaded")], finals
        [shed] = [m for m in final_invite_responses(carrier) if status_line(m) == (503, "Node Overloaded")]
        assert header_values(shed, "Retry-After") == [str(RETRY_AFTER_S)]
        wait_until(lambda: edge.active_leases() == 0 and not edge.call_records(), what="no slot or call left")


def _kamcmd(edge: Edge, *args: str) -> str:
    return subprocess.run(["kamcmd", "-s", f"unix:{edge.settings.run_dir}/kamailio_ctl", *args],
                          capture_output=True, text=True, check=True, timeout=10).stdout


def _shed_share(edge: Edge) -> int:
    """The permille of new calls route ADMISSION sheds now (shared variable edge_shed)."""
    return int(re.search(r"value:\s*(\d+)", _kamcmd(edge, "pv.shvGet", "edge_shed")).group(1))


def _udp_receivers(edge: Edge) -> list[int]:
    """PIDs of Kamailio's SIP UDP worker processes (``core.psx``: "udp receiver child=...")."""
    out = _kamcmd(edge, "core.psx")
    pids = [int(pid) for pid, desc in re.findall(r"IDX:.*?PID:\s*(\d+)\s+DSC:\s*(.*)", out) if "udp receiver" in desc]
    if not pids:  # kamcmd prints one field per line
        pids = [int(p) for p, d in re.findall(r"PID:\s*(\d+)\s*\n\s*DSC:\s*([^\n]*)", out) if "udp receiver" in d]
    assert pids, out
    return pids


def test_a_backlog_of_sip_datagrams_sheds_new_calls_until_it_drains(edge: Edge, clean_edge: Edge) -> None:
    """The edge's workers stop reading (SIGSTOP) while a burst of INVITEs arrives: the backlog on
    the SIP socket crosses overload.shed_backlog_kb, the timer raises the shed share to every new
    call, and once the workers read again the queued INVITEs get 503 Node Overloaded with
    Retry-After without reaching the agent.  With the backlog gone the share falls back to 0 and
    the next call is answered."""
    overload = edge.settings.overload.model_copy(update={"shed_backlog_kb": 8, "resume_backlog_kb": 2,
                                                         "retry_after_s": RETRY_AFTER_S})
    with restarted(edge, "kamailio", overload=overload):
        _provision(edge)
        calls = 40
        shed_before = _rejections(edge, "node_overloaded")
        assert _shed_share(edge) == 0
        agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario="uas_answer.xml", calls=calls + 1, answer_ms=20,
                    rtp_echo=False)
        workers = _udp_receivers(edge)
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        try:
            carrier = uac(edge.workdir / f"carrier-{next(_runs)}", CARRIER_A, 5070, edge.sip, DID,
                          scenario=reject_uac_scenario(edge.workdir), calls=calls, rate=400, limit=calls)
            wait_until(lambda: _shed_share(edge) == 1000, timeout=10, what="every new call shed")
            gauges = edge.metrics("kamailio")
            backlog = float(re.search(r"^byoc_edge_sip_backlog_bytes (\S+)", gauges, re.M).group(1))
            assert float(re.search(r"^byoc_edge_shed_ratio (\S+)", gauges, re.M).group(1)) == 1
            assert backlog > 8 * 1024, backlog
        finally:
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
        assert carrier.wait() == 0, carrier.output()
        finals = final_invite_responses(carrier)
        assert len(finals) == calls
        shed = [m for m in finals if status_line(m) == (503, "Node Overloaded")]
        # the share falls by 2 % per 100 ms once the backlog is read: the queued INVITEs meet 98-100 %
        assert len(shed) >= calls - 2, [status_line(m) for m in finals]
        assert all(header_values(m, "Retry-After") == [str(RETRY_AFTER_S)] for m in shed)
        assert len(agent.received_requests("INVITE")) == calls - len(shed)
        assert _rejections(edge, "node_overloaded") - shed_before == len(shed)
        # drained: the share is back to 0 within 5 s (1000 permille at 20 per 100 ms) and a call goes through
        wait_until(lambda: _shed_share(edge) == 0, timeout=15, what="shedding off again")
        assert float(re.search(r"^byoc_edge_shed_ratio (\S+)", edge.metrics("kamailio"), re.M).group(1)) == 0
        after = uac(edge.workdir / f"after-{next(_runs)}", CARRIER_A, 5071, edge.sip, DID, scenario="uac_simple.xml",
                    calls=1, rate=1, hold_ms=200)
        assert after.wait() == 0, after.output()
        agent.stop()
        wait_until(lambda: edge.active_leases() == 0 and not edge.call_records(), what="no slot or call left")
