"""Test instruments for DTMF over RTP: a recording media endpoint, an RFC 4733 event reader,
an in-band tone detector (Goertzel), and a pcap writer that SIPp's ``play_pcap_audio`` plays.

The SIP side of every test call is a real SIPp peer; these only stand where an RTP
endpoint records what it receives, or build the audio a peer plays.
"""

from __future__ import annotations

import math
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

DIGITS = "0123456789*#ABCD"
#: ITU-T Q.23 frequency pairs (low, high) in Hz
LOW = (697, 770, 852, 941)
HIGH = (1209, 1336, 1477, 1633)
KEYPAD = ("123A", "456B", "789C", "*0#D")
RATE = 8000
FRAME = 160  # 20 ms at 8 kHz


@dataclass
class RtpPacket:
    pt: int
    marker: bool
    seq: int
    ts: int
    payload: bytes


@dataclass
class Recorder:
    """A UDP socket on ``ip`` that keeps every RTP packet it receives (started at once, in a thread)."""

    ip: str
    packets: list[RtpPacket] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.ip, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data, _ = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            seq, ts = struct.unpack("!HI", data[2:8])
            cc = data[0] & 0x0F
            self.packets.append(RtpPacket(data[1] & 0x7F, bool(data[1] >> 7), seq, ts, data[12 + 4 * cc:]))

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()

    def events(self, pt: int) -> str:
        """Digits of the RFC 4733 events received with payload type ``pt`` (one per event, in order)."""
        out: list[str] = []
        last = None
        for p in self.packets:
            if p.pt != pt or len(p.payload) < 4:
                continue
            key = (p.ts, p.payload[0])  # all packets of one event share its timestamp (RFC 4733 section 2.5)
            if key != last:
                out.append(DIGITS[p.payload[0]] if p.payload[0] < 16 else "?")
                last = key
        return "".join(out)

    def audio(self, pt: int) -> list[float]:
        """Linear samples of the G.711 packets (PT 0 PCMU, 8 PCMA) received, in arrival order."""
        samples: list[float] = []
        for p in self.packets:
            if p.pt == pt:
                samples.extend((ulaw if pt == 0 else alaw)(b) for b in p.payload)
        return samples

    def tones(self, pt: int) -> str:
        """In-band DTMF digits heard in the G.711 audio of payload type ``pt``."""
        return detect_tones(self.audio(pt))


def ulaw(byte: int) -> float:
    """G.711 mu-law byte -> linear sample (ITU-T G.711 table 2)."""
    byte = ~byte & 0xFF
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 7, byte & 0x0F
    value = ((mantissa << 3) + 0x84) << exponent
    value -= 0x84
    return float(-value if sign else value)


def alaw(byte: int) -> float:
    """G.711 A-law byte -> linear sample."""
    byte ^= 0x55
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 7, byte & 0x0F
    value = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return float(value if sign else -value)


def ulaw_encode(sample: float) -> int:
    """Linear sample (-32768..32767) -> G.711 mu-law byte."""
    value = int(max(-32635, min(32635, sample)))
    sign = 0x80 if value < 0 else 0
    value = abs(value) + 0x84
    exponent = 7
    for exp in range(7, -1, -1):
        if value & (0x4000 >> (7 - exp)):
            exponent = exp
            break
    mantissa = (value >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _power(samples: list[float], freq: float) -> float:
    coeff = 2 * math.cos(2 * math.pi * freq / RATE)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def detect_tones(samples: list[float], window: int = 320) -> str:
    """DTMF digits in 8 kHz linear audio (Goertzel over 40 ms windows; a digit counts once per run
    of windows where one low and one high frequency stand well above the others and above silence)."""
    out: list[str] = []
    last = ""
    for start in range(0, len(samples) - window + 1, window):
        block = samples[start:start + window]
        energy = sum(x * x for x in block)
        if energy < window * 200.0 ** 2:  # quieter than about -44 dBFS: silence
            last = ""
            continue
        lows = [_power(block, f) for f in LOW]
        highs = [_power(block, f) for f in HIGH]
        lo, hi = max(range(4), key=lows.__getitem__), max(range(4), key=highs.__getitem__)
        others_lo = sorted(lows)[-2]
        others_hi = sorted(highs)[-2]
        total = lows[lo] + highs[hi]
        digit = ""
        if lows[lo] > 8 * others_lo and highs[hi] > 8 * others_hi and total > 0.5 * energy * window / 2:
            digit = KEYPAD[lo][hi]
        if digit and digit != last:
            out.append(digit)
        last = digit
    return "".join(out)


# --------------------------------------------------------------------------- pcap for SIPp


def _udp_packet(payload: bytes, src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    total = 20 + len(udp)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 17, 0,
                     socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    ether = b"\x00" * 12 + b"\x08\x00"
    return ether + ip + udp


def write_pcap(path: Path, frames: list[tuple[int, bool, int, bytes]], spacing_ms: int = 20) -> Path:
    """Write RTP packets as a pcap SIPp can play: ``frames`` = [(pt, marker, timestamp, payload)],
    sent ``spacing_ms`` apart (the pcap's own times; SIPp replays them with that pacing)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    t0 = int(time.time())
    for i, (pt, marker, ts, payload) in enumerate(frames):
        rtp = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, 1000 + i, ts, 0x12345678) + payload
        pkt = _udp_packet(rtp, ("10.0.0.1", 4000), ("10.0.0.2", 4000))
        usec = i * spacing_ms * 1000
        out.append(struct.pack("<IIII", t0 + usec // 1_000_000, usec % 1_000_000, len(pkt), len(pkt)) + pkt)
    path.write_bytes(b"".join(out))
    return path


def _silence() -> bytes:
    return bytes([0xFF]) * FRAME  # mu-law zero


def _tone_frame(digit: str, n: int) -> bytes:
    row = next(i for i, r in enumerate(KEYPAD) if digit in r)
    col = KEYPAD[row].index(digit)
    lo, hi = LOW[row], HIGH[col]
    return bytes(
        ulaw_encode(8000 * (math.sin(2 * math.pi * lo * t / RATE) + math.sin(2 * math.pi * hi * t / RATE)))
        for t in range(n * FRAME, (n + 1) * FRAME)
    )


def tone_pcap(path: Path, digits: str, lead_ms: int = 400, tone_ms: int = 200, gap_ms: int = 200) -> Path:
    """PCMU audio: silence, then each digit as an in-band tone (ITU-T Q.24 timing), then silence."""
    frames: list[tuple[int, bool, int, bytes]] = []
    ts = 0

    def add(payload: bytes) -> None:
        nonlocal ts
        frames.append((0, not frames, ts, payload))
        ts += FRAME

    for _ in range(lead_ms // 20):
        add(_silence())
    for digit in digits:
        for n in range(tone_ms // 20):
            add(_tone_frame(digit, n))
        for _ in range(gap_ms // 20):
            add(_silence())
    for _ in range(lead_ms // 20):
        add(_silence())
    return write_pcap(path, frames)


def event_pcap(path: Path, digits: str, te_pt: int = 101, lead_ms: int = 400, event_ms: int = 200,
               gap_ms: int = 200) -> Path:
    """PCMU silence with RFC 4733 events (payload type ``te_pt``) for each digit, as a phone sends them:
    audio stops during an event, the event repeats every 20 ms with a growing duration, its end
    packet is sent three times (RFC 4733 section 2.5.1)."""
    frames: list[tuple[int, bool, int, bytes]] = []
    ts = 0

    def audio() -> None:
        nonlocal ts
        frames.append((0, not frames, ts, _silence()))
        ts += FRAME

    for _ in range(lead_ms // 20):
        audio()
    for digit in digits:
        code = DIGITS.index(digit)
        start = ts
        steps = event_ms // 20
        for n in range(1, steps + 1):
            end = n == steps
            payload = struct.pack("!BBH", code, (0x80 if end else 0) | 10, n * FRAME)
            for _ in range(3 if end else 1):
                frames.append((te_pt, n == 1, start, payload))
        ts = start + steps * FRAME
        for _ in range(gap_ms // 20):
            audio()
    for _ in range(lead_ms // 20):
        audio()
    return write_pcap(path, frames)


def silence_pcap(path: Path, ms: int) -> Path:
    """PCMU silence for ``ms`` (a peer that talks while it sends INFO: rtpengine injects played digits
    into the stream the sender is sending, so that stream must exist)."""
    return tone_pcap(path, "", lead_ms=ms // 2, tone_ms=0, gap_ms=0)


def sparse_pcap(path: Path, ms: int, spacing_ms: int = 200) -> Path:
    """PCMU silence for ``ms``, one 20 ms frame every ``spacing_ms``: RTP that keeps a call's media alive
    (rtpengine's last packet, the edge's RTP timeout) at a tenth of the packets, for load tests whose
    check is whether media flows, not what it sounds like."""
    count = ms // spacing_ms
    return write_pcap(path, [(0, i == 0, i * spacing_ms * 8, _silence()) for i in range(count)], spacing_ms)
