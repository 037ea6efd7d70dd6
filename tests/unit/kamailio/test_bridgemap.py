"""In-dialog requests across a bridge (routing.kamailio.bridgemap): an UPDATE with SDP (RFC 3311)
re-offered in the leg's rtpengine call and relayed in the other dialog; a re-INVITE without SDP
relayed as it is, the other end's offer in its 2xx and the answer in the ACK made in the leg's
rtpengine call; a DTMF INFO relayed or played into the media as the two ends' DTMF modes want; a
digit seen in the leg's media sent to an end that takes INFO in its own dialog."""

from __future__ import annotations

import importlib
import json
from dataclasses import replace
from typing import Any

import pytest

from routing.call import bridge as bx
from routing.call import dtmf
from routing.ngclient import NgError
from tests.unit.kamailio.fakehtable import HTables
from tests.unit.kamailio.fakeksr import MSG, FakeKSR

CARRIER_TAG, AGENT_TAG, LEG_TAG, TARGET_TAG = "ct", "at", "lt", "tt"
LEG = "xfer-call-1"
SDP = "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


@pytest.fixture
def tables(ksr: FakeKSR, router: Any) -> HTables:
    """A bridged origination call: the carrier (caller of call-1) joined to the human (callee of
    the leg), whose dialogs the dialog module knows (dlg_get)."""
    router.worker.settings = replace(router.worker.settings, loop_socket="udp:203.0.113.1:5060")
    ht = HTables(ksr)
    b = bx.Bridge("call-1", LEG, "bot", "telnyx", CARRIER_TAG, AGENT_TAG, "+442071838751", True, phase="bridged",
                  leg_tag=LEG_TAG, target_tag=TARGET_TAG, leg_cseq=1, agent_cseq=3, uac_cseq=1, dtmf="info,rfc4733")
    ht.table("xfer")["call-1"] = ht.table("xfer")[LEG] = b.encode()
    ksr.returns["dialog.dlg_get"] = 1
    ksr.pv.update({"$dlg(from_uri)": "sip:a@x", "$dlg(to_uri)": "sip:b@y", "$dlg(from_contact)": "<sip:a@192.0.2.5>",
                   "$dlg(to_contact)": "<sip:b@192.0.2.6>", "$dlg(from_rs)": "", "$dlg(to_rs)": "",
                   "$dlg(from_bindaddr)": "udp:203.0.113.1:5060", "$dlg(to_bindaddr)": "udp:203.0.113.1:5060",
                   "$dlg(from_cseq)": "2", "$dlg(to_cseq)": "1"})
    return ht


def _request(ksr: FakeKSR, method: str, from_carrier: bool, sdp: str = "", cseq: int = 7, **pvs: Any) -> None:
    ksr.pv.update({"$rm": method, "$ci": "call-1" if from_carrier else LEG, "$cs": str(cseq),
                   "$ft": CARRIER_TAG if from_carrier else TARGET_TAG, "$hdr(From)": "<sip:from@x>;tag=f",
                   "$hdr(To)": "<sip:to@y>;tag=t", "$hdr(CSeq)": f"{cseq} {method}", "$rb": sdp, **pvs})
    ksr.returns["textops.has_body_type"] = 1 if sdp else -1


def _appended(ksr: FakeKSR, name: str) -> list[str]:
    return [a[0] for a in ksr.args_of("hdr.append") if a[0].startswith(name + ":")]


def _state(tables: HTables) -> bx.Bridge:
    found = bx.Bridge.decode(tables.table("xfer")["call-1"])
    assert found is not None
    return found


def test_an_update_with_sdp_from_the_carrier_is_reoffered_and_relayed_to_the_human(ksr: FakeKSR, router: Any,
                                                                                   tables: HTables) -> None:
    _request(ksr, "UPDATE", True, SDP)
    router.ksr_bridged(MSG)
    [(offer,)] = ksr.args_of("rtpengine.rtpengine_offer")
    assert offer.endswith(f"call-id={LEG} from-tag={LEG_TAG} to-tag={TARGET_TAG}")  # the carrier's side of the leg
    # in the leg's dialog, as its caller (the edge), above the edge's earlier requests there
    assert _appended(ksr, "Call-ID") == [f"Call-ID: {LEG}\r\n"] and _appended(ksr, "CSeq") == ["CSeq: 3 UPDATE\r\n"]
    assert ksr.args_of("tm.t_relay") == [()] and ksr.replies == []
    assert json.loads(ksr.pv["$avp(edge_xrelay)"])["late"] is False
    assert _state(tables).uac_cseq == 3 and _state(tables).relayed == []  # an UPDATE has no ACK to map


def test_a_reinvite_without_sdp_carries_the_late_offer_and_its_answer_through_the_leg(ksr: FakeKSR, router: Any,
                                                                                     tables: HTables) -> None:
    _request(ksr, "INVITE", False)  # the human, no SDP
    router.ksr_bridged(MSG)
    assert ksr.args_of("rtpengine.rtpengine_offer") == [] and ksr.args_of("tm.t_relay") == [()]
    assert _appended(ksr, "Call-ID") == ["Call-ID: call-1\r\n"] and _appended(ksr, "CSeq") == ["CSeq: 4 INVITE\r\n"]
    assert _state(tables).relayed == [7, 4, 1]
    # the carrier's 2xx offers: made in the leg's call from the carrier's tag
    ksr.pv.update({"$ci": "call-1", "$rs": "200", "$rb": SDP})
    ksr.returns["textops.has_body_type"] = 1
    router.ksr_bridged_reply(MSG)
    [(offer,)] = ksr.args_of("rtpengine.rtpengine_offer")
    assert offer.endswith(f"call-id={LEG} from-tag={LEG_TAG} to-tag={TARGET_TAG}")
    assert ksr.args_of("rtpengine.rtpengine_answer") == []
    assert "CSeq: 7 INVITE\r\n" in _appended(ksr, "CSeq")  # the human's own numbering back
    # the human's ACK answers it (from-tag the offerer's) and goes on in the carrier's dialog
    ksr.calls.clear()
    _request(ksr, "ACK", False, SDP)
    ksr.returns["tm.t_check_trans"] = 1
    router.ksr_bridged(MSG)
    [(answer,)] = ksr.args_of("rtpengine.rtpengine_answer")
    assert answer.endswith(f"call-id={LEG} from-tag={LEG_TAG} to-tag={TARGET_TAG}")
    assert _appended(ksr, "CSeq") == ["CSeq: 4 ACK\r\n"] and ksr.args_of("tm.t_relay") == [()]


def test_a_reinvite_with_sdp_still_answers_in_the_2xx(ksr: FakeKSR, router: Any, tables: HTables) -> None:
    _request(ksr, "INVITE", True, SDP)
    router.ksr_bridged(MSG)
    assert _state(tables).relayed == [7, 3, 0]
    ksr.pv.update({"$ci": LEG, "$rs": "200", "$rb": SDP})
    router.ksr_bridged_reply(MSG)
    [(answer,)] = ksr.args_of("rtpengine.rtpengine_answer")
    assert answer.endswith(f"call-id={LEG} from-tag={LEG_TAG} to-tag={TARGET_TAG}")
    assert len(ksr.args_of("rtpengine.rtpengine_offer")) == 1  # the re-INVITE's own offer only


def test_a_dtmf_info_from_an_info_carrier_is_played_toward_an_rfc4733_human(ksr: FakeKSR, router: Any,
                                                                            tables: HTables, store: Any) -> None:
    digits: list[tuple[str, str]] = []
    store.record_dtmf = lambda call_id, entry: digits.append((call_id, entry))
    router.worker.ngclient.replies["play DTMF"] = {"result": "ok"}
    _request(ksr, "INFO", True, **{"$cT": "application/dtmf-relay", "$rb": "Signal=5\r\nDuration=160\r\n"})
    router.ksr_bridged(MSG)
    assert router.worker.ngclient.commands == [("play DTMF", {"call_id": LEG, "from_tag": LEG_TAG, "code": "5",
                                                              "duration": 160, "volume": 8})]
    assert ksr.replies == [("tm", 200, "OK")] and ksr.args_of("tm.t_relay") == []
    assert digits == [("call-1", "caller:5:info")]


def test_a_dtmf_info_toward_an_end_that_takes_info_is_relayed_in_its_dialog(ksr: FakeKSR, router: Any,
                                                                           tables: HTables, store: Any) -> None:
    store.record_dtmf = lambda call_id, entry: True
    tables.table("xfer")["call-1"] = tables.table("xfer")[LEG] = _state(tables).moved(dtmf="info,info").encode()
    _request(ksr, "INFO", False, **{"$cT": "application/dtmf", "$rb": "#"})
    router.ksr_bridged(MSG)
    assert router.worker.ngclient.commands == [] and ksr.args_of("tm.t_relay") == [()]
    assert _appended(ksr, "Call-ID") == ["Call-ID: call-1\r\n"] and _appended(ksr, "CSeq") == ["CSeq: 4 INFO\r\n"]
    assert _appended(ksr, "Contact") == []  # INFO refreshes no target (RFC 6086 section 4.2.1)


def test_a_dtmf_info_rtpengine_cannot_play_is_relayed_and_a_bad_one_refused(ksr: FakeKSR, router: Any,
                                                                          tables: HTables, store: Any) -> None:
    store.record_dtmf = lambda call_id, entry: True
    router.worker.ngclient.replies["play DTMF"] = NgError("rtpengine refused play DTMF", "Unknown call-id")
    _request(ksr, "INFO", True, **{"$cT": "application/dtmf-relay", "$rb": "Signal=5\r\n"})
    router.ksr_bridged(MSG)
    assert ksr.args_of("tm.t_relay") == [()]
    ksr.calls.clear()
    _request(ksr, "INFO", True, **{"$cT": "application/dtmf-relay", "$rb": "Signal=X\r\n"})
    router.ksr_bridged(MSG)
    assert ksr.replies == [("tm", 400, "Bad DTMF Signal")] and ksr.args_of("tm.t_relay") == []


def test_another_request_is_refused_and_options_answered(ksr: FakeKSR, router: Any, tables: HTables) -> None:
    _request(ksr, "MESSAGE", True)
    router.ksr_bridged(MSG)
    _request(ksr, "OPTIONS", False)
    router.ksr_bridged(MSG)
    assert ksr.replies == [("tm", 501, "Not Implemented"), ("tm", 200, "OK")]


# -- digits seen in the leg's media (the DTMF log) ----------------------------------------------------

def _uac_sent(ksr: FakeKSR) -> list[tuple[Any, ...]]:
    return ksr.args_of("tm.t_uac_send")


def test_a_humans_rfc4733_digit_reaches_an_info_carrier_as_info_in_the_carriers_dialog(
        kemi: Any, ksr: FakeKSR, router: Any, tables: HTables, store: Any) -> None:
    bridgemap = importlib.import_module("routing.kamailio.bridgemap")
    digits: list[tuple[str, str]] = []
    store.record_dtmf = lambda call_id, entry: digits.append((call_id, entry))
    assert bridgemap.media_digit(router.worker, _state(tables), dtmf.LoggedDigit(LEG, TARGET_TAG, "7", 180))
    [(method, ruri, nexthop, _sock, headers, body)] = _uac_sent(ksr)
    # as the agent (the callee of call-1) to the carrier, above the edge's re-INVITE (agent_cseq 3)
    assert (method, ruri, nexthop) == ("INFO", "sip:a@192.0.2.5", "")
    assert "From: <sip:b@y>;tag=at\r\nTo: <sip:a@x>;tag=ct\r\nCall-ID: call-1\r\nCSeq: 4 INFO\r\n" in headers
    assert "Content-Type: application/dtmf-relay\r\n" in headers and body == "Signal=7\r\nDuration=180\r\n"
    assert _state(tables).agent_cseq == 4 and ("lock", "xfer", "~bridges") in tables.locks
    assert digits == [(LEG, "callee:7:rfc4733")]  # in the human's own call (the leg)


def test_a_carriers_digit_reaches_an_info_human_in_the_leg_and_is_the_original_calls(
        kemi: Any, ksr: FakeKSR, router: Any, tables: HTables, store: Any) -> None:
    bridgemap = importlib.import_module("routing.kamailio.bridgemap")
    tables.table("xfer")["call-1"] = tables.table("xfer")[LEG] = _state(tables).moved(dtmf="rfc4733,info").encode()
    digits: list[tuple[str, str]] = []
    store.record_dtmf = lambda call_id, entry: digits.append((call_id, entry))
    assert bridgemap.media_digit(router.worker, _state(tables), dtmf.LoggedDigit(LEG, LEG_TAG, "4", 0))
    [(method, ruri, _nexthop, _sock, headers, body)] = _uac_sent(ksr)
    # as the leg's caller (the edge) to the human, above the dialog's record of the caller (2)
    assert (method, ruri) == ("INFO", "sip:b@192.0.2.6")
    assert f"From: <sip:a@x>;tag={LEG_TAG}\r\nTo: <sip:b@y>;tag={TARGET_TAG}\r\nCall-ID: {LEG}\r\nCSeq: 3 INFO\r\n" in headers
    assert body == f"Signal=4\r\nDuration={router.worker.settings.dtmf_duration_ms}\r\n"
    assert _state(tables).uac_cseq == 3
    assert digits == [("call-1", "caller:4:rfc4733")]


def test_no_info_before_the_bridge_nor_for_the_edges_own_plays(kemi: Any, ksr: FakeKSR, router: Any,
                                                               tables: HTables, store: Any) -> None:
    bridgemap = importlib.import_module("routing.kamailio.bridgemap")
    digits: list[tuple[str, str]] = []
    store.record_dtmf = lambda call_id, entry: digits.append((call_id, entry))
    answering = _state(tables).moved(phase="answering")
    assert bridgemap.media_digit(router.worker, answering, dtmf.LoggedDigit(LEG, TARGET_TAG, "1", 100))
    assert bridgemap.media_digit(router.worker, _state(tables), dtmf.LoggedDigit(LEG, LEG_TAG, "2", 100))  # a play
    assert not bridgemap.media_digit(router.worker, _state(tables), dtmf.LoggedDigit("call-1", CARRIER_TAG, "3", 100))
    assert _uac_sent(ksr) == [] and digits == [(LEG, "callee:1:rfc4733")]
