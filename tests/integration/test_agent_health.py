"""Agent health and failover among an agent's URIs on the running edge: OPTIONS probes of every
agent URI (a URI marked down is skipped at once, an agent with every URI down is refused 503 at
once), the state in ``edgectl agent show`` and the exporter, and the per-agent answer timeout
that fails a ringing or silent URI over long before the node's ringing timeout."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path

from routing.tables import admin, keys
from routing.tables.cdrstore import CdrStore
from routing.tables.model import CallerIdPolicy, Did, ForwardedCallerId
from routing.tables.model.did import parse_fallback
from tests.sipp import PCMU_ANSWER_SDP, gateway_scenario, reject_uac_scenario, reply, uac, uas
from tests.helpers import wait_until

from .conftest import AGENT2_IP, AGENT_IP, CARRIER_A, CARRIER_B, DID, Edge
from .replies import final_invite_responses, header_values, status_line
from .test_edgectl import edgectl

LIVE = f"sip:{AGENT_IP}:5090"
DEAD = f"sip:{AGENT2_IP}:5090"  # nothing listens there


def provision(edge: Edge, uris: list[str], **agent: object) -> None:
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], probe=False)
    edge.agent("bot", uris, [], **agent)
    edge.did(DID, "carrier-a", "bot")


def live_agent(edge: Edge):
    """An agent endpoint that answers OPTIONS (200) and INVITEs (180, then 200 after 100 ms)."""
    return uas(edge.workdir / "agent", AGENT_IP, 5090, scenario=gateway_scenario(edge.workdir, 200, 200),
               calls=100000, answer_ms=100)


def call(edge: Edge, name: str) -> tuple[str, float]:
    """One carrier call to the DID ended by its final response: that response, and the seconds
    from the INVITE to it as the caller's own trace times them (SIPp ``-trace_msg``)."""
    caller = uac(edge.workdir / name, CARRIER_A, 5070, edge.sip, DID, scenario=reject_uac_scenario(edge.workdir))
    assert caller.wait() == 0, caller.output()
    [final] = final_invite_responses(caller)
    return final, _invite_to_final_s(caller.messages())


def _invite_to_final_s(trace: str) -> float:
    """Seconds between the first INVITE sent and the first final response received."""
    sent = received = None
    for block in trace.split("-----------------------------------------------"):
        stamp = re.search(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d+)", block)
        if stamp is None:
            continue
        when = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        if sent is None and "message sent" in block and re.search(r"^INVITE ", block, re.M):
            sent = when
        if received is None and "message received" in block and re.search(r"^SIP/2\.0 [2-6]\d\d ", block, re.M):
            received = when
    assert sent is not None and received is not None, trace[-2000:]
    return received - sent


def states(edge: Edge) -> dict[str, str]:
    return {u: dict(p.split("=", 1) for p in v.split(";"))["state"]
            for u, v in edge.redis.hgetall(keys.agent_health("bot")).items()}


def test_a_uri_marked_down_is_skipped_at_once_and_an_agent_all_down_is_refused(probing_edge: Edge,
                                                                              clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, [DEAD, LIVE])
    agent = live_agent(edge)
    wait_until(lambda: states(edge) == {DEAD: "down", LIVE: "up"}, timeout=15, what="the dead URI marked down")
    assert edge.redis.smembers(keys.AGENTS_DOWN) == {f"bot/{DEAD}"}
    shown = json.loads(edgectl(edge, "agent", "show", "bot", "--json").stdout)["health"]
    assert shown[DEAD]["state"] == "down" and shown[LIVE]["state"] == "up" and shown[LIVE]["code"] == 200
    assert "health: up (last OPTIONS: 200 Options 200" in edgectl(edge, "agent", "show", "bot").stdout
    metrics = edge.metrics("exporter")
    assert f'byoc_edge_agent_uri_up{{agent="bot",uri="{DEAD}"}} 0.0' in metrics
    assert f'byoc_edge_agent_uri_up{{agent="bot",uri="{LIVE}"}} 1.0' in metrics

    # the call goes straight to the live URI: the dead one is never tried, no failover wait
    failovers = edge.log().count("edge: failover")
    final, took = call(edge, "call-1")
    assert status_line(final) == (200, "OK")
    assert edge.log().count("edge: failover") == failovers
    assert took < 0.9, took  # sip.failover_timeout_ms is 1 s here: a tried dead URI would cost it
    assert len(agent.received_requests("INVITE")) == 1

    # every URI down: 503 at once, with Retry-After, and no slot taken
    agent.stop()
    wait_until(lambda: states(edge) == {DEAD: "down", LIVE: "down"}, timeout=15, what="every URI down")
    final, took = call(edge, "call-2")
    assert status_line(final) == (503, "All Agent URIs Down")
    assert header_values(final, "Retry-After") == ["7"]
    assert took < 0.5, took
    assert edge.active_leases() == 0

    # the URI answers again: up after 2 answered probes, and takes the next call
    agent = live_agent(edge)
    wait_until(lambda: states(edge)[LIVE] == "up", timeout=15, what="the live URI up again")
    assert status_line(call(edge, "call-3")[0]) == (200, "OK")


def test_answer_timeout_fails_a_ringing_uri_over_long_before_the_ringing_timeout(clean_edge: Edge) -> None:
    """The first URI rings for ever; the node's sip.ringing_timeout_ms (10 s here) would hold the
    caller that long, the agent's answer timeout (1.5 s) moves the call to the next URI."""
    edge = clean_edge
    provision(edge, [f"sip:{AGENT2_IP}:5090", LIVE], answer_timeout_ms=1500, probe=False)
    ringing = uas(edge.workdir / "ringing", AGENT2_IP, 5090, scenario="uas_cancel.xml", rtp_echo=False)
    agent = live_agent(edge)
    final, took = call(edge, "call")
    assert status_line(final) == (200, "OK")
    assert 1.4 <= took < 4.0, took
    assert ringing.wait(timeout=10) == 0, ringing.output()  # it got the CANCEL
    assert len(agent.received_requests("INVITE")) == 1


def test_answer_timeout_bounds_a_silent_uri_too(clean_edge: Edge) -> None:
    """A URI that sends nothing at all is failed over after the answer timeout (0.4 s here) when it
    is shorter than sip.failover_timeout_ms (1 s here)."""
    edge = clean_edge
    provision(edge, [DEAD, LIVE], answer_timeout_ms=400, probe=False)
    live_agent(edge)
    final, took = call(edge, "call")
    assert status_line(final) == (200, "OK")
    assert 0.35 <= took < 0.9, took


def test_an_agent_failing_on_every_uri_reaches_the_dids_fallback_agent(clean_edge: Edge) -> None:
    """bot answers 503; the DID's fallback is another agent (a human queue), which answers; its own
    slot is taken for the call and given back after it."""
    edge = clean_edge
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], probe=False)
    edge.agent("bot", [LIVE], [], probe=False)
    edge.agent("humans", [f"sip:queue@{AGENT2_IP}:5090"], [], probe=False, max_calls=1)
    admin.put_did(edge.redis, Did(DID, "carrier-a", "bot", parse_fallback("agent:humans", "test")))
    busy = uas(edge.workdir / "bot", AGENT_IP, 5090, scenario=gateway_scenario(edge.workdir, 200, 503), calls=100000)
    humans = uas(edge.workdir / "humans", AGENT2_IP, 5090, scenario=gateway_scenario(edge.workdir, 200, 200),
                 calls=100000, answer_ms=100)
    since = int(time.time() * 1000)
    final, _ = call(edge, "call")
    assert status_line(final) == (200, "OK")
    assert len(busy.received_requests("INVITE")) == 1 and len(humans.received_requests("INVITE")) == 1
    [record] = wait_until(lambda: CdrStore(edge.redis, 86400).records(since, int(time.time() * 1000) + 1000),
                          what="the call's record")
    assert [g["gateway"] for g in record["gateways"]] == [f"bot {LIVE}", f"fallback humans sip:queue@{AGENT2_IP}:5090"]
    assert [g["result"] for g in record["gateways"]] == ["503", "200"]
    explained = edgectl(edge, "explain", "--source", CARRIER_A, "--to", DID).stdout
    assert f"fallback after the agent's URIs: sip:queue@{AGENT2_IP}:5090" in explained


def test_a_silent_agent_reaches_the_dids_fallback_sip_uri(clean_edge: Edge) -> None:
    """bot's only URI sends nothing (answer timeout 0.4 s); the fallback is a PBX queue on a host
    bot may transfer to."""
    edge = clean_edge
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], probe=False)
    edge.agent("bot", [DEAD], [], probe=False, answer_timeout_ms=400, transfer_hosts=(AGENT_IP,))
    admin.put_did(edge.redis, Did(DID, "carrier-a", "bot", parse_fallback(f"uri:sip:queue@{AGENT_IP}:5090", "test")))
    pbx = live_agent(edge)
    final, took = call(edge, "call")
    assert status_line(final) == (200, "OK")
    assert took < 0.9, took
    [invite] = pbx.received_requests("INVITE")
    assert re.search(rf"^INVITE sip:queue@{re.escape(AGENT_IP)}:5090 SIP/2\.0", invite, re.M), invite


def _silent_until_answer(edge: Edge) -> Path:
    """An agent that sends no 180/183: 100, then 200 after ``-d`` ms (it is getting ready)."""
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="agent answers without ringing">
  <recv request="INVITE" crlf="true"/>
{reply("100 Trying")}  <pause/>
{reply("200 OK", tag="01", dialog=True, retrans=True, sdp=PCMU_ANSWER_SDP)}  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
{reply("200 OK")}</scenario>
"""
    path = edge.workdir / "agent_no_ringing.xml"
    path.write_text(text)
    return path


def _received_at(trace: str, status: str) -> list[tuple[float, str]]:
    """(seconds after the first INVITE sent, To header) of every ``status`` response received."""
    out, sent = [], None
    for block in trace.split("-----------------------------------------------"):
        stamp = re.search(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d+)", block)
        if stamp is None:
            continue
        when = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        if sent is None and "message sent" in block and re.search(r"^INVITE ", block, re.M):
            sent = when
        if sent is not None and "message received" in block and re.search(rf"^SIP/2\.0 {status} ", block, re.M):
            out.append((when - sent, re.search(r"^To:(.*)$", block, re.M | re.I).group(1).strip()))
    return out


def test_ringback_reaches_the_caller_when_the_agent_is_slow_to_ring(clean_edge: Edge) -> None:
    """The agent takes 2 s to answer and never rings; the trunk's ringback_ms (0.5 s) has the edge
    send the caller 180 Ringing at 0.5 s (the ringback timer ticks every 0.1 s), then the agent's 200."""
    edge = clean_edge
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], probe=False, ringback_ms=500)
    edge.agent("bot", [LIVE], [], probe=False)
    edge.did(DID, "carrier-a", "bot")
    uas(edge.workdir / "agent", AGENT_IP, 5090, scenario=_silent_until_answer(edge), answer_ms=2000, rtp_echo=False)
    caller = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario=reject_uac_scenario(edge.workdir))
    assert caller.wait() == 0, caller.output()
    [(rang, to)] = _received_at(caller.messages(), "180")
    assert 0.45 <= rang < 0.9, rang
    assert "SIPpTag01" not in to  # the edge's own 180 (its own To-tag)
    answered = _received_at(caller.messages(), "200")[0][0]  # the INVITE's (then the BYE's)
    assert answered >= 1.9
    assert "edge: ringback call-id=" in edge.log()


def test_no_ringback_of_the_edges_own_when_the_agent_rings_in_time(clean_edge: Edge) -> None:
    edge = clean_edge
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], probe=False, ringback_ms=500)
    edge.agent("bot", [LIVE], [], probe=False)
    edge.did(DID, "carrier-a", "bot")
    uas(edge.workdir / "agent", AGENT_IP, 5090, scenario=gateway_scenario(edge.workdir, 200, 200), answer_ms=1000,
        rtp_echo=False)  # 180 at once, 200 after 1 s
    caller = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario=reject_uac_scenario(edge.workdir))
    assert caller.wait() == 0, caller.output()
    [(_, to)] = _received_at(caller.messages(), "180")
    assert "SIPpTag01" in to  # the agent's 180 only


def test_a_silent_agent_reaches_the_dids_fallback_number_through_least_cost_routing(clean_edge: Edge) -> None:
    """bot sends nothing (answer timeout 0.4 s); the DID's fallback is a number, reached over
    carrier-b's gateway with the caller's From, a Diversion naming the DID, and none of the
    X-Edge-* headers meant for agents; the carrier's slot is taken and given back."""
    edge = clean_edge
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], probe=False)
    edge.trunk("carrier-b", [f"{CARRIER_B}/32"], [(CARRIER_B, 5080)], probe=False)
    edge.route("+44", "carrier-b", "0.0200")
    edge.agent("bot", [DEAD], [], probe=False, answer_timeout_ms=400)
    admin.put_did(edge.redis, Did(DID, "carrier-a", "bot", parse_fallback("number:+442071838751", "test")))
    human = uas(edge.workdir / "human", CARRIER_B, 5080, scenario=gateway_scenario(edge.workdir, 200, 200),
                calls=100000, answer_ms=100)
    since = int(time.time() * 1000)
    final, _ = call(edge, "call")
    assert status_line(final) == (200, "OK")
    [invite] = human.received_requests("INVITE")
    assert re.search(r"^INVITE sip:\+442071838751@", invite, re.M), invite
    assert header_values(invite, "Diversion") == [f"<sip:{DID}@{CARRIER_B}:5080>;reason=unavailable;counter=1"]
    assert "X-Edge-" not in invite
    assert re.search(r"^From:.*sip:\+14155550123@", invite, re.M | re.I)  # the original caller
    [record] = wait_until(lambda: CdrStore(edge.redis, 86400).records(since, int(time.time() * 1000) + 1000),
                          what="the call's record")
    assert record["trunk"] == "carrier-b" and record["rate"] == "0.0200"
    assert [g["result"] for g in record["gateways"]] == ["timeout", "200"]


def test_a_trunk_without_diversion_gets_the_forwarded_call_without_it(clean_edge: Edge) -> None:
    """carrier-b set ``forwarded_caller_id: caller`` (a carrier that refuses or misreads the
    header): the DID's fallback to a number reaches it with the caller's From and no Diversion."""
    edge = clean_edge
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], probe=False)
    edge.trunk("carrier-b", [f"{CARRIER_B}/32"], [(CARRIER_B, 5080)], probe=False,
               forwarded_caller_id=ForwardedCallerId.CALLER)
    assert edge.redis.hget(keys.trunk("carrier-b"), "forwarded_caller_id") == "caller"
    edge.route("+44", "carrier-b", "0.0200")
    edge.agent("bot", [DEAD], [], probe=False, answer_timeout_ms=400)
    admin.put_did(edge.redis, Did(DID, "carrier-a", "bot", parse_fallback("number:+442071838751", "test")))
    human = uas(edge.workdir / "human", CARRIER_B, 5080, scenario=gateway_scenario(edge.workdir, 200, 200),
                calls=100000, answer_ms=100)
    final, _ = call(edge, "call")
    assert status_line(final) == (200, "OK")
    [invite] = human.received_requests("INVITE")
    assert header_values(invite, "Diversion") == []
    assert re.search(r"^From:.*sip:\+14155550123@", invite, re.M | re.I)  # the original caller


def test_an_owned_trunk_takes_the_fallback_naming_an_owned_did_and_skips_one_that_does_not(clean_edge: Edge) -> None:
    """Issue 14/17's owned rule on a DID's fallback to a number: carrier-c (cheaper) and carrier-b
    are both ``owned``; only carrier-b owns the DID (verified).  carrier-c is skipped, carrier-b
    takes the leg with the original caller's From (not its own number) and a Diversion naming the
    DID; ``edgectl explain`` names the rule for each trunk."""
    from .conftest import CARRIER_C
    edge = clean_edge
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], probe=False)
    edge.trunk("carrier-b", [f"{CARRIER_B}/32"], [(CARRIER_B, 5080)], probe=False,
               caller_id_policy=CallerIdPolicy.OWNED, verified_caller_ids=(DID,))
    edge.trunk("carrier-c", [f"{CARRIER_C}/32"], [(CARRIER_C, 5080)], probe=False, caller_id_policy=CallerIdPolicy.OWNED)
    edge.route("+44", "carrier-b", "0.0200")
    edge.route("+44", "carrier-c", "0.0100")
    edge.agent("bot", [DEAD], [], probe=False, answer_timeout_ms=400)
    admin.put_did(edge.redis, Did(DID, "carrier-a", "bot", parse_fallback("number:+442071838751", "test")))
    human = uas(edge.workdir / "human", CARRIER_B, 5080, scenario=gateway_scenario(edge.workdir, 200, 200),
                calls=100000, answer_ms=100)
    final, _ = call(edge, "call")
    assert status_line(final) == (200, "OK")
    [invite] = human.received_requests("INVITE")
    assert re.search(r"^From:.*sip:\+14155550123@", invite, re.M | re.I)  # the original caller
    assert header_values(invite, "Diversion") == [f"<sip:{DID}@{CARRIER_B}:5080>;reason=unavailable;counter=1"]
    shown = edgectl(edge, "explain", "--source", CARRIER_A, "--to", DID, "--from", "+14155550123", columns=250)
    assert shown.returncode == 0, shown.stderr
    assert f"{DID} is owned there: a forward from an owned DID counts as owned" in shown.stdout
    assert f"{DID} is not owned there: trunk carrier-c skipped" in shown.stdout
