"""Topology hiding (Kamailio topoh) against the running edge: what a carrier and an agent
receive (SIPp -trace_msg) names no address or hop of the other side in Via, Contact,
Record-Route or Route, while calls, re-INVITEs and BYEs work both ways.

From, To and Call-ID pass end to end (the caller's and callee's identity, and the dialog's id:
topoh could mask the Call-ID, but then the BYEs the edge itself sends at a call's maximum
duration would reach the callee with the unmasked one).
"""

from __future__ import annotations

import re

from tests.sipp import SippRun, uac, uas

from .conftest import AGENT_IP, CARRIER_A, DID, EDGE_IP, Edge

ROUTING_HEADERS = ("via", "v", "contact", "m", "record-route", "route")


def routing_headers(run: SippRun) -> list[str]:
    """Every Via, Contact, Record-Route and Route line of every message ``run`` received."""
    lines = []
    for block in run.messages().split("-----------------------------------------------"):
        if "message received" not in block:
            continue
        head = block.split("\n\n", 2)[1] if block.count("\n\n") >= 2 else block
        for line in head.splitlines():
            name = line.split(":", 1)[0].strip().lower()
            if ":" in line and name in ROUTING_HEADERS:
                lines.append(line)
    return lines


def assert_hidden(run: SippRun, other: str, who: str) -> None:
    """No line names ``other``; every hop is the edge (or, in replies, the receiver's own Via)."""
    lines = routing_headers(run)
    assert lines, f"{who} received nothing"
    leaks = [line for line in lines if other in line]
    assert not leaks, f"{who} sees the other side's address: {leaks}"
    hops = [l for l in lines if l.lower().startswith(("record-route", "route", "via", "v:", "contact", "m:"))]
    own = {CARRIER_A, AGENT_IP} - {other}
    strange = [l for l in hops if EDGE_IP not in l and not any(ip in l for ip in own)]
    assert hops and not strange, f"{who} sees a hop that is not the edge: {strange}"


def provision(edge: Edge) -> None:
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], gateways=[(CARRIER_A, 5080)])
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"])
    edge.did(DID, "carrier-a", "bot")
    edge.route("+44", "carrier-a", "0.0100")


def test_carrier_and_agent_see_only_the_edge(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    # origination: the carrier re-INVITEs, sends INFO and UPDATE, and hangs up
    agent = uas(edge.workdir / "agent1", AGENT_IP, 5090, scenario="uas_agent.xml", answer_ms=50, rtp_echo=False,
                extra=["-key", "media_relay", edge.settings.rtpengine.address])
    carrier = uac(edge.workdir / "carrier1", CARRIER_A, 5070, edge.sip, DID, hold_ms=300)
    assert carrier.wait() == 0, carrier.output()
    assert agent.wait() == 0, agent.output()
    assert len(agent.received_requests("BYE")) == 1 and len(agent.received_requests("INVITE")) == 2
    assert_hidden(agent, CARRIER_A, "the agent")
    assert_hidden(carrier, AGENT_IP, "the carrier")

    # origination: the agent (callee) re-INVITEs and hangs up, through the Contact the edge gave it
    agent = uas(edge.workdir / "agent2", AGENT_IP, 5090, scenario="uas_hangup.xml", answer_ms=300, rtp_echo=False)
    carrier = uac(edge.workdir / "carrier2", CARRIER_A, 5070, edge.sip, DID, scenario="uac_callee_hangs_up.xml")
    assert agent.wait() == 0, agent.output()
    assert carrier.wait() == 0, carrier.output()
    assert re.search(rf"^BYE sip:[^ ]*@{CARRIER_A}:5070", carrier.received_requests("BYE")[0], re.M)
    assert_hidden(agent, CARRIER_A, "the agent")
    assert_hidden(carrier, AGENT_IP, "the carrier")

    # termination: the agent calls a carrier gateway, which re-INVITEs and hangs up
    gateway = uas(edge.workdir / "gateway", CARRIER_A, 5080, scenario="uas_hangup.xml", answer_ms=300,
                  rtp_echo=False)
    caller = uac(edge.workdir / "agent3", AGENT_IP, 5070, edge.sip, "+442071838750",
                 scenario="uac_callee_hangs_up.xml")
    assert gateway.wait() == 0, gateway.output()
    assert caller.wait() == 0, caller.output()
    assert_hidden(gateway, AGENT_IP, "the carrier gateway")
    assert_hidden(caller, CARRIER_A, "the agent")
