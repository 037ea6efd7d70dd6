"""Origination (carrier -> edge -> agent) with real Kamailio, rtpengine, redis and SIPp."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner


from routing.tables import keys
from routing.ops import services
from routing.cli import main as cli_main
from routing.tables.store import TOPOLOGY_MAX_AGE_S
from tests.helpers import wait_until
from routing.ngclient import NgClient
from routing.call.numbers import NumberFormat

from .conftest import AGENT_IP, CARRIER_A, CARRIER_B, DID, STRANGER, Edge
from .replies import final_invite_responses, header_values
from tests.sipp import reject_uac_scenario, uac, uas

AGENT_PORT = 5090
_runs = itertools.count()


def stamp(block: str) -> float:
    """Time (s) of a SIPp -trace_msg block."""
    text = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)", block).group(1)
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").timestamp()


def provision(edge: Edge, direction: str = "both", trunk_max: int | None = None, agent_max: int | None = None) -> None:
    nanp = NumberFormat(country_code="1", national_length=10, international_prefix="011")
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, 5080)], direction=direction, max_calls=trunk_max,
               number_format=nanp)
    edge.trunk("carrier-b", [f"{CARRIER_B}/32"], [(CARRIER_B, 5080)])
    edge.agent("bot", [f"sip:{AGENT_IP}:{AGENT_PORT}"], [f"{AGENT_IP}/32"], max_calls=agent_max)
    edge.did(DID, "carrier-a", "bot")


def expect_reject(edge: Edge, source: str, number: str, max_forwards: int = 70) -> tuple[int, str]:
    scenario = reject_uac_scenario(edge.workdir, max_forwards=max_forwards)
    caller = uac(edge.workdir / f"uac-{next(_runs)}", source, 5070, edge.sip, number, scenario=scenario)
    assert caller.wait() == 0, caller.output()
    finals = caller.final_status()
    assert len(finals) == 1, caller.messages()
    return finals[0]


def test_carrier_call_reaches_agent_with_media_through_rtpengine(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    before = edge.rtpengine_totals()
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, answer_ms=200)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, "4155550100", caller="+14155550123",
                  hold_ms=1500)
    assert carrier.wait() == 0, carrier.output()
    assert agent.wait() == 0, agent.output()

    invite = agent.received_requests("INVITE")[0]
    # the DID (normalised to E.164), trunk and caller are announced; the carrier's spoofed header is gone
    assert "X-Edge-Trunk: carrier-a" in invite
    assert "X-Edge-Trunk: spoofed" not in invite
    assert f"X-Edge-DID: {DID}" in invite
    assert "X-Edge-Caller: +14155550123" in invite
    assert re.search(rf"^INVITE sip:\{DID}@{AGENT_IP}:{AGENT_PORT} SIP/2.0", invite, re.M)
    # SDP points at rtpengine, not at the carrier
    assert "c=IN IP4 127.0.0.1" in invite
    assert f"c=IN IP4 {CARRIER_A}" not in invite
    assert "Record-Route:" in invite
    # every in-dialog request reached the agent through the edge
    for method in ("ACK", "INFO", "UPDATE", "BYE"):
        assert agent.received_requests(method), f"agent never got {method}"
    assert len(agent.received_requests("INVITE")) == 2  # initial + re-INVITE
    # the answer the carrier saw was rewritten too
    answers = [b for b in carrier.messages().split("-----") if "SIP/2.0 200 OK" in b and "application/sdp" in b]
    assert answers and all(f"c=IN IP4 {AGENT_IP}" not in b for b in answers)
    after = edge.rtpengine_totals()
    relayed = after["Total relayed packets"] - before.get("Total relayed packets", 0)
    assert relayed >= 100, f"rtpengine relayed only {relayed} packets"
    assert after["Total number of 1-way streams"] == before.get("Total number of 1-way streams", 0)


def test_did_from_to_header_when_request_uri_has_no_user(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, answer_ms=100)
    scenario = reject_uac_scenario(edge.workdir)
    text = scenario.read_text().replace(
        "INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0", "INVITE sip:[remote_ip]:[remote_port] SIP/2.0"
    )
    scenario.write_text(text)
    caller = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario=scenario)
    assert caller.wait() == 0, caller.output()
    assert caller.final_status() == [(200, "OK")]
    agent.stop()


def test_stranger_gets_403(clean_edge: Edge) -> None:
    provision(clean_edge)
    assert expect_reject(clean_edge, STRANGER, DID) == (403, "Source Not Allowed")


def test_did_of_another_trunk_gets_404(clean_edge: Edge) -> None:
    provision(clean_edge)
    assert expect_reject(clean_edge, CARRIER_B, DID) == (404, "DID Not Found")


def test_unknown_did_gets_404(clean_edge: Edge) -> None:
    provision(clean_edge)
    assert expect_reject(clean_edge, CARRIER_A, "+14155550199") == (404, "DID Not Found")


def test_outbound_only_trunk_gets_403(clean_edge: Edge) -> None:
    provision(clean_edge, direction="outbound")
    assert expect_reject(clean_edge, CARRIER_A, DID) == (403, "Trunk Not Allowed Inbound")


def test_max_forwards_exhausted_gets_483(clean_edge: Edge) -> None:
    provision(clean_edge)
    assert expect_reject(clean_edge, CARRIER_A, DID, max_forwards=0) == (483, "Too Many Hops")


def test_python_exception_gets_500_and_next_call_works(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    # a hand edit that breaks the data model: a trunk key of the wrong redis type
    # (hand edits of trunks and agents bump edge:version to apply on the next call: docs/redis-schema.md)
    edge.redis.sadd(keys.TRUNKS, "broken")
    edge.redis.set(keys.trunk("broken"), "not a hash")
    edge.redis.incr(keys.VERSION)
    assert expect_reject(edge, CARRIER_A, DID) == (500, "Internal Server Error")
    assert "edge: exception in initial INVITE" in edge.log()
    edge.redis.delete(keys.trunk("broken"))
    edge.redis.srem(keys.TRUNKS, "broken")
    edge.redis.incr(keys.VERSION)
    assert expect_reject(edge, STRANGER, DID) == (403, "Source Not Allowed")


def test_change_in_redis_applies_to_next_call(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    assert expect_reject(edge, CARRIER_B, DID) == (404, "DID Not Found")
    # ops move the DID to carrier-b with redis-cli semantics (plain HSET), no reload
    edge.redis.hset(keys.did(DID), "trunk", "carrier-b")
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, answer_ms=100)
    caller = uac(edge.workdir / "carrier", CARRIER_B, 5070, edge.sip, DID, scenario=reject_uac_scenario(edge.workdir))
    assert caller.wait() == 0, caller.output()
    assert caller.final_status() == [(200, "OK")]
    agent.stop()


def test_edgectl_edit_applies_to_the_very_next_call(clean_edge: Edge) -> None:
    """Workers cache the trunks and agents for up to TOPOLOGY_MAX_AGE_S; an edgectl write moves
    edge:version, which the next call's DID read sees, so the edit is not hidden by the cache."""
    edge = clean_edge
    provision(edge)
    # every worker reads and caches the topology: calls from carrier-a to an unknown DID (404 each)
    warm = uac(edge.workdir / "warm", CARRIER_A, 5070, edge.sip, "+14155550199",
               scenario=reject_uac_scenario(edge.workdir), calls=24, rate=200)
    assert warm.wait() == 0, warm.output()
    assert warm.final_status() == [(404, "DID Not Found")] * 24
    settings = Path(edge.settings.run_dir).parent / "settings.yaml"
    result = CliRunner().invoke(cli_main, ["--settings", str(settings), "trunk", "add", "carrier-a", "--replace",
                                           "--direction", "outbound", "--cidr", f"{CARRIER_A}/32",
                                           "--gateway", f"{CARRIER_A}:5080"])
    assert result.exit_code == 0, result.output
    caller = uac(edge.workdir / "next", CARRIER_A, 5071, edge.sip, DID, scenario=reject_uac_scenario(edge.workdir))
    assert caller.wait() == 0, caller.output()
    assert caller.final_status() == [(403, "Trunk Not Allowed Inbound")]
    # the call came while the workers' cached copies were young enough to be reused
    last_warm = max(stamp(b) for b in warm.messages().split("-" * 47) if "message received" in b)
    invite = next(b for b in caller.messages().split("-" * 47) if "message sent" in b and "INVITE sip" in b)
    assert stamp(invite) - last_warm < TOPOLOGY_MAX_AGE_S


def test_agent_unreachable_gets_503_and_releases_slots(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, trunk_max=5)
    # nothing listens on the agent port: the branch times out (failover_timeout_ms)
    code, reason = expect_reject(edge, CARRIER_A, DID)
    assert (code, reason) == (503, "Agent Unreachable")


def test_cancel_before_answer_releases_slots(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, trunk_max=1)
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario="uas_cancel.xml", rtp_echo=False)
    caller = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario="uac_cancel.xml")
    assert caller.wait() == 0, caller.output()
    assert agent.wait() == 0, agent.output()
    assert (487, "Request Terminated") in caller.received_status()


def test_store_down_fails_closed_within_500ms(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    pid = int((edge.settings.run_dir / "pids" / "redis.pid").read_text())
    os.kill(pid, signal.SIGSTOP)  # redis hangs: every command times out
    try:
        scenario = reject_uac_scenario(edge.workdir)
        caller = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario=scenario)
        assert caller.wait() == 0, caller.output()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert caller.final_status() == [(503, "Routing Store Unavailable")]
    blocks = caller.messages().split("-----------------------------------------------")
    sent = next(b for b in blocks if "message sent" in b and "INVITE sip" in b)
    got = next(b for b in blocks if "message received" in b and "SIP/2.0 503" in b)
    assert stamp(got) - stamp(sent) < 0.5
    [final] = final_invite_responses(caller)
    assert header_values(final, "Retry-After") == ["7"]  # limits.retry_after_s


def test_store_killed_fails_closed_then_recovers(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    run_dir = edge.settings.run_dir
    pid = int((run_dir / "pids" / "redis.pid").read_text())
    os.kill(pid, signal.SIGKILL)  # connection refused from now on
    wait_until(lambda: not services._alive(pid), what="redis gone")
    scenario = reject_uac_scenario(edge.workdir)
    for attempt in range(3):  # every worker, not only the first, answers 503
        caller = uac(edge.workdir / f"down-{attempt}", CARRIER_A, 5070, edge.sip, DID, scenario=scenario)
        assert caller.wait() == 0, caller.output()
        assert caller.final_status() == [(503, "Routing Store Unavailable")]
    services.up(edge.settings)  # restarts only redis; its append-only file keeps the routing tables
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, answer_ms=100)
    caller = uac(edge.workdir / "up", CARRIER_A, 5070, edge.sip, DID, scenario=scenario)
    assert caller.wait() == 0, caller.output()
    assert caller.final_status() == [(200, "OK")]
    agent.stop()


def test_delayed_offer_invite_without_sdp(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario="uas_answer.xml", answer_ms=50, rtp_echo=False)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario="uac_late_offer.xml", hold_ms=300)
    assert carrier.wait() == 0, carrier.output()
    assert agent.wait() == 0, agent.output()
    # the agent's offer in the 200 reached the carrier rewritten to rtpengine's address
    assert "200 offer c=127.0.0.1" in carrier.logs()
    ack = agent.received_requests("ACK")[0]
    assert "c=IN IP4 127.0.0.1" in ack and f"c=IN IP4 {CARRIER_A}" not in ack


def test_media_relay_not_answering_refuses_the_call_503(clean_edge: Edge) -> None:
    """rtpengine hangs: the branch route's offer fails, the branch is dropped (never relayed with the
    carrier's own SDP) and the carrier gets 503 with Retry-After; the slots are released."""
    edge = clean_edge
    provision(edge)
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario="uas_wait_bye.xml", rtp_echo=False)
    pid = int((edge.settings.run_dir / "pids" / "rtpengine.pid").read_text())
    os.kill(pid, signal.SIGSTOP)  # every ng command times out
    try:
        caller = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario=reject_uac_scenario(edge.workdir))
        assert caller.wait() == 0, caller.output()
    finally:
        os.kill(pid, signal.SIGCONT)
        # the rtpengine module disabled the node after the timeouts: have it use it again at once
        subprocess.run(["kamcmd", "-s", f"unix:{edge.settings.run_dir}/kamailio_ctl", "rtpengine.enable", "all", "1"],
                       check=True, capture_output=True, timeout=10)
    assert caller.final_status() == [(503, "Media Relay Unavailable")]
    assert not agent.received_requests("INVITE")
    agent.stop()
    wait_until(lambda: edge.active_leases() == 0, timeout=10, what="slots released")
    # the offer queued while rtpengine hung creates a session once it resumes; nobody will send
    # RTP to it, so rtpengine's own timeout would delete it: the test does it now
    wait_until(lambda: edge.rtpengine_sessions() == 1, timeout=10, what="the late offer's session")
    call_id = re.search(r"^Call-ID:\s*(\S+)", caller.messages(), re.M | re.I).group(1)
    with NgClient("127.0.0.1", edge.settings.rtpengine.ng_port, 2.0) as ng:
        ng.command("delete", **{"call-id": call_id})
