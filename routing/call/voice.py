"""First non-silent audio of an agent on a transcoded call (pure functions).

rtpengine 10.5 reports no audio level per stream, only packet counts.  On a call whose agent's
stream it transcodes anyway (the ``transcoding`` flag of the agent's media in an ng ``query``
reply), the edge asks it for a copy of that stream (ng ``subscribe request`` / ``subscribe
answer``, rtpengine ``README.md`` "subscribe request Message"), as G.711, to a UDP socket of its
own, decodes it here and looks for the first 20 ms frame whose level reaches a threshold; then it
unsubscribes (ng ``unsubscribe``).  :mod:`routing.kamailio.firstvoice` does the I/O.

* :func:`transcoded`: whether rtpengine transcodes the agent's stream (the only calls watched).
* :func:`answer_sdp`: the SDP the edge answers rtpengine's subscription offer with (RFC 3264).
* :func:`rtp_payload`: payload type and payload of an RTP packet (RFC 3550 section 5.1), None
  for RTCP (RFC 5761 section 4) or anything else.
* :func:`first_voiced_ms`: where in a G.711 payload the first frame at or above the threshold
  starts (ms), or None (ITU-T G.711 decoding).
"""

from __future__ import annotations

import math
import re
import struct
from typing import Any

from routing.errors import EdgeError

__all__ = ["VoiceError", "WATCH_TAG_PREFIX", "PCMU", "PCMA", "FRAME_MS", "transcoded", "answer_sdp",
           "rtp_payload", "first_voiced_ms", "level_dbov", "ulaw_sample", "alaw_sample"]

#: the to-tag of the edge's subscriptions starts with this; a query reply's tag that does is not a
#: side of the call (:func:`routing.call.quality.summary` skips it)
WATCH_TAG_PREFIX = "edge-voice-"
#: RTP payload types of G.711 (RFC 3551 section 6)
PCMU, PCMA = 0, 8
#: the frame the level is measured over (ms) and the samples per ms of G.711 (8 kHz)
FRAME_MS = 20
SAMPLES_PER_MS = 8
#: 0 dBov: the level of a full-scale square wave of 16-bit linear audio (ITU-T G.100.1 takes a
#: full-scale sine as 0 dBov, 3 dB lower: a threshold of -40 here is -37 there)
FULL_SCALE = 32768


class VoiceError(EdgeError, ValueError):
    """rtpengine's subscription offer has no G.711 stream the edge can decode."""


def ulaw_sample(code: int) -> int:
    """The 16-bit linear value of one mu-law byte (ITU-T G.711 table 2a, the usual 14-bit
    expansion scaled by 4: 0xFF and 0x7F are 0, 0x80 is +32124)."""
    code = ~code & 0xFF
    magnitude = ((code & 0x0F) << 3 | 0x84) << ((code & 0x70) >> 4)
    return (0x84 - magnitude) if code & 0x80 else (magnitude - 0x84)


def alaw_sample(code: int) -> int:
    """The 16-bit linear value of one A-law byte (ITU-T G.711 table 1a, scaled to 16 bits:
    0xD5 is +8, 0x55 is -8)."""
    code ^= 0x55
    exponent = (code & 0x70) >> 4
    value = (code & 0x0F) << 4
    value = value + 8 if exponent == 0 else (value + 0x108) << (exponent - 1)
    return value if code & 0x80 else -value


#: squared linear value of each code byte, per payload type: a frame's energy is a sum of lookups
_SQUARES = {PCMU: tuple(ulaw_sample(b) ** 2 for b in range(256)),
            PCMA: tuple(alaw_sample(b) ** 2 for b in range(256))}


def transcoded(reply: dict[str, Any], agent_tag: str) -> bool:
    """Whether rtpengine transcodes what it receives from the agent: an audio media of the agent's
    tag in an ng ``query`` reply carries the flag ``transcoding`` (rtpengine 10.5
    ``daemon/codec.c`` ``codec_handlers_update`` sets it on the receiving media when a codec
    handler transcodes toward the other side)."""
    party = (reply.get("tags") or {}).get(agent_tag) or {}
    return any(media.get("type", "audio") == "audio" and "transcoding" in (media.get("flags") or [])
               for media in party.get("medias") or [])


def answer_sdp(offer: str, address: str, port: int, session: int) -> str:
    """The SDP answer to rtpengine's subscription offer (``sendonly``, RFC 3264 section 6): one
    audio stream to ``address``:``port``, receive only, with the first G.711 payload type the
    offer lists (rtpengine adds PCMU when asked to transcode to it, so with the edge's request
    one is always there) and RTCP on the same port (RFC 5761; dropped by :func:`rtp_payload`).

    Args:
        offer: the ``sdp`` of the ``subscribe request`` reply.
        address: the edge's IPv4 or IPv6 address rtpengine sends the copy to.
        port: its UDP port.
        session: the ``o=`` session id (any number).

    Raises:
        VoiceError: the offer's first audio stream has neither PCMU (0) nor PCMA (8).
    """
    match = re.search(r"^m=audio \d+ \S+((?: \d+)+)", offer, re.M)
    types = [int(pt) for pt in match.group(1).split()] if match else []
    chosen = next((pt for pt in types if pt in (PCMU, PCMA)), None)
    if chosen is None:
        raise VoiceError(f"the subscription offer has no PCMU or PCMA (payload types {types})")
    family = "IP6" if ":" in address else "IP4"
    name = "PCMU" if chosen == PCMU else "PCMA"
    return (f"v=0\r\no=- {session} 1 IN {family} {address}\r\ns=-\r\nc=IN {family} {address}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP {chosen}\r\na=rtpmap:{chosen} {name}/8000\r\na=rtcp-mux\r\na=recvonly\r\n")


def rtp_payload(packet: bytes) -> tuple[int, bytes] | None:
    """``(payload type, payload)`` of an RTP packet (RFC 3550 section 5.1: version 2, CSRCs,
    header extension and padding skipped); None for RTCP (second byte 200-204, RFC 5761 section 4),
    another version or a truncated packet."""
    if len(packet) < 12 or packet[0] >> 6 != 2 or 200 <= packet[1] <= 204:
        return None
    start = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:  # header extension: 4 bytes, then its length in 32-bit words
        if len(packet) < start + 4:
            return None
        start += 4 + 4 * struct.unpack_from("!H", packet, start + 2)[0]
    end = len(packet) - (packet[-1] if packet[0] & 0x20 else 0)
    if end < start:
        return None
    return packet[1] & 0x7F, packet[start:end]


def level_dbov(energy: int, samples: int) -> float:
    """The level of ``samples`` 16-bit samples whose squares sum to ``energy`` (dBov, see
    :data:`FULL_SCALE`); ``-inf`` for digital silence."""
    if energy <= 0 or samples <= 0:
        return -math.inf
    return 10 * math.log10(energy / samples / FULL_SCALE ** 2)


def first_voiced_ms(payload_type: int, payload: bytes, threshold_dbov: float) -> int | None:
    """Where the first 20 ms frame of a G.711 payload whose level is at least ``threshold_dbov``
    starts, in ms from the payload's start (a trailing partial frame counts as a frame); None
    when every frame is quieter, or the payload type is not PCMU/PCMA (nothing decoded).

    A decoded mu-law or A-law frame of digital silence (0xFF, 0xD5...) is at most -72 dBov; speech
    is -15 to -35 dBov and comfort noise typically -50 to -70 (RFC 3389 section 3.1)."""
    squares = _SQUARES.get(payload_type)
    if squares is None:
        return None
    size = FRAME_MS * SAMPLES_PER_MS
    for start in range(0, len(payload), size):
        frame = payload[start:start + size]
        if level_dbov(sum(map(squares.__getitem__, frame)), len(frame)) >= threshold_dbov:
            return start // SAMPLES_PER_MS
    return None
