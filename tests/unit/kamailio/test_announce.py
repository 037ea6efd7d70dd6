"""routing.kamailio.announce: the announcement callee's SDP answer and the htable value the
native route ANNOUNCE_TICK reads (the real stack: tests/integration/test_announcement.py)."""

from __future__ import annotations

import pytest

from routing.call.decision import Reason, Reject


@pytest.fixture
def announce(kemi):  # the fake KSR installed (tests/unit/kamailio/conftest.py)
    from routing.kamailio import announce as module

    return module


OFFER = ("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
         "m=audio 30000 RTP/AVP 111 0 101\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n"
         "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")


def test_the_silent_answer_takes_the_first_offered_codec_to_the_discard_port(announce) -> None:
    answer = announce.silent_answer(OFFER)
    lines = answer.split("\r\n")
    assert "m=audio 9 RTP/AVP 111" in lines and "c=IN IP4 127.0.0.1" in lines
    assert "a=rtpmap:111 opus/48000/2" in lines and "a=fmtp:111 useinbandfec=1" in lines
    assert not any(line.startswith("a=rtpmap:0 ") or line.startswith("a=rtpmap:101 ") for line in lines)


def test_an_offer_without_audio_has_no_silent_answer(announce) -> None:
    with pytest.raises(ValueError, match="m=audio"):
        announce.silent_answer("v=0\r\nm=video 30000 RTP/AVP 96\r\n")


def test_the_resume_note_splits_into_the_fields_the_native_route_selects(announce) -> None:
    reject = Reject.of(Reason.AGENT_DOWN, 7)
    fields = announce.encode(1_796_667_635_787, "53217", "333288483", reject).split("|")
    assert fields == ["1796667635", "787000", "53217", "333288483", "503", "7", "All Agent URIs Down"]
    piped = announce.encode(1000, "1", "2", Reject(480, "Busy | Away", "x")).split("|")
    assert piped[4:] == ["480", "", "Busy / Away"]  # a reason never adds a field
