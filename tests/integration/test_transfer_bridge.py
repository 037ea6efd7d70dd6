"""Transfers the edge carries out itself (``bridge``, and ``auto`` after the carrier refused the
REFER): an inbound carrier call whose agent REFERs the caller to a number; the edge answers the
agent 202, places the transfer leg to the human (a SIPp callee behind another trunk's gateway)
with the context headers and the chosen caller ID, re-INVITEs the carrier on the agent's behalf
when the human answers, NOTIFYs the agent and hangs it up.  Caller and human then hear each
other's tone (FFT of what each endpoint received, :class:`tests.tonertp.ToneRtp`), a BYE from
either end ends the other, and each call has its own record, linked both ways."""

from __future__ import annotations

import itertools
import re
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from routing.tables.cdrstore import CdrStore
from routing.tables.model import CallerIdAction, CallerIdPolicy, ForwardedCallerId, TransferMode
from routing.call.dtmf import DtmfMode
from tests.bridgepeers import (CARRIER_IDS, called_carrier_scenario, carrier_scenario, consult_scenario,
                               hasty_agent_scenario, human_ids, human_scenario, media_lines, receives,
                               referring_agent_scenario, referring_caller_scenario, sends)
from tests.helpers import wait_until
from tests.sipp import uac, uas
from tests.tonertp import ToneRtp

from .conftest import AGENT2_IP, AGENT_IP, CARRIER_A, CARRIER_B, CARRIER_C, DID, Edge
from .test_sip_capture import trace_json
from .test_transfers import explain

HUMAN_PORT = 5082
TARGET = "+442071838751"
CALLER = "+14155550123"
CARRIER_HZ, HUMAN_HZ = 700.0, 1300.0
TE_PT = 96  #: the payload type rtpengine gives RFC 4733 events it adds to an offer
_runs = itertools.count()


def provision(edge: Edge, mode: TransferMode = TransferMode.AUTO, route: bool = True, bot: dict | None = None,
              origin: dict | None = None, **leg_trunk: object) -> None:
    """carrier-a brings the DID to bot (``origin``: its other fields); the human's number is routed
    over carrier-b (``leg_trunk``: its other fields), whose gateway is the human's SIPp."""
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [("sip.carrier-a.example", 5080)], direction="inbound",
               transfer=mode, **(origin or {}))
    edge.trunk("carrier-b", [f"{CARRIER_B}/32"], [(CARRIER_B, HUMAN_PORT)], direction="outbound", **leg_trunk)
    if route:
        edge.route("+44", "carrier-b", "0.01")
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"], x_headers=("X-Ctx", "X-Ticket"), **(bot or {}))
    edge.did(DID, "carrier-a", "bot")


def transfers(edge: Edge, mode: str, result: str) -> float:
    """``byoc_edge_transfers_total{mode,result}`` of Kamailio's /metrics (0 when absent)."""
    for family in text_string_to_metric_families(edge.metrics("kamailio")):
        for sample in family.samples:
            if sample.name == "byoc_edge_transfers_total" and sample.labels == {"mode": mode, "result": result}:
                return sample.value
    return 0.0


def _header(message: str, name: str) -> list[str]:
    return [m.strip() for m in re.findall(rf"^{name}:(.*)$", message, re.M | re.I)]


def _sipfrag(notify: str) -> str:
    return notify.split("\n\n", 1)[-1].strip().splitlines()[-1]


def _records(edge: Edge, since_ms: int, count: int) -> dict[str, dict]:
    store = CdrStore(edge.redis, 86400)
    found = wait_until(lambda: (lambda r: r if len(r) >= count else None)(
        store.records(since_ms, int(time.time() * 1000) + 1000)), what=f"{count} call records")
    return {r["call_id"]: r for r in found}


class Peers:
    """The carrier (SIPp uac + its tone endpoint), the agent (SIPp uas, existing REFER scenario)
    and the human (SIPp uas + its tone endpoint) of one transfer."""

    def __init__(self, edge: Edge, *, refer_code: str = "501 Not Implemented", human_answer: str = "200 OK",
                 carrier_hangs_up: bool = True, hold: bool = False, hangup_ms: int = 4000,
                 human_holds: bool = False, human: tuple[str, int] = (CARRIER_B, HUMAN_PORT),
                 refer_to: str = "", hasty_agent: bool = False, timers: bool = False,
                 human_hangs_up: bool | None = None, carrier_after: str = "", human_after: str = "",
                 human_te: int = 0, carrier_te: int = 0) -> None:
        run = next(_runs)
        self.dir = edge.workdir / f"bridge-{run}"
        self.dir.mkdir()
        self.carrier_rtp, self.human_rtp = ToneRtp(CARRIER_A, CARRIER_HZ), ToneRtp(human[0], HUMAN_HZ)
        self.carrier_sdp, self.human_sdp = self.dir / "carrier.sdp", self.dir / "human.sdp"
        bridged = human_answer.startswith("2")
        self.human = uas(self.dir / "human", human[0], human[1],
                         scenario=human_scenario(self.dir, human_answer, hold=hold,
                                                 hangs_up=not carrier_hangs_up if human_hangs_up is None else human_hangs_up,
                                                 hangup_ms=hangup_ms, holds=human_holds, after=human_after,
                                                 te=human_te),
                         rtp_echo=False, extra=["-key", "rtp_ip", human[0], "-key", "rtp_port", str(self.human_rtp.port),
                                                "-key", "sdp_file", str(self.human_sdp)])
        agent_scenario = hasty_agent_scenario(self.dir) if hasty_agent else "uas_agent_refer.xml"
        self.agent = uas(self.dir / "agent", AGENT_IP, 5090, scenario=agent_scenario, answer_ms=20,
                         rtp_echo=True, extra=["-key", "refer_to",
                                               refer_to or f"sip:{TARGET}@{edge.sip}?X-Ctx=ticket-42&X-Secret=s3"])
        self.carrier = uac(self.dir / "carrier", CARRIER_A, 5070, edge.sip, DID, caller=CALLER,
                           scenario=carrier_scenario(self.dir, refer_code, bridged=bridged, hangs_up=carrier_hangs_up,
                                                     hold=hold, hangup_ms=hangup_ms, held=human_holds, timers=timers,
                                                     after=carrier_after, te=carrier_te),
                           extra=["-key", "rtp_ip", CARRIER_A, "-key", "rtp_port", str(self.carrier_rtp.port),
                                  "-key", "sdp_file", str(self.carrier_sdp)])

    def aim(self, who: str, what: str) -> None:
        """Point ``who``'s tone endpoint at the media address it got in ``what`` (its SDP note)."""
        rtp, notes = (self.carrier_rtp, self.carrier_sdp) if who == "carrier" else (self.human_rtp, self.human_sdp)
        rtp.target = wait_until(lambda: media_lines(notes).get(what), what=f"{who}'s {what} SDP")

    def hears(self, who: str, hz: float, since: float) -> None:
        """Wait until ``who`` hears ``hz`` (strongest frequency of 0.5 s or more of audio since ``since``)."""
        rtp = self.carrier_rtp if who == "carrier" else self.human_rtp
        wait_until(lambda: rtp.heard_hz(since) is not None and abs(rtp.heard_hz(since) - hz) < 20, timeout=5,
                   what=f"{who} hearing {hz} Hz (hears {rtp.heard_hz(since)})")

    def finish(self) -> None:
        for run in (self.carrier, self.human, self.agent):
            assert run.wait(timeout=30) == 0, run.output()
        self.carrier_rtp.close()
        self.human_rtp.close()


@pytest.mark.parametrize("ender", ["carrier", "human"])
def test_carrier_refusing_refer_the_edge_bridges_caller_and_human(clean_edge: Edge, ender: str) -> None:
    """auto mode, the carrier answers the REFER 501: the human gets the leg's INVITE with the
    context header and the original caller with Diversion naming the DID; both hear each other;
    the agent gets 202, NOTIFY 100 and 200, and BYE; a BYE from ``ender`` ends the other end."""
    edge = clean_edge
    provision(edge)
    since, accepted = int(time.time() * 1000), transfers(edge, "bridge", "accepted")
    peers = Peers(edge, carrier_hangs_up=ender == "carrier")
    peers.aim("carrier", "answer")
    peers.aim("human", "invite")
    peers.aim("carrier", "reinvite")
    start = time.monotonic()
    peers.hears("carrier", HUMAN_HZ, start)
    peers.hears("human", CARRIER_HZ, start)
    # bridged: the carrier's slot and the leg's (on its trunk and the referring agent); the agent's own is free
    assert {k.rsplit(":", 2)[-2] + ":" + k.rsplit(":", 1)[-1]: v for k, v in edge.leases().items() if v} == \
        {"trunk:carrier-a": 1, "trunk:carrier-b": 1, "agent:bot": 1}, edge.leases()
    peers.finish()

    [leg] = peers.human.received_requests("INVITE")
    assert _header(leg, "X-Ctx") == ["ticket-42"] and not _header(leg, "X-Secret")
    assert re.search(rf"<sip:\{CALLER}@", _header(leg, "From")[0]), _header(leg, "From")
    assert _header(leg, "Diversion") and f"sip:{DID}@" in _header(leg, "Diversion")[0]
    assert not _header(leg, "X-Edge-Transfer") and not _header(leg, "X-Edge-Info")
    assert (202, "Accepted") in peers.agent.received_status()
    assert [_sipfrag(n) for n in peers.agent.received_requests("NOTIFY")] == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]
    assert peers.agent.received_requests("BYE")
    assert peers.carrier.received_requests("REFER")

    records = _records(edge, since, 2)
    original = next(r for r in records.values() if r["direction"] == "origination")
    leg_record = next(r for r in records.values() if r["direction"] == "termination")
    assert original["transfer"]["transferred_to"] == leg_record["call_id"]
    assert leg_record["transfer"]["transferred_from"] == original["call_id"]
    assert original["transfer"]["mode"] == "bridge" and original["transfer"]["refer_code"] == "501"
    assert original["transfer"]["result"] == "200" and original["transfer"]["target"] == TARGET
    assert leg_record["status"] == "answered" and leg_record["trunk"] == "carrier-b"
    assert transfers(edge, "bridge", "accepted") == accepted + 1
    assert (f"the carrier refused the REFER with 501, the edge placed leg {leg_record['call_id']}, which answered 200"
            in explain(edge, original["call_id"]))
    assert f"transfer leg (bridge) of call {original['call_id']}" in explain(edge, leg_record["call_id"])
    # one ladder for both calls, from either Call-ID: the carrier's call and the leg the edge placed
    human = f"{CARRIER_B}:{HUMAN_PORT}"
    for call_id in (original["call_id"], leg_record["call_id"]):
        ladder = wait_until(lambda: (m := trace_json(edge, call_id)) and any(
            x["message"].startswith("INVITE") and x["dst"] == human for x in m) and m, timeout=10,
            what=f"the leg's INVITE to the human in the ladder of {call_id}")
        sent_to = {x["dst"] for x in ladder if x["direction"] == "out"}
        assert human in sent_to and any(d.startswith(CARRIER_A) for d in sent_to), sent_to


def test_busy_human_leaves_the_agent_with_the_caller(clean_edge: Edge) -> None:
    """The human answers 486: the agent's final NOTIFY carries 486, the agent keeps the call (the
    caller still hears the agent: its echo of the caller's tone), the carrier hangs up later."""
    edge = clean_edge
    provision(edge)
    since, failed = int(time.time() * 1000), transfers(edge, "bridge", "failed")
    peers = Peers(edge, human_answer="486 Busy Here")
    peers.aim("carrier", "answer")
    wait_until(lambda: " result=486: the agent keeps the call" in edge.log(), what="the leg's failure")
    start = time.monotonic()
    peers.hears("carrier", CARRIER_HZ, start)  # the agent (SIPp rtp_echo) still talks to the caller
    peers.finish()
    assert [_sipfrag(n) for n in peers.agent.received_requests("NOTIFY")] == ["SIP/2.0 100 Trying",
                                                                              "SIP/2.0 486 Busy Here"]
    assert not peers.carrier.received_requests("BYE")  # the carrier ended the call itself
    records = _records(edge, since, 2)
    original = next(r for r in records.values() if r["direction"] == "origination")
    assert original["transfer"]["result"] == "486" and original["hangup"] == "caller"
    assert transfers(edge, "bridge", "failed") == failed + 1
    assert "which answered 486 (failed: the agent kept the call)" in explain(edge, original["call_id"])


def test_bridge_mode_never_sends_the_carrier_a_refer(clean_edge: Edge) -> None:
    """``transfer: bridge``: the edge carries the transfer out at once; the leg trunk's
    ``forwarded_caller_id: did`` presents the DID, without Diversion."""
    edge = clean_edge
    provision(edge, TransferMode.BRIDGE, forwarded_caller_id=ForwardedCallerId.DID)
    peers = Peers(edge, refer_code="")
    peers.aim("carrier", "answer")
    peers.aim("human", "invite")
    peers.aim("carrier", "reinvite")
    start = time.monotonic()
    peers.hears("carrier", HUMAN_HZ, start)
    peers.finish()
    assert not peers.carrier.received_requests("REFER")
    [leg] = peers.human.received_requests("INVITE")
    assert re.search(rf"<sip:\{DID}@", _header(leg, "From")[0]) and not _header(leg, "Diversion")


def test_an_owned_leg_trunk_takes_the_transferee_with_a_diversion_naming_an_owned_did(clean_edge: Edge) -> None:
    """Issue 13/14's owned rule, bridge mode: carrier-b is ``owned`` with ``replace`` and owns the DID
    (verified) and the agent's default, not the caller.  The leg still presents the original
    caller (not replaced by the default, not refused) because its Diversion names the owned DID;
    the leg's record and ``edgectl explain`` name the rule."""
    edge = clean_edge
    default = "+14155550999"
    provision(edge, TransferMode.BRIDGE, bot={"caller_id": default, "caller_ids": ("+1212",)},
              caller_id_policy=CallerIdPolicy.OWNED, caller_id_action=CallerIdAction.REPLACE,
              verified_caller_ids=(DID, default))
    since = int(time.time() * 1000)
    peers = Peers(edge, refer_code="")
    peers.aim("carrier", "answer")
    peers.aim("human", "invite")
    peers.aim("carrier", "reinvite")
    peers.hears("carrier", HUMAN_HZ, time.monotonic())
    peers.finish()
    [leg] = peers.human.received_requests("INVITE")
    assert re.search(rf"<sip:\{CALLER}@", _header(leg, "From")[0]), _header(leg, "From")
    assert _header(leg, "Diversion") == [f"<sip:{DID}@{CARRIER_B}:{HUMAN_PORT}>;reason=deflection;counter=1"]
    records = _records(edge, since, 2)
    leg_record = next(r for r in records.values() if r["direction"] == "termination")
    rule = f"{CALLER} with Diversion naming {DID}; {DID} is owned there: a forward from an owned DID counts as owned"
    assert rule in leg_record["transfer"]["leg_caller"], leg_record["transfer"]
    assert rule in explain(edge, leg_record["call_id"])


def test_hold_reinvite_from_the_carrier_after_a_bridge_reaches_the_human_and_is_answered(clean_edge: Edge) -> None:
    """After the bridge the carrier puts the call on hold (re-INVITE ``a=sendonly``): the human
    gets it in the leg's dialog (its Call-ID and tags, a higher CSeq) with an SDP of the leg's
    rtpengine call, answers ``a=recvonly``, and the carrier gets that answer in its own dialog;
    the caller's audio still reaches the human; then the carrier hangs up and the human's leg ends."""
    edge = clean_edge
    provision(edge)
    peers = Peers(edge, hold=True, hangup_ms=2500)
    peers.aim("carrier", "answer")
    peers.aim("human", "invite")
    peers.aim("carrier", "reinvite")
    peers.hears("human", CARRIER_HZ, time.monotonic())
    wait_until(lambda: media_lines(peers.human_sdp).get("hold"), what="the hold re-INVITE at the human")
    after_hold = time.monotonic()
    peers.hears("human", CARRIER_HZ, after_hold)  # the carrier (sendonly) still talks to the human
    peers.finish()

    first, hold = peers.human.received_requests("INVITE")
    assert _header(hold, "Call-ID") == _header(first, "Call-ID") and _header(hold, "Call-ID")[0].startswith("xfer-")
    assert _header(hold, "From") == _header(first, "From")
    assert int(_header(hold, "CSeq")[0].split()[0]) > int(_header(first, "CSeq")[0].split()[0])
    assert "a=sendonly" in hold and media_lines(peers.human_sdp)["hold"][0] == "127.0.0.1"  # rtpengine's address
    answers = [r for r in peers.carrier.received_responses("INVITE") if re.search(r"^SIP/2\.0 200", r, re.M)]
    held = next(r for r in answers if re.search(r"^CSeq:\s*2 INVITE", r, re.M))
    assert "a=recvonly" in held
    assert _header(held, "Call-ID") == _header(answers[0], "Call-ID")  # the carrier's own dialog
    assert not peers.agent.received_requests("INVITE")[1:]  # the agent, gone, saw nothing of it


def test_reinvite_from_the_human_after_a_bridge_reaches_the_carrier_as_the_agent(clean_edge: Edge) -> None:
    """The other way: the human's hold re-INVITE reaches the carrier in the carrier's own dialog
    (its Call-ID, the agent's tag, a CSeq above the edge's earlier re-INVITE), and the carrier's
    answer reaches the human in the leg's dialog; then the human hangs up and the carrier's call ends."""
    edge = clean_edge
    provision(edge)
    peers = Peers(edge, carrier_hangs_up=False, human_holds=True, hangup_ms=2500)
    peers.aim("carrier", "answer")
    peers.aim("human", "invite")
    peers.aim("carrier", "reinvite")
    peers.hears("carrier", HUMAN_HZ, time.monotonic())
    peers.finish()

    bridge_reinvite, held = peers.carrier.received_requests("INVITE")
    assert _header(held, "Call-ID") == _header(bridge_reinvite, "Call-ID") and "a=sendonly" in held
    assert _header(held, "From") == _header(bridge_reinvite, "From")  # the agent's side of the carrier's dialog
    assert int(_header(held, "CSeq")[0].split()[0]) > int(_header(bridge_reinvite, "CSeq")[0].split()[0])
    answer = next(r for r in peers.human.received_responses("INVITE") if re.search(r"^SIP/2\.0 200", r, re.M))
    assert "a=recvonly" in answer and _header(answer, "Call-ID")[0].startswith("xfer-")


def _ok(responses: list[str], cseq: str) -> str:
    """The 200 among ``responses`` whose CSeq is ``cseq`` (``"3 UPDATE"``)."""
    return next(r for r in responses if re.search(r"^SIP/2\.0 200", r, re.M) and re.search(rf"^CSeq:\s*{cseq}", r, re.M))


def test_update_with_sdp_after_a_bridge_crosses_both_ways(clean_edge: Edge) -> None:
    """RFC 3311 across the bridge: the carrier's UPDATE (``a=sendonly``) reaches the human in the
    leg's dialog (its Call-ID, a higher CSeq, rtpengine's media address) and the human's
    ``a=recvonly`` answer reaches the carrier in its own dialog; then the human's UPDATE reaches the
    carrier as the agent (the carrier's Call-ID) and its answer the human; each end then hears the
    other's tone through the addresses those answers gave."""
    edge = clean_edge
    provision(edge)
    peers = Peers(edge, hangup_ms=2500,
                  carrier_after=sends("UPDATE", 3, CARRIER_IDS, "sendonly", note="updated")
                  + receives("UPDATE", note="hupdate", answer="sendrecv"),
                  human_after=receives("UPDATE", note="update", answer="recvonly")
                  + sends("UPDATE", 1, human_ids(), "sendrecv", note="hupdated"))
    peers.aim("carrier", "answer")
    peers.aim("human", "invite")
    peers.aim("carrier", "reinvite")
    peers.aim("human", "hupdated")
    peers.aim("carrier", "hupdate")
    start = time.monotonic()
    peers.hears("carrier", HUMAN_HZ, start)
    peers.hears("human", CARRIER_HZ, start)
    peers.finish()

    [leg] = peers.human.received_requests("INVITE")
    [update] = peers.human.received_requests("UPDATE")
    assert _header(update, "Call-ID") == _header(leg, "Call-ID") and "a=sendonly" in update
    assert int(_header(update, "CSeq")[0].split()[0]) > int(_header(leg, "CSeq")[0].split()[0])
    notes = media_lines(peers.human_sdp)
    assert notes["update"][0] == notes["invite"][0]  # rtpengine's address, as in the leg's INVITE
    answered = _ok(peers.carrier.received_responses("UPDATE"), "3 UPDATE")
    assert "a=recvonly" in answered and media_lines(peers.carrier_sdp)["updated"][0] == media_lines(peers.carrier_sdp)["reinvite"][0]
    carrier_call = _header(peers.carrier.received_requests("INVITE")[0], "Call-ID")
    [hupdate] = peers.carrier.received_requests("UPDATE")
    assert _header(hupdate, "Call-ID") == carrier_call and _header(answered, "Call-ID") == carrier_call
    assert _header(_ok(peers.human.received_responses("UPDATE"), "1 UPDATE"), "Call-ID") == _header(leg, "Call-ID")


def test_reinvite_without_sdp_after_a_bridge_gets_the_other_ends_offer_and_the_ack_answers(clean_edge: Edge) -> None:
    """A late offer across the bridge (RFC 3261 section 14.1), both ways: the carrier's re-INVITE
    without SDP reaches the human without SDP; the human's offer (its 200) reaches the carrier with
    rtpengine's address and the carrier's answer (its ACK) the human; then the human does the same
    toward the carrier.  Each end then hears the other's tone at the addresses so negotiated."""
    edge = clean_edge
    provision(edge)
    peers = Peers(edge, hangup_ms=2500,
                  carrier_after=sends("INVITE", 3, CARRIER_IDS, note="lateoffer", ack_sdp="sendrecv")
                  + receives("INVITE", answer="sendrecv", ack_note="hlateack"),
                  human_after=receives("INVITE", answer="sendrecv", ack_note="lateack")
                  + sends("INVITE", 1, human_ids(), note="hlateoffer", ack_sdp="sendrecv"))
    peers.aim("carrier", "answer")
    peers.aim("human", "invite")
    peers.aim("carrier", "reinvite")
    peers.aim("carrier", "lateoffer")
    peers.aim("human", "lateack")
    peers.aim("human", "hlateoffer")
    peers.aim("carrier", "hlateack")
    start = time.monotonic()
    peers.hears("carrier", HUMAN_HZ, start)
    peers.hears("human", CARRIER_HZ, start)
    peers.finish()

    leg, late = peers.human.received_requests("INVITE")
    assert _header(late, "Call-ID") == _header(leg, "Call-ID") and "m=audio" not in late  # no offer
    carrier, human = media_lines(peers.carrier_sdp), media_lines(peers.human_sdp)
    # every SDP either end got names rtpengine's address (the leg's call), never the other end's
    assert carrier["lateoffer"][0] == carrier["reinvite"][0] == carrier["hlateack"][0] != CARRIER_B
    assert human["lateack"][0] == human["invite"][0] == human["hlateoffer"][0] != CARRIER_A
    bridge_reinvite, hlate = peers.carrier.received_requests("INVITE")
    assert _header(hlate, "Call-ID") == _header(bridge_reinvite, "Call-ID") and "m=audio" not in hlate


def test_dtmf_info_after_a_bridge_follows_each_ends_dtmf_mode(clean_edge: Edge) -> None:
    """RFC 6086 INFO across the bridge, as the receiving end's DTMF mode wants: carrier-a is
    ``info`` and carrier-b (the human's) ``rfc4733``.  The carrier's INFO ``5`` is answered by the
    edge and reaches the human as an RFC 4733 event in the leg's media (no INFO); the human's INFO
    ``9`` reaches the carrier as an INFO in the carrier's own dialog.  The carrier's digit is in
    its call's record."""
    edge = clean_edge
    provision(edge, origin={"dtmf": DtmfMode.INFO}, dtmf=DtmfMode.RFC4733)
    since = int(time.time() * 1000)
    peers = Peers(edge, hangup_ms=2000, human_te=TE_PT,
                  carrier_after=sends("INFO", 3, CARRIER_IDS, info="5") + receives("INFO"),
                  human_after='  <pause milliseconds="2500"/>\n' + sends("INFO", 1, human_ids(), info="9"))
    peers.aim("carrier", "answer")
    peers.aim("human", "invite")
    peers.aim("carrier", "reinvite")
    peers.finish()

    [leg] = peers.human.received_requests("INVITE")
    assert f"a=rtpmap:{TE_PT} telephone-event/8000" in leg  # rtpengine's offer: the pt the human's answer takes
    assert peers.human_rtp.events(TE_PT) == "5"
    assert not peers.human.received_requests("INFO")
    [info] = peers.carrier.received_requests("INFO")
    assert "Signal=9" in info
    assert _header(info, "Call-ID") == _header(peers.carrier.received_requests("INVITE")[0], "Call-ID")
    assert _ok(peers.carrier.received_responses("INFO"), "3 INFO")
    original = next(r for r in _records(edge, since, 2).values() if r["direction"] == "origination")
    assert original["media"]["dtmf"].startswith("caller:5:info"), original["media"]


def test_caller_hanging_up_while_the_human_rings_cancels_the_leg(clean_edge: Edge) -> None:
    """The carrier's caller hangs up while the edge's leg still rings: the BYE reaches the agent
    (still in the call), the edge CANCELs the leg (the human gets CANCEL), both records end, the
    original's transfer result is 487 and nothing is left."""
    edge = clean_edge
    provision(edge)
    since = int(time.time() * 1000)
    peers = Peers(edge, human_answer="ring", hangup_ms=1500)
    for run in (peers.carrier, peers.human):
        assert run.wait(timeout=30) == 0, run.output()
    peers.agent.wait(timeout=30)  # its scenario expects a final NOTIFY; the call ended first, with its BYE
    peers.carrier_rtp.close()
    peers.human_rtp.close()
    assert peers.human.received_requests("CANCEL") and peers.agent.received_requests("BYE")
    assert [_sipfrag(n) for n in peers.agent.received_requests("NOTIFY")] == ["SIP/2.0 100 Trying"]
    records = _records(edge, since, 2)
    original = next(r for r in records.values() if r["direction"] == "origination")
    leg_record = next(r for r in records.values() if r["direction"] == "termination")
    assert original["transfer"]["result"] == "487" and original["hangup"] == "caller"
    assert leg_record["status"] != "answered" and leg_record["transfer"]["transferred_from"] == original["call_id"]


def test_a_target_without_route_is_told_to_the_agent(clean_edge: Edge) -> None:
    """The agent transfers to a number no route covers: the leg is refused by the edge itself (404
    No Route, as any termination call of the agent), the agent's NOTIFY carries it and the agent
    keeps the caller; ``edgectl explain`` of the leg names the refusal."""
    edge = clean_edge
    provision(edge, route=False)  # no route for +44
    since = int(time.time() * 1000)
    peers = Peers(edge, human_answer="486 Busy Here")  # the human is never reached
    peers.aim("carrier", "answer")
    wait_until(lambda: " result=404: the agent keeps the call" in edge.log(), what="the leg's refusal")
    peers.human.stop()
    peers.hears("carrier", CARRIER_HZ, time.monotonic())  # the agent (its echo) is still with the caller
    for run in (peers.carrier, peers.agent):
        assert run.wait(timeout=30) == 0, run.output()
    assert [_sipfrag(n) for n in peers.agent.received_requests("NOTIFY")] == ["SIP/2.0 100 Trying",
                                                                              "SIP/2.0 404 No Route"]
    assert not peers.human.received_requests("INVITE")
    original = next(r for r in _records(edge, since, 1).values() if r["direction"] == "origination")
    assert original["transfer"]["result"] == "404"
    assert "404 No Route" in explain(edge, original["transfer"]["transferred_to"])


def test_bridge_to_an_on_net_sip_uri_target(clean_edge: Edge) -> None:
    """A human queue the edge knows as an agent entry (its host is on-net): the leg goes straight
    to that SIP URI, caller and human hear each other, the leg holds the referring agent's slot."""
    edge = clean_edge
    provision(edge, TransferMode.BRIDGE)
    edge.agent("humans", [f"sip:queue@{AGENT2_IP}:5092"], [])
    since = int(time.time() * 1000)
    peers = Peers(edge, refer_code="", human=(AGENT2_IP, 5092), refer_to=f"sip:queue@{AGENT2_IP}:5092?X-Ctx=ticket-7")
    peers.aim("carrier", "answer")
    peers.aim("human", "invite")
    peers.aim("carrier", "reinvite")
    start = time.monotonic()
    peers.hears("carrier", HUMAN_HZ, start)
    peers.hears("human", CARRIER_HZ, start)
    peers.finish()
    [leg] = peers.human.received_requests("INVITE")
    assert re.search(rf"^INVITE sip:queue@{AGENT2_IP}:5092 ", leg, re.M) and _header(leg, "X-Ctx") == ["ticket-7"]
    records = _records(edge, since, 2)
    leg_record = next(r for r in records.values() if r["direction"] == "termination")
    assert leg_record["status"] == "answered" and leg_record["agent"] == "bot"
    assert leg_record["transfer"]["target"] == f"sip:queue@{AGENT2_IP}:5092"


def test_agent_hanging_up_right_after_the_202_still_gets_the_caller_bridged(clean_edge: Edge) -> None:
    """An agent that sends BYE as soon as it has the 202 and the NOTIFY 100 (RFC 5589 lets a
    transferor leave then): the edge answers that BYE itself, keeps the carrier's call, and the
    caller is bridged to the human when the human answers; the agent gets nothing more.  The
    REFER's own allowed X- header reaches the human with the embedded one; a disallowed one does not."""
    edge = clean_edge
    provision(edge)
    since = int(time.time() * 1000)
    peers = Peers(edge, hasty_agent=True)
    wait_until(lambda: "the agent hung up while the leg rings" in edge.log(), what="the agent's early BYE")
    peers.aim("carrier", "answer")
    peers.aim("human", "invite")
    peers.aim("carrier", "reinvite")
    start = time.monotonic()
    peers.hears("carrier", HUMAN_HZ, start)
    peers.hears("human", CARRIER_HZ, start)
    peers.finish()
    assert [_sipfrag(n) for n in peers.agent.received_requests("NOTIFY")] == ["SIP/2.0 100 Trying"]
    assert not peers.agent.received_requests("BYE")
    [leg] = peers.human.received_requests("INVITE")  # the REFER's own allowed header and the embedded one
    assert _header(leg, "X-Ticket") == ["99"] and _header(leg, "X-Ctx") == ["ticket-42"] and not _header(leg, "X-Denied")
    records = _records(edge, since, 2)
    original = next(r for r in records.values() if r["direction"] == "origination")
    assert original["transfer"]["result"] == "200" and original["hangup"] == "caller"


def test_attended_transfer_joins_the_caller_and_the_human_of_the_consult_call(clean_edge: Edge) -> None:
    """Attended transfer (RFC 3891): the agent's consult call to the human is an ordinary
    termination call through the edge; the agent then REFERs the carrier's caller with
    ``Replaces`` naming it.  The edge re-INVITEs the human in the consult call as the agent (the
    carrier's media re-offered), then the carrier with the human's answer, NOTIFYs the agent 200
    and hangs up both of its calls: caller and human hear each other, records linked both ways."""
    edge = clean_edge
    provision(edge)
    run = next(_runs)
    work = edge.workdir / f"attended-{run}"
    work.mkdir()
    consult_id = f"consult-{run}-{int(time.time())}"
    carrier_rtp, human_rtp = ToneRtp(CARRIER_A, CARRIER_HZ), ToneRtp(CARRIER_B, HUMAN_HZ)
    carrier_sdp, human_sdp = work / "carrier.sdp", work / "human.sdp"
    since = int(time.time() * 1000)
    human = uas(work / "human", CARRIER_B, HUMAN_PORT, scenario=human_scenario(work, hold=True, tag="humanH", hold_answer="sendrecv"),
                rtp_echo=False, extra=["-key", "rtp_ip", CARRIER_B, "-key", "rtp_port", str(human_rtp.port),
                                       "-key", "sdp_file", str(human_sdp)])
    replaces = f"{consult_id}%3Bto-tag%3DhumanH%3Bfrom-tag%3DconsultA"
    agent = uas(work / "agent", AGENT_IP, 5090, scenario=referring_agent_scenario(work, 1500), answer_ms=20,
                rtp_echo=True, extra=["-key", "refer_to", f"sip:{TARGET}@{edge.sip}?Replaces={replaces}"])
    consult = uac(work / "consult", AGENT_IP, 5093, edge.sip, TARGET, scenario=consult_scenario(work, "consultA"),
                  extra=["-cid_str", consult_id])
    human_rtp.target = wait_until(lambda: media_lines(human_sdp).get("invite"), what="the consult call at the human")
    carrier = uac(work / "carrier", CARRIER_A, 5070, edge.sip, DID, caller=CALLER,
                  scenario=carrier_scenario(work, "", bridged=True, hangs_up=True, hangup_ms=3000),
                  extra=["-key", "rtp_ip", CARRIER_A, "-key", "rtp_port", str(carrier_rtp.port),
                         "-key", "sdp_file", str(carrier_sdp)])
    carrier_rtp.target = wait_until(lambda: media_lines(carrier_sdp).get("answer"), what="the carrier's answer")
    carrier_rtp.target = wait_until(lambda: media_lines(carrier_sdp).get("reinvite"), what="the carrier's re-INVITE")
    human_rtp.target = wait_until(lambda: media_lines(human_sdp).get("hold"), what="the human's re-INVITE")
    start = time.monotonic()
    for rtp, hz, who in ((carrier_rtp, HUMAN_HZ, "carrier"), (human_rtp, CARRIER_HZ, "human")):
        wait_until(lambda: rtp.heard_hz(start) is not None and abs(rtp.heard_hz(start) - hz) < 20, timeout=5,
                   what=f"{who} hearing {hz} Hz (hears {rtp.heard_hz(start)})")
    for sipp in (carrier, human, agent, consult):
        assert sipp.wait(timeout=30) == 0, sipp.output()
    carrier_rtp.close()
    human_rtp.close()

    assert [_sipfrag(n) for n in agent.received_requests("NOTIFY")] == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]
    assert agent.received_requests("BYE") and consult.received_requests("BYE")
    assert not carrier.received_requests("REFER")
    _, rejoin = human.received_requests("INVITE")
    assert _header(rejoin, "Call-ID") == [consult_id] and ";tag=consultA" in _header(rejoin, "From")[0]
    records = _records(edge, since, 2)
    original = next(r for r in records.values() if r["direction"] == "origination")
    consult_record = records[consult_id]
    assert original["transfer"]["mode"] == "attended" and original["transfer"]["result"] == "200"
    assert original["transfer"]["transferred_to"] == consult_id
    assert consult_record["transfer"]["transferred_from"] == original["call_id"]
    assert transfers(edge, "attended", "accepted") >= 1


def test_carrier_session_refresh_after_a_bridge_is_answered(clean_edge: Edge) -> None:
    """A carrier that asked for session timers (RFC 4028) the agent does not do: the edge keeps
    them for the call, and after the bridge the carrier's refresh UPDATE (no SDP) is still
    answered 200 with ``Session-Expires`` by the edge (not refused, not sent to the human), so
    the call is not ended for want of a refresh."""
    edge = clean_edge
    provision(edge)
    peers = Peers(edge, timers=True, hangup_ms=1500)
    peers.aim("carrier", "answer")
    peers.aim("human", "invite")
    peers.aim("carrier", "reinvite")
    peers.hears("human", CARRIER_HZ, time.monotonic())
    peers.finish()
    [ok] = peers.carrier.received_responses("UPDATE")
    assert re.search(r"^SIP/2\.0 200", ok, re.M) and _header(ok, "Session-Expires")[0].startswith("90;refresher=uac")
    assert not peers.human.received_requests("UPDATE")


def test_the_legs_maximum_duration_ends_both_calls(clean_edge: Edge) -> None:
    """Nobody hangs up after the bridge: the leg's maximum duration (the node's 12 s in these
    tests, from the leg's answer) ends the leg (BYE to the human) and with it the carrier's call
    (BYE to the carrier), with the leg's record saying the edge hung up; the edge's own BYE to the
    leg's caller side (itself) is not refused as a stranger's."""
    edge = clean_edge
    provision(edge)
    since = int(time.time() * 1000)
    rejected = edge.metrics("kamailio").count('reason="no_dialog"')
    peers = Peers(edge, carrier_hangs_up=False, human_hangs_up=False)
    peers.aim("carrier", "answer")
    peers.aim("human", "invite")
    for run in (peers.carrier, peers.human):
        assert run.wait(timeout=30) == 0, run.output()
    peers.agent.wait(timeout=30)
    peers.carrier_rtp.close()
    peers.human_rtp.close()
    assert peers.carrier.received_requests("BYE") and peers.human.received_requests("BYE")
    records = _records(edge, since, 2)
    leg_record = next(r for r in records.values() if r["direction"] == "termination")
    assert leg_record["hangup"] == "edge" and 11_000 <= leg_record["talk_ms"] <= 13_500, leg_record
    assert "reached its maximum duration" in edge.log()
    assert edge.metrics("kamailio").count('reason="no_dialog"') == rejected


def test_the_legs_rtp_timeout_ends_both_calls(clean_edge: Edge) -> None:
    """After the bridge the media watchdog watches the leg (the carrier's own call no longer
    carries media): when both ends stop sending RTP, the leg's RTP timeout (carrier-b's 5 s) ends
    the human's leg and the carrier's call, well before the 12 s maximum duration."""
    from routing.tables.model import MediaPolicy
    edge = clean_edge
    provision(edge, media=MediaPolicy(rtp_timeout_s=5))
    peers = Peers(edge, carrier_hangs_up=False, human_hangs_up=False)
    peers.aim("carrier", "answer")
    peers.aim("human", "invite")
    peers.aim("carrier", "reinvite")
    peers.hears("carrier", HUMAN_HZ, time.monotonic())
    silent_at = time.monotonic()
    peers.carrier_rtp.target = peers.human_rtp.target = None  # both ends fall silent
    for run in (peers.carrier, peers.human):
        assert run.wait(timeout=30) == 0, run.output()
    elapsed = time.monotonic() - silent_at
    peers.agent.wait(timeout=30)
    peers.carrier_rtp.close()
    peers.human_rtp.close()
    assert 4 <= elapsed < 9, elapsed
    assert re.search(r"call-id=xfer-\S+ had no RTP", edge.log())
    assert peers.carrier.received_requests("BYE") and peers.human.received_requests("BYE")


def test_termination_call_whose_agent_transfers_the_carrier_is_bridged(clean_edge: Edge) -> None:
    """The agent called a number over carrier-c (a termination call) and REFERs the carrier to the
    human; carrier-c answers the REFER 501 (auto): the edge bridges it, the carrier (the callee
    here) re-INVITEd as the agent with the leg's SDP, the human's leg presenting the number the
    agent called (the transferee) with Diversion naming the agent's caller ID; audio both ways."""
    edge = clean_edge
    provision(edge)
    edge.trunk("carrier-c", [f"{CARRIER_C}/32"], [(CARRIER_C, 5086)], direction="outbound")
    edge.route("+33", "carrier-c", "0.01")
    run = next(_runs)
    work = edge.workdir / f"termination-{run}"
    work.mkdir()
    carrier_rtp, human_rtp = ToneRtp(CARRIER_C, CARRIER_HZ), ToneRtp(CARRIER_B, HUMAN_HZ)
    carrier_sdp, human_sdp = work / "carrier.sdp", work / "human.sdp"
    since = int(time.time() * 1000)
    human = uas(work / "human", CARRIER_B, HUMAN_PORT, scenario=human_scenario(work), rtp_echo=False,
                extra=["-key", "rtp_ip", CARRIER_B, "-key", "rtp_port", str(human_rtp.port), "-key", "sdp_file", str(human_sdp)])
    carrier = uas(work / "carrier", CARRIER_C, 5086, scenario=called_carrier_scenario(work, "501 Not Implemented", 3000),
                  rtp_echo=False, extra=["-key", "rtp_ip", CARRIER_C, "-key", "rtp_port", str(carrier_rtp.port),
                                         "-key", "sdp_file", str(carrier_sdp)])
    agent = uac(work / "agent", AGENT_IP, 5094, edge.sip, "+33123456789", caller=CALLER,
                scenario=referring_caller_scenario(work, 800), extra=["-key", "refer_to", f"sip:{TARGET}@{edge.sip}?X-Ctx=9"])
    carrier_rtp.target = wait_until(lambda: media_lines(carrier_sdp).get("invite"), what="the carrier's INVITE")
    human_rtp.target = wait_until(lambda: media_lines(human_sdp).get("invite"), what="the human's INVITE")
    carrier_rtp.target = wait_until(lambda: media_lines(carrier_sdp).get("reinvite"), what="the carrier's re-INVITE")
    start = time.monotonic()
    for rtp, hz, who in ((carrier_rtp, HUMAN_HZ, "carrier"), (human_rtp, CARRIER_HZ, "human")):
        wait_until(lambda: rtp.heard_hz(start) is not None and abs(rtp.heard_hz(start) - hz) < 20, timeout=5,
                   what=f"{who} hearing {hz} Hz (hears {rtp.heard_hz(start)})")
    for sipp in (carrier, human, agent):
        assert sipp.wait(timeout=30) == 0, sipp.output()
    carrier_rtp.close()
    human_rtp.close()

    assert [_sipfrag(n) for n in agent.received_requests("NOTIFY")] == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]
    assert agent.received_requests("BYE") and carrier.received_requests("REFER")
    [leg] = human.received_requests("INVITE")
    assert re.search(r"<sip:\+33123456789@", _header(leg, "From")[0]) and _header(leg, "X-Ctx") == ["9"]
    assert f"sip:{CALLER}@" in _header(leg, "Diversion")[0]
    records = _records(edge, since, 2)
    original = next(r for r in records.values() if not r["call_id"].startswith("xfer-"))
    leg_record = records[original["transfer"]["transferred_to"]]
    assert original["direction"] == "termination" and original["transfer"]["result"] == "200"
    assert leg_record["transfer"]["transferred_from"] == original["call_id"] and leg_record["trunk"] == "carrier-b"


def test_rfc4733_digit_from_the_human_after_a_bridge_reaches_an_info_carrier_as_info(clean_edge: Edge) -> None:
    """RFC 4733 from the media to INFO across the bridge: carrier-a is ``info``, carrier-b (the
    human's) ``rfc4733``.  After the bridge the human presses ``7`` (events in its RTP, payload
    type 96): the carrier gets an INFO ``Signal=7`` in its own dialog (its Call-ID, the agent's
    tag as From, a CSeq above the edge's re-INVITE) and no event in its media; the digit is in the
    leg's record (the human's call), and the tone rtpengine would make of it never reaches the carrier."""
    edge = clean_edge
    provision(edge, origin={"dtmf": DtmfMode.INFO}, dtmf=DtmfMode.RFC4733)
    since = int(time.time() * 1000)
    peers = Peers(edge, hangup_ms=1500, human_te=TE_PT, carrier_after=receives("INFO"))
    peers.aim("carrier", "answer")
    peers.aim("human", "invite")
    peers.aim("carrier", "reinvite")
    peers.hears("carrier", HUMAN_HZ, time.monotonic())
    peers.human_rtp.press("7", TE_PT)
    peers.finish()

    [info] = peers.carrier.received_requests("INFO")
    bridge_reinvite = peers.carrier.received_requests("INVITE")[0]
    assert "Signal=7" in info and _header(info, "Content-Type") == ["application/dtmf-relay"]
    assert _header(info, "Call-ID") == _header(bridge_reinvite, "Call-ID")
    assert _header(info, "From") == _header(bridge_reinvite, "From") and _header(info, "To") == _header(bridge_reinvite, "To")
    assert int(_header(info, "CSeq")[0].split()[0]) > int(_header(bridge_reinvite, "CSeq")[0].split()[0])
    # taken out of the media (neither an event nor a tone rtpengine made of it): the digit arrives once
    assert not peers.carrier_rtp.events(TE_PT) and "7" not in peers.carrier_rtp.tones(), peers.carrier_rtp.tones()
    records = _records(edge, since, 2)
    leg_record = next(r for r in records.values() if r["direction"] == "termination")
    assert leg_record["media"]["dtmf"] == "callee:7:rfc4733", leg_record["media"]


def test_rfc4733_digit_from_the_carrier_after_a_bridge_reaches_an_info_human_as_info(clean_edge: Edge) -> None:
    """The other way: carrier-a is ``rfc4733`` (its offer has telephone-event 101), carrier-b (the
    human's) ``info``.  After the bridge the carrier presses ``4``: the human gets an INFO
    ``Signal=4`` in the leg's dialog (its Call-ID and tags, the edge as its caller, a CSeq above
    the leg's INVITE) and neither an event nor a tone of it in its media; the digit is in the
    original call's record (the carrier's call, the carrier its caller).  Nobody hangs up: the
    leg's maximum duration ends it with a BYE numbered above that INFO (the edge sent it straight,
    unseen by the dialog module)."""
    edge = clean_edge
    provision(edge, origin={"dtmf": DtmfMode.RFC4733}, dtmf=DtmfMode.INFO)
    since = int(time.time() * 1000)
    peers = Peers(edge, carrier_hangs_up=False, human_hangs_up=False, carrier_te=101, human_after=receives("INFO"))
    peers.aim("carrier", "answer")
    peers.aim("human", "invite")
    peers.aim("carrier", "reinvite")
    peers.hears("human", CARRIER_HZ, time.monotonic())
    peers.carrier_rtp.press("4", 101)
    peers.finish()

    [leg] = peers.human.received_requests("INVITE")
    [info] = peers.human.received_requests("INFO")
    assert "Signal=4" in info and _header(info, "Content-Type") == ["application/dtmf-relay"]
    assert _header(info, "Call-ID") == _header(leg, "Call-ID") and _header(info, "From") == _header(leg, "From")
    assert _header(info, "To")[0].startswith(_header(leg, "To")[0]) and ";tag=" in _header(info, "To")[0]
    assert int(_header(info, "CSeq")[0].split()[0]) > int(_header(leg, "CSeq")[0].split()[0])
    assert not peers.human_rtp.others and "4" not in peers.human_rtp.tones(), peers.human_rtp.tones()
    [bye] = peers.human.received_requests("BYE")
    assert int(_header(bye, "CSeq")[0].split()[0]) > int(_header(info, "CSeq")[0].split()[0])
    records = _records(edge, since, 2)
    original = next(r for r in records.values() if r["direction"] == "origination")
    assert original["media"]["dtmf"] == "caller:4:rfc4733", original["media"]
