"""Session timers (RFC 4028) kept by the edge for an agent that does not do them: the carrier is
made the refresher in the 2xx, its refresh UPDATEs and its pure refresh re-INVITEs (the SDP repeated
unchanged) are answered by the edge (the agent never sees them; the re-INVITE's 200 carries the SDP
the carrier received in the call's 2xx), a re-INVITE that changes the SDP reaches the agent without
timer headers and its 2xx gets them back; a
call with the shortest interval RFC 4028 allows (90 s) survives two refreshes, and a call whose
carrier stops refreshing is ended cleanly by the edge (the two long calls run side by side)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from routing.tables.cdrstore import CdrStore
from routing.tables.model import MediaPolicy
from tests.sipp import PCMU_ANSWER_SDP, reply, reply_uas_scenario, uac, uas
from tests.helpers import wait_until

from .conftest import AGENT_IP, CARRIER_A, CARRIER_B, DID, Edge

SDP_OFFER = """      v=0
      o=- 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000"""


#: the same session description, changed (RFC 3264 section 8: the version goes up): the call put on hold
SDP_HOLD = SDP_OFFER.replace("o=- 1 1 ", "o=- 1 2 ") + "\n      a=sendonly"


def _request(method: str, cseq: int, extra: str = "", sdp: bool = False, first: bool = False, body_sdp: str = "") -> str:
    """A SIPp ``<send>`` of the carrier's request (``first``: the INVITE, else in the dialog); ``sdp``
    carries :data:`SDP_OFFER`, ``body_sdp`` another one."""
    uri = "sip:[service]@[remote_ip]:[remote_port]" if first else "[next_url]"
    to_tag = "" if first else "[peer_tag_param]"
    offer = body_sdp or (SDP_OFFER if sdp else "")
    body = f"      Content-Type: application/sdp\n      Content-Length: [len]\n\n{offer}\n" if offer else \
        "      Content-Length: 0\n\n"
    routes = "" if first else "      [routes]\n"
    retrans = "" if method == "ACK" else ' retrans="500"'
    return f"""  <send{retrans}>
    <![CDATA[
      {method} {uri} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Caller" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>{to_tag}
      Call-ID: [call_id]
      CSeq: {cseq} {method}
{routes}      Contact: <sip:[caller]@[local_ip]:[local_port]>
      Max-Forwards: 70
{extra}{body}    ]]>
  </send>
"""


def _ack(cseq: int) -> str:
    return _request("ACK", cseq)


OFFER_TIMERS = "      Supported: timer\n      Session-Expires: 90\n      Min-SE: 90\n"


def _carrier(edge: Edge, name: str, steps: str) -> Path:
    """The carrier's caller: INVITE offering timers (90 s, Supported: timer), the 2xx, the ACK, then ``steps``."""
    invite = _request("INVITE", 1, OFFER_TIMERS, sdp=True, first=True)
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="{name}">
{invite}  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
{_ack(1)}{steps}</scenario>
"""
    path = edge.workdir / f"{name}.xml"
    path.write_text(text)
    return path


REFRESH = "      Supported: timer\n      Session-Expires: 90;refresher=uac\n"


def _agent(edge: Edge, name: str, reinvites: int) -> Path:
    """An agent without session timers: answers the INVITE (no Session-Expires), ``reinvites``
    re-INVITEs, then takes the BYE."""
    answer = reply("200 OK", tag="01", dialog=True, retrans=True, sdp=PCMU_ANSWER_SDP)
    again = ('  <recv request="INVITE"/>\n' + answer + '  <recv request="ACK"/>\n') * reinvites
    bye_ok = reply("200 OK")
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="{name}">
  <recv request="INVITE"/>
{answer}  <recv request="ACK"/>
{again}  <recv request="BYE"/>
{bye_ok}</scenario>
"""
    path = edge.workdir / f"{name}.xml"
    path.write_text(text)
    return path


def _responses(run, method: str) -> list[str]:
    return run.received_responses(method)


def _header(message: str, name: str) -> list[str]:
    return [m.strip() for m in re.findall(rf"^{name}:(.*)$", message, re.M | re.I)]


#: these SIPp peers send no RTP: the media watchdog must not end the long calls first
QUIET = MediaPolicy(rtp_timeout_s=600)


def provision(edge: Edge) -> None:
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], probe=False, media=QUIET)
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [], probe=False, media=QUIET)
    edge.did(DID, "carrier-a", "bot")


def _sdp_of(message: str) -> str:
    """The SDP body of a message as SIPp logged it (from its ``v=0`` line), line by line."""
    return "\n".join(line.strip() for line in message[message.index("v=0"):].splitlines() if line.strip())


def test_refreshes_are_answered_for_an_agent_without_timers(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    steps = (_request("UPDATE", 2, REFRESH) + '  <recv response="200"/>\n'
             # a pure refresh: the INVITE's SDP again, unchanged (same o= version)
             + _request("INVITE", 3, REFRESH + "      Require: timer\n", sdp=True) + '  <recv response="100" optional="true"/>\n'
             + '  <recv response="200"/>\n' + _ack(3)
             # a refresh that changes the media (hold): for the agent to answer
             + _request("INVITE", 4, REFRESH + "      Require: timer\n", body_sdp=SDP_HOLD)
             + '  <recv response="100" optional="true"/>\n' + '  <recv response="200"/>\n' + _ack(4)
             + _request("BYE", 5) + '  <recv response="200"/>\n')
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario=_agent(edge, "agent_no_timers", 1), rtp_echo=False)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario=_carrier(edge, "carrier_refreshes", steps))
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert agent.wait(timeout=30) == 0, agent.output()
    answer = next(r for r in _responses(carrier, "INVITE") if re.search(r"^CSeq:\s*1 INVITE", r, re.M) and " 200 " in r)
    assert _header(answer, "Session-Expires") == ["90;refresher=uac"] and _header(answer, "Require") == ["timer"]
    [update_ok] = _responses(carrier, "UPDATE")
    assert _header(update_ok, "Session-Expires") == ["90;refresher=uac"]
    assert not agent.received_requests("UPDATE")  # answered by the edge
    # the pure refresh re-INVITE: answered by the edge with the SDP the carrier got in the call's 200
    refresh_ok = [r for r in _responses(carrier, "INVITE") if re.search(r"^CSeq:\s*3 INVITE", r, re.M) and " 200 " in r]
    assert refresh_ok, _responses(carrier, "INVITE")
    assert _header(refresh_ok[-1], "Session-Expires") == ["90;refresher=uac"] and _header(refresh_ok[-1], "Require") == ["timer"]
    assert _sdp_of(refresh_ok[-1]).strip() == _sdp_of(answer).strip() and "m=audio" in _sdp_of(answer)
    assert _header(refresh_ok[-1], "Contact") == _header(answer, "Contact")
    # the agent saw the INVITE and the hold re-INVITE only, the latter without the timer headers; its ACKs too
    [_, reinvite] = agent.received_requests("INVITE")
    assert "a=sendonly" in reinvite and re.search(r"^CSeq:\s*4 INVITE", reinvite, re.M), reinvite
    assert not _header(reinvite, "Session-Expires") and "timer" not in "".join(_header(reinvite, "Require"))
    assert not [a for a in agent.received_requests("ACK") if re.search(r"^CSeq:\s*3 ACK", a, re.M)]  # ended at the edge
    hold_ok = [r for r in _responses(carrier, "INVITE") if re.search(r"^CSeq:\s*4 INVITE", r, re.M)]
    assert _header(hold_ok[-1], "Session-Expires") == ["90;refresher=uac"]
    assert "session refresh re-INVITE of call-id=" in edge.log()


def test_a_90_s_session_survives_two_refreshes_and_one_never_refreshed_is_ended(long_call_edge: Edge,
                                                                                 clean_edge: Edge) -> None:
    """Side by side: one call refreshed at 30 s and 55 s lasts to 70 s; the other, never refreshed,
    is ended by the edge 60 s after the answer (90 s minus min(32 s, 30 s), RFC 4028 section 10)."""
    edge = clean_edge
    provision(edge)
    edge.agent("bot2", [f"sip:{AGENT_IP}:5091"], [], probe=False, media=QUIET)
    edge.did("+14155550111", "carrier-a", "bot2")
    kept = ('  <pause milliseconds="30000"/>\n' + _request("UPDATE", 2, REFRESH) + '  <recv response="200"/>\n'
            + '  <pause milliseconds="25000"/>\n' + _request("UPDATE", 3, REFRESH) + '  <recv response="200"/>\n'
            + '  <pause milliseconds="15000"/>\n' + _request("BYE", 4) + '  <recv response="200"/>\n')
    dropped = '  <recv request="BYE" timeout="80000"/>\n' + reply("200 OK")
    since = int(time.time() * 1000)
    agents = [uas(edge.workdir / f"agent{i}", AGENT_IP, 5090 + i, scenario=_agent(edge, "agent_plain", 0), rtp_echo=False,
                  extra=["-timeout", "100"]) for i in (0, 1)]
    started = time.monotonic()
    longer = ["-timeout", "100"]  # SIPp's own global timeout (60 s by default here) outlasts the calls
    refreshed = uac(edge.workdir / "refreshed", CARRIER_A, 5070, edge.sip, DID, scenario=_carrier(edge, "kept", kept),
                    extra=longer)
    silent = uac(edge.workdir / "silent", CARRIER_A, 5072, edge.sip, "+14155550111",
                 scenario=_carrier(edge, "dropped", dropped), extra=longer)
    assert silent.wait(timeout=90) == 0, silent.output()
    ended_after = time.monotonic() - started
    assert 58 <= ended_after < 66, ended_after
    assert refreshed.wait(timeout=90) == 0, refreshed.output()
    assert time.monotonic() - started >= 69  # the refreshed call outlived the 60 s point and the 90 s interval's end
    for agent in agents:
        assert agent.wait(timeout=10) == 0, agent.output()
    records = wait_until(lambda: len(found := CdrStore(edge.redis, 86400).records(since, int(time.time() * 1000) + 1000)) == 2
                         and found, what="both records")
    by_number = {r["number"]: r for r in records}
    assert by_number["+14155550111"]["hangup"] == "edge"
    assert by_number["+14155550111"]["media"].get("media_end_reason") == "session_expired"
    assert by_number[DID]["hangup"] == "caller"
    assert "session expired: no refresh from the carrier in time" in edge.log()


# -- termination calls: the agent calls out, the carrier asks to refresh -----------------------------

GW_PORT = 5080
DEST = "+442071838750"

#: the carrier's answer, then (version 2) its hold offer
CARRIER_SDP = SDP_OFFER.replace("o=- 1 1 ", "o=carrier 7 1 ")
CARRIER_HOLD = CARRIER_SDP.replace("o=carrier 7 1 ", "o=carrier 7 2 ") + "\n      a=sendonly"
CARRIER_REFRESH = "      Supported: timer\n      Session-Expires: 90;refresher=uac\n      Require: timer\n"


def _carrier_request(method: str, cseq: int, extra: str = "", sdp: str = "") -> str:
    """The carrier's in-dialog request (it is the callee: From its To-tag, To the agent's From)."""
    body = f"      Content-Type: application/sdp\n      Content-Length: [len]\n\n{sdp}\n" if sdp else "      Content-Length: 0\n\n"
    retrans = "" if method == "ACK" else ' retrans="500"'
    return f"""  <send{retrans}>
    <![CDATA[
      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$me];tag=[pid]SIPpTag01[call_number]
      To: [$caller]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      [routes]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
{extra}{body}    ]]>
  </send>
"""


def _termination_carrier(edge: Edge, answer_headers: str, steps: str) -> Path:
    """The carrier gateway: the agent's INVITE answered 200 with ``answer_headers`` and its SDP
    (:data:`CARRIER_SDP`), the ACK, then ``steps``, then the agent's BYE."""
    answer = reply("200 OK", tag="01", dialog=True, retrans=True, headers=answer_headers, sdp=CARRIER_SDP)
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="termination carrier">
  <recv request="INVITE" rrs="true">
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="caller"/>
      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="me"/>
    </action>
  </recv>
{answer}  <recv request="ACK"/>
{steps}  <recv request="BYE"/>
{reply("200 OK")}  <Reference variables="caller,me"/>
</scenario>
"""
    path = edge.workdir / "termination_carrier.xml"
    path.write_text(text)
    return path


def _termination_agent(edge: Edge, reinvites: int, invite_headers: str = "", own_reinvite: bool = False) -> Path:
    """The agent calling out without session timers (no ``Supported: timer``): INVITE, 200, ACK,
    ``reinvites`` re-INVITEs answered (any more fails the scenario: an unexpected message), with
    ``own_reinvite`` a re-INVITE of its own (CSeq 2, 1.5 s after the ACK) answered and ACKed, then BYE."""
    invite = _request("INVITE", 1, invite_headers, sdp=True, first=True)
    again = ('  <recv request="INVITE"/>\n' + reply("200 OK", retrans=True, sdp=PCMU_ANSWER_SDP)
             + '  <recv request="ACK"/>\n') * reinvites
    own = ('  <pause milliseconds="1500"/>\n' + _request("INVITE", 2, body_sdp=SDP_OFFER.replace("o=- 1 1 ", "o=- 1 2 "))
           + '  <recv response="100" optional="true"/>\n  <recv response="200"/>\n' + _ack(2)) if own_reinvite else ""
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="termination agent">
{invite}  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
{_ack(1)}{again}{own}  <pause milliseconds="300"/>
{_request("BYE", 3 if own_reinvite else 2)}  <recv response="200"/>
</scenario>
"""
    path = edge.workdir / "termination_agent.xml"
    path.write_text(text)
    return path


def _provision_termination(edge: Edge, **trunk: object) -> None:
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, GW_PORT)], probe=False, media=QUIET, **trunk)
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"], probe=False, media=QUIET)
    edge.route("+44", "carrier-a", "0.0100")


def _sent_invites(edge: Edge) -> str:
    """The edge's table of termination INVITEs as sent (kamcmd ``htable.dump``)."""
    done = subprocess.run(["kamcmd", "-s", f"unix:{edge.settings.run_dir}/kamailio_ctl", "htable.dump", "stsent"],
                          capture_output=True, text=True, timeout=10)
    return done.stdout + done.stderr


def _media_of(sdp: str) -> tuple[list[str], list[str]]:
    lines = sdp.splitlines()
    return [x for x in lines if x.startswith("c=")], [x for x in lines if x.startswith("m=")]


def test_a_termination_carriers_pure_refresh_reinvite_is_answered_for_the_agent(clean_edge: Edge) -> None:
    """The carrier answers ``Session-Expires: 90;refresher=uas`` to an agent without timers: its pure
    refresh re-INVITE (its SDP again, same o= version) gets 200 from the edge with the SDP the carrier
    received in the INVITE and the agent never sees it; its re-INVITE that changes the SDP reaches the agent."""
    edge = clean_edge
    _provision_termination(edge)
    steps = (_carrier_request("INVITE", 1, CARRIER_REFRESH, CARRIER_SDP) + '  <recv response="100" optional="true"/>\n'
             + '  <recv response="200"/>\n' + _carrier_request("ACK", 1)
             + _carrier_request("UPDATE", 2, CARRIER_REFRESH) + '  <recv response="200"/>\n'
             + _carrier_request("INVITE", 3, CARRIER_REFRESH, CARRIER_HOLD) + '  <recv response="100" optional="true"/>\n'
             + '  <recv response="200"/>\n' + _carrier_request("ACK", 3))
    carrier = uas(edge.workdir / "carrier", CARRIER_A, GW_PORT, rtp_echo=False,
                  scenario=_termination_carrier(edge, "      Session-Expires: 90;refresher=uas\n      Require: timer\n", steps))
    agent = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, DEST, caller="+14155550100",
                scenario=_termination_agent(edge, reinvites=1))
    assert agent.wait(timeout=30) == 0, agent.output()
    assert carrier.wait(timeout=30) == 0, carrier.output()
    invite = carrier.received_requests("INVITE")[0]
    assert "timer" not in "".join(_header(invite, "Supported")) and not _header(invite, "Session-Expires")
    # the pure refresh: 200 from the edge with the SDP the carrier was sent, the Contact it knows the agent by
    refresh_ok = [r for r in _responses(carrier, "INVITE") if re.search(r"^CSeq:\s*1 INVITE", r, re.M) and " 200 " in r]
    assert refresh_ok, _responses(carrier, "INVITE")
    sent = _sdp_of(invite)
    assert _sdp_of(refresh_ok[-1]) == sent and _media_of(sent)[1], (sent, refresh_ok[-1])
    assert _media_of(_sdp_of(refresh_ok[-1])) == _media_of(sent)
    assert _header(refresh_ok[-1], "Contact") == _header(invite, "Contact")
    # the carrier stays the refresher: refresher=uac names the sender of its refresh (RFC 4028 section 9)
    assert _header(refresh_ok[-1], "Session-Expires") == ["90;refresher=uac"] and _header(refresh_ok[-1], "Require") == ["timer"]
    [update_ok] = _responses(carrier, "UPDATE")
    assert _header(update_ok, "Session-Expires") == ["90;refresher=uac"]
    # the agent saw only the re-INVITE that changes the media, without the timer headers, and no refresh ACK
    [reinvite] = agent.received_requests("INVITE")
    assert "a=sendonly" in reinvite and re.search(r"^CSeq:\s*3 INVITE", reinvite, re.M), reinvite
    assert not _header(reinvite, "Session-Expires") and "timer" not in "".join(_header(reinvite, "Require"))
    assert not agent.received_requests("UPDATE")
    assert [a for a in agent.received_requests("ACK") if re.search(r"^CSeq:\s*1 ACK", a, re.M)] == []
    hold_ok = [r for r in _responses(carrier, "INVITE") if re.search(r"^CSeq:\s*3 INVITE", r, re.M) and " 200 " in r]
    assert _header(hold_ok[-1], "Session-Expires") == ["90;refresher=uac"]
    assert "session refresh re-INVITE of call-id=" in edge.log()
    # the INVITE as sent was read at the 2xx and removed; the call ends with its slots back
    [call_id] = _header(invite, "Call-ID")
    assert call_id not in _sent_invites(edge)
    wait_until(lambda: edge.active_leases() == 0, what=f"slots back to zero: {edge.leases()}")


def test_a_trunk_with_session_timer_asks_its_carrier_to_refresh_for_an_agent_without_timers(clean_edge: Edge) -> None:
    """Trunk ``session_timer_s: 90``: the agent's INVITE (no ``Supported: timer``) reaches the carrier
    with ``Supported: timer`` and ``Session-Expires: 90;refresher=uas``; the carrier, refreshing as
    RFC 4028 section 9 tells it, has its pure refresh re-INVITE answered by the edge."""
    edge = clean_edge
    _provision_termination(edge, session_timer_s=90)
    steps = (_carrier_request("INVITE", 1, CARRIER_REFRESH, CARRIER_SDP) + '  <recv response="100" optional="true"/>\n'
             + '  <recv response="200"/>\n' + _carrier_request("ACK", 1))
    carrier = uas(edge.workdir / "carrier", CARRIER_A, GW_PORT, rtp_echo=False,
                  scenario=_termination_carrier(edge, "      Session-Expires: 90;refresher=uas\n      Require: timer\n", steps))
    agent = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, DEST, caller="+14155550100",
                scenario=_termination_agent(edge, reinvites=0, invite_headers="      Supported: 100rel\n"))
    assert agent.wait(timeout=30) == 0, agent.output()
    assert carrier.wait(timeout=30) == 0, carrier.output()
    [invite] = carrier.received_requests("INVITE")
    assert _header(invite, "Session-Expires") == ["90;refresher=uas"]
    assert "timer" in [t.strip() for h in _header(invite, "Supported") for t in h.split(",")]
    assert "100rel" in "".join(_header(invite, "Supported"))  # the agent's own options kept
    refresh_ok = [r for r in _responses(carrier, "INVITE") if re.search(r"^CSeq:\s*1 INVITE", r, re.M) and " 200 " in r]
    assert refresh_ok and _sdp_of(refresh_ok[-1]) == _sdp_of(invite)
    assert _header(refresh_ok[-1], "Session-Expires") == ["90;refresher=uac"]
    assert not agent.received_requests("INVITE")
    wait_until(lambda: edge.active_leases() == 0, what=f"slots back to zero: {edge.leases()}")


def test_after_a_failover_the_answering_carriers_refresh_is_answered_with_what_it_was_sent(clean_edge: Edge) -> None:
    """The first carrier refuses (503), the next answers asking to refresh: its pure refresh re-INVITE is
    answered with the INVITE it received (each branch sent replaces the kept copy; the refusal's drops it).
    The agent's own re-INVITE then carries the refresh's CSeq number (each side numbers its own): its
    ACK still reaches the carrier (the edge ends only the ACK of the refresh it answered: sender's tag and CSeq)."""
    edge = clean_edge
    _provision_termination(edge)
    edge.trunk("carrier-b", [f"{CARRIER_B}/32"], [(CARRIER_B, GW_PORT)], probe=False, media=QUIET)
    edge.route("+44", "carrier-b", "0.0050")  # cheaper: tried first
    refusing = uas(edge.workdir / "carrier-b", CARRIER_B, GW_PORT, rtp_echo=False,
                   scenario=reply_uas_scenario(edge.workdir / "carrier-b", 503))
    # then the agent's own re-INVITE with the refresh's CSeq number (its own numbering): its ACK reaches the carrier
    steps = (_carrier_request("INVITE", 2, CARRIER_REFRESH, CARRIER_SDP) + '  <recv response="100" optional="true"/>\n'
             + '  <recv response="200"/>\n' + _carrier_request("ACK", 2)
             + '  <recv request="INVITE"/>\n' + reply("200 OK", retrans=True, sdp=CARRIER_SDP) + '  <recv request="ACK"/>\n')
    carrier = uas(edge.workdir / "carrier", CARRIER_A, GW_PORT, rtp_echo=False,
                  scenario=_termination_carrier(edge, "      Session-Expires: 90;refresher=uas\n      Require: timer\n", steps))
    agent = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, DEST, caller="+14155550100",
                scenario=_termination_agent(edge, reinvites=0, own_reinvite=True))
    assert agent.wait(timeout=30) == 0, agent.output()
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert refusing.wait(timeout=10) == 0, refusing.output()
    assert [a for a in carrier.received_requests("ACK") if re.search(r"^CSeq:\s*2 ACK", a, re.M)]
    assert refusing.received_requests("INVITE")  # the failover happened
    invite = carrier.received_requests("INVITE")[0]
    refresh_ok = [r for r in _responses(carrier, "INVITE") if re.search(r"^CSeq:\s*2 INVITE", r, re.M) and " 200 " in r]
    assert refresh_ok and _sdp_of(refresh_ok[-1]) == _sdp_of(invite)
    assert not agent.received_requests("INVITE")
    wait_until(lambda: edge.active_leases() == 0, what=f"slots back to zero: {edge.leases()}")
