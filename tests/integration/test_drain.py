"""Draining a node (``edgectl drain``/``undrain``), real stack: a call in progress finishes with its BYE,
new INVITEs and carriers' OPTIONS get ``503 Node Draining`` with ``Retry-After``, ``edgectl status``
shows the drain and the calls left, the drain survives a Kamailio restart, and ``undrain`` puts the
node back in service."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from routing.monitor.sipprobe import sip_options
from routing.ops import services
from tests.helpers import wait_until
from tests.integration.conftest import AGENT_IP, CARRIER_A, DID, Edge
from tests.integration.replies import final_invite_responses, header_values, status_line
from tests.sipp import reject_uac_scenario, uac, uas

_runs = itertools.count()
AGENT_PORT = 5090


def edgectl(edge: Edge, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``edgectl`` with the test edge's settings file."""
    path = Path(edge.settings.run_dir).parent / "settings.yaml"
    return subprocess.run([str(Path(sys.executable).parent / "edgectl"), "--settings", str(path), *args],
                          capture_output=True, text=True, timeout=120)


def kamailio_status(edge: Edge) -> dict[str, object]:
    result = edgectl(edge, "status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return next(s for s in json.loads(result.stdout) if s["name"] == "kamailio")


def draining_gauge(edge: Edge) -> float:
    match = re.search(r"^byoc_edge_draining (\S+)", edge.metrics("kamailio"), re.M)
    assert match, "no byoc_edge_draining in Kamailio's /metrics"
    return float(match.group(1))


@pytest.fixture
def drainable(clean_edge: Edge) -> Iterator[Edge]:
    """The clean edge, provisioned with carrier-a → bot, put back in service whatever the test did."""
    edge = clean_edge
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, 5080)])
    edge.agent("bot", [f"sip:{AGENT_IP}:{AGENT_PORT}"], [f"{AGENT_IP}/32"])
    edge.did(DID, "carrier-a", "bot")
    try:
        yield edge
    finally:
        edgectl(edge, "undrain")


def test_drain_finishes_the_call_in_progress_refuses_new_calls_and_probes_then_undrain(drainable: Edge) -> None:
    edge = drainable
    retry_after = str(edge.settings.drain.retry_after_s)
    assert draining_gauge(edge) == 0
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario="uas_answer.xml", calls=2, answer_ms=20,
                rtp_echo=False)
    held = uac(edge.workdir / f"held-{next(_runs)}", CARRIER_A, 5070, edge.sip, DID, scenario="uac_simple.xml",
               calls=1, hold_ms=6000)
    wait_until(lambda: any(edge.redis.hget(k, "answer_ms") for k in edge.call_records()), what="the call answered")

    result = edgectl(edge, "drain")
    assert result.returncode == 0, result.stderr
    assert "draining since" in result.stdout and "1 call left" in result.stdout
    state = kamailio_status(edge)
    assert state["draining"] is True and state["calls_left"] == 1 and state["healthy"] is True
    assert "503 Node Draining" in str(state["detail"])
    text = edgectl(edge, "status").stdout
    assert "draining" in text and "1 call left" in text
    assert draining_gauge(edge) == 1

    # a new call: 503 Node Draining with Retry-After, never routed to the agent
    refused = uac(edge.workdir / f"new-{next(_runs)}", CARRIER_A, 5071, edge.sip, DID,
                  scenario=reject_uac_scenario(edge.workdir))
    assert refused.wait() == 0, refused.output()
    [final] = final_invite_responses(refused)
    assert status_line(final) == (503, "Node Draining")
    assert header_values(final, "Retry-After") == [retry_after]
    # a carrier's OPTIONS probe fails, so the carrier sends its calls to another node
    probe = sip_options(edge.settings.sip_target[0], edge.port, timeout_s=2, source=CARRIER_A)
    assert (probe.code, probe.reason) == (503, "Node Draining")

    # the call in progress ends normally: its BYE answered 200 through the edge
    assert held.wait() == 0, held.output()
    assert held.final_status() == [(200, "OK")]
    assert agent.received_requests("BYE")
    assert len(agent.received_requests("INVITE")) == 1
    wait_until(lambda: kamailio_status(edge)["calls_left"] == 0, what="no call left")
    assert "0 calls left" in edgectl(edge, "status").stdout
    waited = edgectl(edge, "drain", "--wait", "--timeout", "10", "--json")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["calls_left"] == 0 and json.loads(waited.stdout)["was_draining"] is True

    # back in service: the next call is answered, OPTIONS get 200
    result = edgectl(edge, "undrain")
    assert result.returncode == 0, result.stderr
    assert "in service" in result.stdout
    assert kamailio_status(edge)["draining"] is False
    assert draining_gauge(edge) == 0
    assert sip_options(edge.settings.sip_target[0], edge.port, timeout_s=2, source=CARRIER_A).code == 200
    again = uac(edge.workdir / f"again-{next(_runs)}", CARRIER_A, 5072, edge.sip, DID, scenario="uac_simple.xml",
                calls=1, hold_ms=200)
    assert again.wait() == 0, again.output()
    assert again.final_status() == [(200, "OK")]
    agent.stop()


def test_a_drained_node_stays_drained_across_a_kamailio_restart(drainable: Edge) -> None:
    edge = drainable
    assert edgectl(edge, "drain").returncode == 0
    since = kamailio_status(edge)
    services.restart(edge.settings, "kamailio")
    probe = sip_options(edge.settings.sip_target[0], edge.port, timeout_s=2, source=CARRIER_A)
    assert (probe.code, probe.reason) == (503, "Node Draining")
    state = kamailio_status(edge)
    assert state["draining"] is True and state["calls_left"] == 0 and state["pid"] != since["pid"]
    assert edgectl(edge, "undrain").returncode == 0
    assert sip_options(edge.settings.sip_target[0], edge.port, timeout_s=2, source=CARRIER_A).code == 200
    assert not (Path(edge.settings.run_dir) / "drain.cfg").exists()


def test_drain_wait_times_out_with_the_calls_left_named(drainable: Edge) -> None:
    edge = drainable
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario="uas_answer.xml", calls=1, answer_ms=20,
                rtp_echo=False)
    held = uac(edge.workdir / f"held-{next(_runs)}", CARRIER_A, 5070, edge.sip, DID, scenario="uac_simple.xml",
               calls=1, hold_ms=5000)
    wait_until(lambda: any(edge.redis.hget(k, "answer_ms") for k in edge.call_records()), what="the call answered")
    result = edgectl(edge, "drain", "--wait", "--timeout", "1")
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == ["edgectl: timed out after 1 s: 1 calls left"]
    assert held.wait() == 0, held.output()
    agent.stop()
