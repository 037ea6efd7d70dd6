"""routing.kamailio.holdanswer: the held 200's htable value and the 180 made of it (the real
stack: tests/integration/test_hold_answer.py)."""

from __future__ import annotations

import pytest

OK = ("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\n"
      "To: <sip:b@y>;tag=agent7\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:bot@10.0.0.5>\r\n"
      "Content-Type: application/sdp\r\nContent-Length: 12\r\n\r\nv=0\r\nm=x|y\r\n")


@pytest.fixture
def hold(kemi):  # the fake KSR installed (tests/unit/kamailio/conftest.py)
    from routing.kamailio import holdanswer

    return holdanswer


def test_a_held_answer_round_trips_through_its_htable_value_body_and_all(hold) -> None:
    entry = hold.Held(False, 1000, 6000, "agent7", "sip:192.0.2.1:5060;transport=udp", "codec-strip=all", OK)
    back = hold.Held.decode(entry.encode())
    assert back == entry and back.message.endswith("m=x|y\r\n")
    assert hold.Held.decode("P|{}") is None and hold.Held.decode("H|x|1|t|d|f|m") is None


def test_the_ringing_made_of_a_2xx_keeps_its_dialog_and_drops_its_body(hold) -> None:
    text = hold.ringing(OK)
    lines = text.split("\r\n")
    assert lines[0] == "SIP/2.0 180 Ringing"
    assert "To: <sip:b@y>;tag=agent7" in lines and "Contact: <sip:bot@10.0.0.5>" in lines
    assert "Content-Type: application/sdp" not in lines and "Content-Length: 0" in lines
    assert text.endswith("\r\n\r\n") and "v=0" not in text
