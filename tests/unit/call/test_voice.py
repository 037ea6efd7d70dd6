"""First non-silent audio: G.711 decoding, RTP parsing, the level of a frame, the SDP answer to
rtpengine's subscription offer, the transcoding flag (routing.call.voice)."""

from __future__ import annotations

import math
import struct

import pytest

from routing.call import voice
from routing.call.quality import summary


def _ulaw(x: float) -> int:
    """mu-law byte of a linear value in [-1, 1] (ITU-T G.711 segments, the inverse of ulaw_sample)."""
    sample = max(-32635, min(32635, int(x * 32767)))
    sign = 0x80 if sample < 0 else 0
    sample = abs(sample) + 0x84
    exponent = max(0, sample.bit_length() - 8)
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def tone(hz: float, ms: int, level: float = 0.5) -> bytes:
    return bytes(_ulaw(level * math.sin(2 * math.pi * hz * n / 8000)) for n in range(8 * ms))


def rtp(payload: bytes, pt: int = 0, csrcs: int = 0, extension: bytes = b"", padding: int = 0,
        marker: bool = False) -> bytes:
    first = 0x80 | csrcs | (0x10 if extension else 0) | (0x20 if padding else 0)
    head = struct.pack("!BBHII", first, (0x80 if marker else 0) | pt, 1, 160, 0x1234) + b"\0\0\0\1" * csrcs
    if extension:
        head += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    return head + payload + (b"\0" * (padding - 1) + bytes([padding]) if padding else b"")


def test_g711_decoding_matches_the_standard_tables() -> None:
    assert [voice.ulaw_sample(b) for b in (0xFF, 0x7F, 0x80, 0x00, 0xEF)] == [0, 0, 32124, -32124, 132]
    assert [voice.alaw_sample(b) for b in (0xD5, 0x55, 0xAA, 0x2A)] == [8, -8, 32256, -32256]
    assert all(voice.ulaw_sample(_ulaw(x / 10)) * (1 if x >= 0 else -1) >= 0 for x in range(-10, 11))


def test_rtp_payload_skips_csrcs_extension_and_padding_and_refuses_rtcp() -> None:
    body = b"\x11" * 160
    assert voice.rtp_payload(rtp(body)) == (0, body)
    assert voice.rtp_payload(rtp(body, pt=8, csrcs=2, extension=b"\1\2\3\4", padding=4, marker=True)) == (8, body)
    rtcp_rr = struct.pack("!BBHI", 0x80, 201, 1, 0x1234)
    assert voice.rtp_payload(rtcp_rr + b"\0" * 8) is None
    assert voice.rtp_payload(b"\x80\x00\x00") is None  # truncated
    assert voice.rtp_payload(b"\x40" + b"\0" * 20) is None  # version 1


def test_a_tone_after_silence_is_found_at_its_frame_and_silence_never() -> None:
    silence = b"\xff" * 160
    assert voice.first_voiced_ms(voice.PCMU, silence * 3, -40) is None
    assert voice.first_voiced_ms(voice.PCMU, silence * 2 + tone(1000, 20), -40) == 40
    assert voice.first_voiced_ms(voice.PCMU, tone(1000, 20), -40) == 0
    assert voice.first_voiced_ms(voice.PCMA, b"\xd5" * 160, -70) is None  # A-law's quietest code
    assert voice.first_voiced_ms(9, tone(1000, 20), -40) is None  # G.722 is not decoded here


def test_the_threshold_separates_quiet_noise_from_speech_levels() -> None:
    quiet = tone(1000, 20, level=0.003)  # about -54 dBov: comfort-noise level
    loud = tone(1000, 20, level=0.1)  # about -23 dBov: speech
    assert voice.first_voiced_ms(voice.PCMU, quiet, -40) is None
    assert voice.first_voiced_ms(voice.PCMU, loud, -40) == 0
    assert voice.level_dbov(0, 160) == -math.inf
    assert voice.level_dbov(160 * 32768 ** 2, 160) == pytest.approx(0.0)


OFFER = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         "m=audio 30000 RTP/AVP 9 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n")


def test_the_answer_takes_the_offers_first_g711_type_to_the_edges_socket() -> None:
    answer = voice.answer_sdp(OFFER, "127.0.0.5", 40000, 7)
    assert "c=IN IP4 127.0.0.5\r\n" in answer and "m=audio 40000 RTP/AVP 8\r\n" in answer
    assert "a=rtpmap:8 PCMA/8000" in answer and "a=recvonly" in answer and "a=rtcp-mux" in answer
    assert "c=IN IP6 ::1\r\n" in voice.answer_sdp(OFFER, "::1", 40000, 7)
    with pytest.raises(voice.VoiceError, match="no PCMU or PCMA"):
        voice.answer_sdp(OFFER.replace(" 8 0 101", " 101"), "127.0.0.5", 40000, 7)


def test_transcoded_reads_the_flag_of_the_agents_media_only() -> None:
    reply = {"tags": {"agent": {"medias": [{"type": "audio", "flags": ["initialized", "transcoding"]}]},
                      "carrier": {"medias": [{"type": "audio", "flags": ["initialized"]}]}}}
    assert voice.transcoded(reply, "agent")
    assert not voice.transcoded(reply, "carrier")
    assert not voice.transcoded(reply, "nobody")


def test_the_call_quality_ignores_the_edges_own_subscription() -> None:
    """A subscription's tag in a query reply is no side of the call: the callee's stream is the agent's."""
    streams = lambda packets: {"medias": [{"type": "audio", "streams": [  # noqa: E731
        {"flags": ["RTP"], "stats": {"packets": packets, "bytes": packets * 172}}]}]}
    reply = {"tags": {"ft": streams(10), voice.WATCH_TAG_PREFIX + "abc": streams(0), "tt": streams(75)}}
    out = summary(reply, "ft", 1000.0)
    assert out["media_caller_packets"] == "10" and out["media_callee_packets"] == "75"
