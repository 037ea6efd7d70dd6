"""Delayed offer (an INVITE without SDP, RFC 3261 section 13.2.1) under the media policy, with SIPp peers
on a real edge: the callee's offer in its 200 reaches the caller rewritten to the caller side's policy
(protocol, crypto/fingerprint, codecs in the caller side's order), the ACK's answer reaches the callee
in the callee side's protocol, rtpengine's own view of the call agrees, a re-INVITE afterwards keeps
the policy, and an offer that breaks the policy after the 2xx ends the call with ACK and BYE to both
sides carrying a Reason header."""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

import pytest

from routing.tables import admin
from routing.tables.cdrstore import CdrStore
from routing.tables.model import Agent, Direction, Gateway, MediaPolicy, RouteEntry, SrtpMode, Trunk
from routing.ngclient import NgClient
from tests.sipp import SippRun, reply, uac, uas
from decimal import Decimal
from tests.helpers import wait_until

from .conftest import AGENT_IP, CARRIER_A, DID, Edge

AGENT_PORT = 5090
GW_PORT = 5080
DEST = "+442071838750"
_runs = itertools.count()

#: a dummy SDES key (RFC 4568 inline key, 30 bytes base64): signalling only, no media is sent
CRYPTO = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0e"
FINGERPRINT = ("a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\n      a=setup:actpass")


def sdp(proto: str, codecs: list[tuple[int, str]], extra: str = "") -> str:
    """An SDP body (SIPp-indented) at SIPp's media address and port."""
    pts = " ".join(str(pt) for pt, _ in codecs)
    lines = ["v=0", "o=- 1 1 IN IP4 [local_ip]", "s=-", "c=IN IP4 [media_ip]", "t=0 0",
             f"m=audio [media_port] {proto} {pts}"]
    lines += [f"a=rtpmap:{pt} {name}" for pt, name in codecs]
    lines += [line for line in extra.splitlines() if line.strip()]
    return "\n".join(f"      {line.strip()}" for line in lines)


def callee_scenario(workdir: Path, offer: str, reinvite_answer: str = "") -> Path:
    """A callee that answers an INVITE without SDP with ``offer`` in its 200, takes the ACK, optionally
    answers a re-INVITE with ``reinvite_answer``, then takes the BYE (from the caller or the edge)."""
    reinvite = ""
    if reinvite_answer:
        reinvite = ('  <recv request="INVITE"/>\n' + reply("200 OK", dialog=True, retrans=True, sdp=reinvite_answer)
                    + '  <recv request="ACK"/>\n')
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uas delayed offer">
  <recv request="INVITE"/>
{reply("100 Trying")}{reply("200 OK", tag="01", dialog=True, retrans=True, sdp=offer)}  <recv request="ACK"/>
{reinvite}  <recv request="BYE"/>
{reply("200 OK")}</scenario>
"""
    path = workdir / f"uas_late_{next(_runs)}.xml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _request(method: str, cseq: int, body: str = "", first: bool = False) -> str:
    to_tag = "" if first else "[peer_tag_param]"
    uri = "sip:[service]@[remote_ip]:[remote_port]" if first else "[next_url]"
    head = f"""      {method} {uri} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Caller" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>{to_tag}
      Call-ID: [call_id]
      CSeq: {cseq} {'ACK' if method == 'ACK' else method}
      Contact: <sip:[caller]@[local_ip]:[local_port]>
{'' if first else '      [routes]' + chr(10)}      Max-Forwards: 70
"""
    if body:
        return f"{head}      Content-Type: application/sdp\n      Content-Length: [len]\n\n{body}\n"
    return f"{head}      Content-Length: 0\n\n"


def caller_scenario(workdir: Path, answer: str, reinvite_offer: str = "", edge_hangs_up: bool = False,
                    offer: str = "") -> Path:
    """A caller that sends an INVITE without SDP, answers the 200's offer in its ACK with ``answer``,
    optionally sends a re-INVITE with ``reinvite_offer``, then hangs up after ``-d`` ms, or (with
    ``edge_hangs_up``) waits for the edge's BYE.  With ``offer`` the INVITE carries it instead (an
    early offer: pass ``answer=""``)."""
    steps = [f'  <send retrans="500"><![CDATA[\n{_request("INVITE", 1, offer, first=True)}    ]]></send>',
             '  <recv response="100" optional="true"/>', '  <recv response="200" rrs="true"/>',
             f'  <send><![CDATA[\n{_request("ACK", 1, answer)}    ]]></send>']
    if edge_hangs_up:
        steps += ['  <recv request="BYE"/>', reply("200 OK")]
    else:
        steps.append("  <pause/>")
        cseq = 2
        if reinvite_offer:
            steps += [f'  <send retrans="500"><![CDATA[\n{_request("INVITE", 2, reinvite_offer)}    ]]></send>',
                      '  <recv response="100" optional="true"/>', '  <recv response="200"/>',
                      f'  <send><![CDATA[\n{_request("ACK", 2)}    ]]></send>', '  <pause milliseconds="300"/>']
            cseq = 3
        steps += [f'  <send retrans="500"><![CDATA[\n{_request("BYE", cseq)}    ]]></send>',
                  '  <recv response="200"/>']
    text = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="uac delayed offer">\n' + \
        "\n".join(steps) + "\n</scenario>\n"
    path = workdir / f"uac_late_{next(_runs)}.xml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def received(run: SippRun, first_line: str) -> list[str]:
    """Messages ``run`` received whose first line starts with ``first_line``."""
    out = []
    for block in run.messages().split("-----------------------------------------------"):
        if "message received" in block and re.search(rf"^{re.escape(first_line)}", block, re.M):
            out.append(block)
    return out


def answer_200(run: SippRun) -> str:
    """The 200 to the initial INVITE that ``run`` received (the delayed offer)."""
    (ok,) = [m for m in received(run, "SIP/2.0 200") if re.search(r"^CSeq: 1 INVITE", m, re.M)]
    return ok


def m_line(message: str) -> str:
    match = re.search(r"^m=audio \d+ (\S+) ([0-9 ]+)$", message, re.M)
    assert match, message
    return f"{match.group(1)} {match.group(2).strip()}"


def rtpmap(message: str) -> list[str]:
    """Codec names of the m= line, in its order."""
    proto_pts = m_line(message).split()[1:]
    names = dict(re.findall(r"^a=rtpmap:(\d+) ([^/\s]+)", message, re.M))
    static = {"0": "PCMU", "8": "PCMA", "9": "G722", "13": "CN"}
    return [names.get(pt) or static.get(pt, pt) for pt in proto_pts]


def protocols(edge: Edge, call_id: str) -> set[str]:
    """The transport protocols rtpengine itself runs on the call's legs (ng ``query``)."""
    with NgClient("127.0.0.1", edge.settings.rtpengine.ng_port, 2.0) as ng:
        reply_ = ng.query(call_id)
    found = set()
    for tag in reply_.get("tags", {}).values():
        for medium in tag.get("medias", []):
            found.add(str(medium.get("protocol", "")))
    return found


def call_id_of(run: SippRun) -> str:
    match = re.search(r"^Call-ID: (\S+)", run.messages(), re.M)
    assert match
    return match.group(1)


def test_origination_delayed_offer_codecs_in_caller_order(clean_edge: Edge) -> None:
    """Carrier prefers PCMA then PCMU; the agent's offer in its 200 lists PCMU, PCMA, G722: the carrier
    is offered exactly the shared codecs in its own order (PCMA first), G722 (not the agent's) is
    stripped, no transcoding."""
    edge = clean_edge
    admin.put_trunk(edge.redis, Trunk("carrier", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",),
                                      media=MediaPolicy(codecs=("PCMA", "PCMU"))))
    admin.put_agent(edge.redis, Agent("bot", (f"sip:bot@{AGENT_IP}:{AGENT_PORT}",), (f"{AGENT_IP}/32",),
                                      media=MediaPolicy(codecs=("PCMU", "PCMA"))))
    edge.did(DID, "carrier", "bot")
    offer = sdp("RTP/AVP", [(0, "PCMU"), (8, "PCMA"), (9, "G722"), (101, "telephone-event/8000")])
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario=callee_scenario(edge.workdir, offer),
                rtp_echo=False)
    answer = sdp("RTP/AVP", [(8, "PCMA"), (101, "telephone-event/8000")])
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID,
                  scenario=caller_scenario(edge.workdir, answer), hold_ms=1500)
    wait_until(lambda: received(agent, "ACK"), timeout=10, what="the ACK reached the agent")
    assert int(edge.rtpengine_totals().get("Transcoded media", 0)) == 0
    assert carrier.wait() == 0, carrier.output()
    assert agent.wait() == 0, agent.output()
    ok = answer_200(carrier)
    assert m_line(ok).startswith("RTP/AVP ")
    assert [c for c in rtpmap(ok) if c != "telephone-event"] == ["PCMA", "PCMU"]
    ack = received(agent, "ACK")[0]
    assert f"c=IN IP4 {CARRIER_A}" not in ack and m_line(ack).startswith("RTP/AVP ")
    assert "PCMA" in rtpmap(ack)


def provision_termination(edge: Edge, agent_media: MediaPolicy, trunk_media: MediaPolicy) -> None:
    admin.put_trunk(edge.redis, Trunk("carrier", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",),
                                      gateways=(Gateway(host=CARRIER_A, port=GW_PORT),), probe=False,
                                      media=trunk_media))
    admin.put_agent(edge.redis, Agent("bot", (f"sip:bot@{AGENT_IP}:{AGENT_PORT}",), (f"{AGENT_IP}/32",),
                                      media=agent_media))
    admin.put_route(edge.redis, RouteEntry(prefix="+44", trunk="carrier", rate=Decimal("0.01")))


def test_termination_delayed_offer_mixed_srtp_and_reinvite(clean_edge: Edge) -> None:
    """Agent (DTLS-SRTP required) calls without SDP through an SDES carrier: the carrier's SDES offer
    reaches the agent as DTLS-SRTP (fingerprint, no crypto), the agent's DTLS answer reaches the carrier
    as SDES (crypto, no fingerprint); rtpengine runs the two legs on those protocols.  A later re-INVITE
    from the agent reaches the carrier as SDES too."""
    edge = clean_edge
    provision_termination(edge, MediaPolicy(codecs=("PCMU",), srtp=SrtpMode.DTLS),
                          MediaPolicy(codecs=("PCMU", "PCMA"), srtp=SrtpMode.SDES))
    carrier_offer = sdp("RTP/SAVP", [(8, "PCMA"), (0, "PCMU")], CRYPTO)
    carrier_reanswer = sdp("RTP/SAVP", [(0, "PCMU")], CRYPTO)
    carrier = uas(edge.workdir / "carrier", CARRIER_A, GW_PORT, rtp_echo=False,
                  scenario=callee_scenario(edge.workdir, carrier_offer, reinvite_answer=carrier_reanswer))
    dtls = sdp("UDP/TLS/RTP/SAVP", [(0, "PCMU")], FINGERPRINT)
    agent = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, DEST, hold_ms=1500,
                scenario=caller_scenario(edge.workdir, dtls, reinvite_offer=dtls))
    wait_until(lambda: received(carrier, "ACK"), timeout=10, what="the ACK reached the carrier")
    assert protocols(edge, call_id_of(agent)) == {"RTP/SAVP", "UDP/TLS/RTP/SAVP"}
    assert agent.wait() == 0, agent.output()
    assert carrier.wait() == 0, carrier.output()
    ok = answer_200(agent)
    assert m_line(ok).startswith("UDP/TLS/RTP/SAVP ")
    assert "a=fingerprint:" in ok and "a=crypto:" not in ok
    assert [c for c in rtpmap(ok) if c != "telephone-event"] == ["PCMU"]  # the agent's codecs only
    ack = received(carrier, "ACK")[0]
    assert m_line(ack).startswith("RTP/SAVP ") and "a=crypto:" in ack and "a=fingerprint:" not in ack
    reinvite = [m for m in received(carrier, "INVITE ") if "CSeq: 2 INVITE" in m]
    assert reinvite, carrier.messages()
    assert m_line(reinvite[0]).startswith("RTP/SAVP ") and "a=crypto:" in reinvite[0]


def provision_sdes_agent(edge: Edge) -> None:
    """A PCMU carrier calling DID to an agent that requires SDES (PCMU only)."""
    admin.put_trunk(edge.redis, Trunk("carrier", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",),
                                      media=MediaPolicy(codecs=("PCMU",))))
    admin.put_agent(edge.redis, Agent("bot", (f"sip:bot@{AGENT_IP}:{AGENT_PORT}",), (f"{AGENT_IP}/32",),
                                      media=MediaPolicy(codecs=("PCMU",), srtp=SrtpMode.SDES)))
    edge.did(DID, "carrier", "bot")


def assert_ended_for_srtp(edge: Edge, carrier: SippRun, agent: SippRun) -> None:
    """Both sides got BYE with ``Reason: SIP;cause=488;text="SRTP Required"``; slots released."""
    assert carrier.wait(timeout=20) == 0, carrier.output()
    assert agent.wait(timeout=20) == 0, agent.output()
    for run in (carrier, agent):
        (bye,) = received(run, "BYE ")
        assert 'Reason: SIP;cause=488;text="SRTP Required"' in bye, bye
    wait_until(lambda: edge.active_leases() == 0, timeout=10, what="slots released")


def test_delayed_offer_breaking_the_policy_ends_the_call(clean_edge: Edge) -> None:
    """The agent requires SDES but offers RTP/AVP in its 200: too late for a 488, so the edge completes
    the handshake (the carrier's ACK reaches the agent), then sends BYE to both sides with
    ``Reason: SIP;cause=488;text="SRTP Required"``; the carrier was never offered anything but its
    own policy (RTP/AVP), and the slots are released."""
    edge = clean_edge
    provision_sdes_agent(edge)
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, rtp_echo=False,
                scenario=callee_scenario(edge.workdir, sdp("RTP/AVP", [(0, "PCMU")])))
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID,
                  scenario=caller_scenario(edge.workdir, sdp("RTP/AVP", [(0, "PCMU")]), edge_hangs_up=True))
    assert_ended_for_srtp(edge, carrier, agent)
    assert received(agent, "ACK")
    ok = answer_200(carrier)
    assert m_line(ok).startswith("RTP/AVP ") and "a=crypto:" not in ok
    kept = edge.redis.hgetall(f"edge:media:{edge.settings.node}:{call_id_of(carrier)}")
    assert kept.get("media_end_reason") == "policy:srtp_required", kept
    assert "edge: reject 488 srtp_required delayed-offer" in edge.log()


def test_answer_in_a_200_breaking_the_policy_ends_the_call(clean_edge: Edge) -> None:
    """The agent requires SDES; the carrier's offer is RTP/AVP (the agent is offered RTP/SAVP) and the
    agent answers in clear in its 200: too late for a 488, so the handshake completes and the edge
    sends BYE to both sides with ``Reason: SIP;cause=488;text="SRTP Required"``."""
    edge = clean_edge
    provision_sdes_agent(edge)
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, rtp_echo=False,
                scenario=callee_scenario(edge.workdir, sdp("RTP/AVP", [(0, "PCMU")])))
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID,
                  scenario=caller_scenario(edge.workdir, "", edge_hangs_up=True, offer=sdp("RTP/AVP", [(0, "PCMU")])))
    assert_ended_for_srtp(edge, carrier, agent)
    (invite,) = received(agent, "INVITE ")
    assert m_line(invite).startswith("RTP/SAVP ")  # the agent was offered SDES and answered in clear
    assert "edge: reject 488 srtp_required answer reply=200" in edge.log()


#: the option tag and sequence number of a reliable provisional response (RFC 3262 section 7)
RELIABLE = "      Require: 100rel\n      RSeq: 1\n"


def reliable_183_callee(workdir: Path, body: str) -> Path:
    """A callee that sends a reliable 183 (``Require: 100rel``, RSeq) with ``body`` and retransmits it
    (RFC 3262 section 3) until the CANCEL comes, answers the CANCEL 200 and the INVITE 487, takes the ACK."""
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uas reliable 183">
  <recv request="INVITE">
    <action><ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" assign_to="cseq"/></action>
  </recv>
{reply("100 Trying")}{reply("183 Session Progress", tag="01", dialog=True, retrans=True, headers=RELIABLE, sdp=body)}  <recv request="CANCEL"/>
{reply("200 OK")}  <send retrans="500">
    <![CDATA[
      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [$cseq] INVITE
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
</scenario>
"""
    path = workdir / f"uas_rel183_{next(_runs)}.xml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def refused_caller(workdir: Path, offer: str = "") -> Path:
    """A caller that supports 100rel (RFC 3262), sends an INVITE (with ``offer``, else without SDP),
    expects a 488 after at most a 100, and ACKs it."""
    invite = _request("INVITE", 1, offer, first=True).replace("      Max-Forwards: 70\n",
                                                               "      Max-Forwards: 70\n      Supported: 100rel\n")
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uac refused">
  <send retrans="500"><![CDATA[
{invite}    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="488"/>
  <send><![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: "Caller" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
</scenario>
"""
    path = workdir / f"uac_refused_{next(_runs)}.xml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def assert_refused_early(edge: Edge, carrier: SippRun, agent: SippRun, since: int, reason: str, tag: str) -> None:
    """The caller got only ``488 <reason>`` with the Reason header (never the 183), the callee got
    the CANCEL, the slots and the media session are gone, and the call record and log say why."""
    assert carrier.wait(timeout=20) == 0, carrier.output()
    assert agent.wait(timeout=20) == 0, agent.output()
    assert [code for code, _ in carrier.received_status()] in ([488], [100, 488]), carrier.received_status()
    (refusal,) = received(carrier, "SIP/2.0 488")
    assert re.search(rf"^SIP/2.0 488 {reason}\s*$", refusal, re.M), refusal
    assert f'Reason: SIP;cause=488;text="{reason}"' in refusal, refusal
    (cancel,) = received(agent, "CANCEL ")
    assert re.search(r"^CSeq: 1 CANCEL", cancel, re.M), cancel
    wait_until(lambda: edge.active_leases() == 0, timeout=10, what="slots released")
    wait_until(lambda: edge.rtpengine_sessions() == 0, timeout=10, what="media session deleted")
    cdrs = CdrStore(edge.redis, 86400)
    (record,) = wait_until(lambda: cdrs.records(since, int(time.time() * 1000) + 1000), timeout=10,
                           what="the call record")
    assert (record["status"], record["sip_code"], record["reject_tag"]) == ("failed", 488, tag), record
    assert record["gateways"][-1]["result"] == tag, record
    assert f"edge: reject 488 {tag} reliable-provisional reply=183" in edge.log()


def test_reliable_183_answer_breaking_the_policy_refuses_the_call(clean_edge: Edge) -> None:
    """The agent requires SDES; the carrier offers RTP/AVP (the edge offers the agent RTP/SAVP) and the
    agent answers in clear in a reliable 183: the answer is final (RFC 3262), so the edge drops the 183,
    cancels the agent's branch and answers the carrier ``488 SRTP Required`` with its Reason header."""
    edge = clean_edge
    since = int(time.time() * 1000)
    provision_sdes_agent(edge)
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, rtp_echo=False,
                scenario=reliable_183_callee(edge.workdir, sdp("RTP/AVP", [(0, "PCMU")])))
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID,
                  scenario=refused_caller(edge.workdir, sdp("RTP/AVP", [(0, "PCMU")])))
    assert_refused_early(edge, carrier, agent, since, "SRTP Required", "srtp_required")
    (invite,) = received(agent, "INVITE ")
    assert m_line(invite).startswith("RTP/SAVP ") and "a=crypto:" in invite  # the agent was offered SDES


def test_reliable_183_delayed_offer_breaking_the_policy_refuses_the_call(clean_edge: Edge) -> None:
    """The carrier calls without SDP; the agent (PCMU only) makes its offer in a reliable 183 with G722
    only: the edge refuses the call at once with ``488 No Allowed Codec``, cancelling the agent."""
    edge = clean_edge
    since = int(time.time() * 1000)
    admin.put_trunk(edge.redis, Trunk("carrier", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",)))
    admin.put_agent(edge.redis, Agent("bot", (f"sip:bot@{AGENT_IP}:{AGENT_PORT}",), (f"{AGENT_IP}/32",),
                                      media=MediaPolicy(codecs=("PCMU",))))
    edge.did(DID, "carrier", "bot")
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, rtp_echo=False,
                scenario=reliable_183_callee(edge.workdir, sdp("RTP/AVP", [(9, "G722")])))
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario=refused_caller(edge.workdir))
    assert_refused_early(edge, carrier, agent, since, "No Allowed Codec", "codecs_not_allowed")
