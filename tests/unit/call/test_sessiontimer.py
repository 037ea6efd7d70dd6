"""Session timers on the agent's behalf (routing.call.sessiontimer, RFC 4028)."""

from __future__ import annotations

import pytest

from routing.call import sessiontimer as st


@pytest.mark.parametrize(("value", "parsed"), [
    ("1800", (1800, "")), ("90;refresher=uac", (90, "uac")), (" 600 ; Refresher=UAS ", (600, "uas")),
    ("", None), ("soon", None),
])
def test_parse_session_expires(value: str, parsed: tuple | None) -> None:
    assert st.parse_session_expires(value) == parsed


def test_supported_timer() -> None:
    assert st.supports_timer("100rel, timer") and st.supports_timer("TIMER")
    assert not st.supports_timer("100rel") and not st.supports_timer("")


@pytest.mark.parametrize(("direction", "request_se", "supported", "reply_se", "expected"), [
    # origination: the carrier offers timers, the agent answers without: the carrier refreshes
    ("origination", "1800", "timer", "", st.Takeover(1800, "uac")),
    ("origination", "30", "timer", "", st.Takeover(90, "uac")),  # never under RFC 4028's minimum
    ("origination", "1800", "timer", "1800;refresher=uas", None),  # the agent does timers itself
    ("origination", "1800", "100rel", "", None),  # the carrier cannot be made the refresher
    ("origination", "", "timer", "", None),
    # termination: the carrier answers refresher=uas to an agent that did not offer timers
    ("termination", "", "100rel", "900;refresher=uas", st.Takeover(900, "uas")),
    ("termination", "", "timer", "900;refresher=uas", None),  # the agent supports them
    ("termination", "", "", "900;refresher=uac", None),
])
def test_takeover(direction: str, request_se: str, supported: str, reply_se: str, expected: st.Takeover | None) -> None:
    assert st.takeover(direction, request_se, supported, reply_se) == expected


def test_takeover_codec_and_header() -> None:
    t = st.Takeover(90, "uac")
    assert st.Takeover.decode(t.encode()) == t and t.header() == "90;refresher=uac"
    # an answer to the carrier's refresh names the refresh's sender, on a termination call too
    assert st.Takeover(90, "uas").refresh_header() == "90;refresher=uac" and st.Takeover(90, "uas").header() == "90;refresher=uas"
    assert st.Takeover.decode("") is None and st.Takeover.decode("90:both") is None


@pytest.mark.parametrize(("interval", "after"), [(90, 60), (1800, 1768), (120, 88)])
def test_the_call_ends_before_the_expiry_as_rfc_4028_section_10_says(interval: int, after: int) -> None:
    assert st.end_after_s(interval) == after


def test_a_pure_refresh_repeats_the_origin_line_and_a_change_bumps_its_version() -> None:
    from routing.call.sessiontimer import origin, unchanged

    sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    assert origin(sdp) == "o=- 1 1 IN IP4 192.0.2.10"
    assert unchanged(origin(sdp), sdp)
    assert not unchanged(origin(sdp), sdp.replace("o=- 1 1 ", "o=- 1 2 "))  # RFC 3264 section 8: changed
    assert not unchanged("", sdp) and origin("v=0\r\n") == ""


def test_the_body_of_a_message_as_sent() -> None:
    sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\n"
    assert st.sent_body(f"INVITE sip:a@b SIP/2.0\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}") == sdp
    assert st.sent_body("INVITE sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n") == ""
    assert st.sent_body("truncated") == "" and st.sent_body("") == ""
