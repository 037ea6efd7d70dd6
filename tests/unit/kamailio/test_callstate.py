"""Value codecs of the per-call state in Kamailio's htables (routing.kamailio.callstate)."""

from __future__ import annotations

import json

import pytest

from routing.kamailio.callstate import (CLEANUP, CallRecordState, Deadline, DtmfCall, MediaWatch,
                                        template_names)


# -- deadline (the call clock) ------------------------------------------------------------------------


def test_deadline_of_the_native_route_round_trips_byte_identical() -> None:
    # templates/kamailio.routes.j2 route CALL_STARTED: $Ts + limit ":" h_entry ":" h_id ":" $ft ":" $tt
    text = "1700003600:1234:5678:caller-tag:callee-tag"
    clock = Deadline.decode(text)
    assert clock == Deadline(1700003600, "1234", "5678", "caller-tag", "callee-tag")
    assert not clock.cleanup
    assert clock.encode() == text


def test_deadline_cleanup_form() -> None:
    clock = Deadline.cleanup_at(1700000003, "ft1")
    assert clock.encode() == f"1700000003:{CLEANUP}::ft1"
    back = Deadline.decode(clock.encode())
    assert back == clock and back.cleanup


def test_deadline_with_missing_fields_decodes_them_empty() -> None:
    assert Deadline.decode("1700000000:1:2:ft1") == Deadline(1700000000, "1", "2", "ft1", "")


@pytest.mark.parametrize("text", ["", "1700000000", "soon:1:2:a:b", "-5:1:2:a:b"])
def test_deadline_that_is_not_one_decodes_to_none(text: str) -> None:
    assert Deadline.decode(text) is None


# -- media watchdog -------------------------------------------------------------------------------------


def test_media_watch_of_the_native_route_round_trips_byte_identical() -> None:
    # route CALL_STARTED: $Ts + check_interval ":" rtp_timeout ":" $Ts ":" $ft
    text = "1700000005:30:1700000000:caller-tag"
    watch = MediaWatch.decode(text)
    assert watch == MediaWatch(1700000005, 30, 1700000000, "caller-tag")
    assert watch.encode() == text
    assert watch.again(1700000010).encode() == "1700000010:30:1700000000:caller-tag"


@pytest.mark.parametrize("text", ["", "1:2:3", "1::3:tag", "x:30:1:tag"])
def test_media_watch_that_is_not_one_decodes_to_none(text: str) -> None:
    assert MediaWatch.decode(text) is None


def test_dtmf_call_splits_the_tag_from_the_modes() -> None:
    assert DtmfCall.decode("ft1,rfc2833,info") == DtmfCall("ft1", "rfc2833,info")
    assert DtmfCall.decode("") == DtmfCall("", "")


# -- call-record state (cdr htable) -----------------------------------------------------------------------


def test_call_record_state_encodes_compact_json_in_the_relays_key_order() -> None:
    state = CallRecordState(cseq="7", start_ms=1700000000123, codecs_caller=["PCMU"], direction="origination",
                            agent="bot", number="+14155550100", caller="+12125550123", trunk="telnyx", rate="",
                            billing="1/1")
    text = state.encode()
    assert text == ('{"cseq":"7","start":1700000000123,"cc":["PCMU"],"dir":"origination","agent":"bot",'
                    '"number":"+14155550100","caller":"+12125550123","trunk":"telnyx","rate":"","billing":"1/1"}')
    assert CallRecordState.decode(text) == state


def test_call_record_state_answer_and_refusal_keys() -> None:
    state = CallRecordState(start_ms=1, tried=["bot sip:a=200"], answer_ms=2, codecs_callee=[],
                            media_refused=[488, "Not Acceptable Here", "srtp_required"])
    data = json.loads(state.encode())
    assert data == {"start": 1, "tried": ["bot sip:a=200"], "answer": 2, "ce": [],
                    "media_refused": [488, "Not Acceptable Here", "srtp_required"]}
    assert CallRecordState.decode(state.encode()) == state


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", "{}"])
def test_call_record_state_absent_or_malformed_decodes_to_none(text: str) -> None:
    assert CallRecordState.decode(text) is None


def test_unknown_keys_of_a_call_record_state_are_ignored() -> None:
    assert CallRecordState.decode('{"start":5,"later":true}') == CallRecordState(start_ms=5)


def test_codecs_are_not_template_names() -> None:
    names = template_names()
    assert "DEADLINE_TABLE" in names and "CLEANUP" in names
    assert not any(key.startswith("_") for key in names)


def test_native_answer_reads_what_the_native_route_writes() -> None:
    from routing.kamailio.callstate import NativeAnswer

    text = "1796679209|122500|200|bot sip:192.0.2.21:5090|v=0\r\no=- 1 1 IN IP4 192.0.2.21\r\na=x|y\r\n"
    answer = NativeAnswer.decode(text)
    assert answer == NativeAnswer(1796679209122, 200, "bot sip:192.0.2.21:5090",
                                  "v=0\r\no=- 1 1 IN IP4 192.0.2.21\r\na=x|y\r\n")  # a "|" in the SDP stays
    assert NativeAnswer.decode(answer.encode()) == answer
    for bad in ("", "1|2|3", "x|0|200|l|sdp", "1|0|ok|l|sdp"):
        assert NativeAnswer.decode(bad) is None


def test_ended_call_reads_what_the_native_dialog_end_writes() -> None:
    from routing.kamailio.callstate import EndedCall
    # "$TV(s)|$TV(u)|{hangup}|$dlg(from_tag)" as event_route[dialog:end] concatenates it
    ended = EndedCall.decode("1796679209|122503|callee|as5f3a-1")
    assert ended == EndedCall(1796679209122, "callee", "as5f3a-1")
    assert EndedCall.decode(ended.encode()) == ended
    for bad in ("", "1796679209|x|caller|t", "1796679209|1|nobody|t", "1796679209|1|caller"):
        assert EndedCall.decode(bad) is None
