"""An RTP endpoint that talks a sine tone and hears by FFT, for tests that claim audio both ways.

:class:`ToneRtp` binds one UDP socket (it sends from the port it receives on, so rtpengine's
symmetric RTP finds it), sends PCMU (payload type 0, RFC 3551) of a ``hz`` sine every 20 ms to
:attr:`target` while it is set, and keeps the payload of every PCMU packet it receives with its
arrival time; :meth:`heard_hz` is the strongest frequency of what it heard recently (numpy FFT,
Hann window), :meth:`packets_since` how many packets came; :meth:`press` sends a digit as RFC
4733 events in place of the tone, as a phone does.
"""

from __future__ import annotations

import math
import os
import socket
import struct
import threading
import time

import numpy as np

from tests.dtmfmedia import DIGITS, detect_tones, ulaw, ulaw_encode

__all__ = ["ToneRtp"]

RATE = 8000  #: G.711 samples per second
FRAME = 160  #: samples per 20 ms packet


class ToneRtp:
    """A talking, listening RTP endpoint on ``ip`` (a free port: :attr:`port`).

    Args:
        ip: loopback address to bind.
        hz: frequency of the tone it sends (Hz), at about -6 dBFS.

    Attributes:
        target: ``(ip, port)`` it sends to; None sends nothing.
        heard: ``(monotonic s, PCMU payload)`` of every packet received.
        others: ``(payload type, timestamp, payload)`` of every other RTP packet received (RFC 4733 events).
    """

    def __init__(self, ip: str, hz: float) -> None:
        self.ip, self.hz = ip, hz
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.port = int(self.sock.getsockname()[1])
        self.sock.settimeout(0.005)
        self.target: tuple[str, int] | None = None
        self.heard: list[tuple[float, bytes]] = []
        self.others: list[tuple[int, int, bytes]] = []
        self._presses: list[tuple[int, int, int]] = []  # (payload type, event code, 20 ms packets)
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _frame(self, n: int) -> bytes:
        step = 2 * math.pi * self.hz / RATE
        return bytes(ulaw_encode(16000 * math.sin(step * (n * FRAME + i))) for i in range(FRAME))

    def _run(self) -> None:
        seq, ts, ssrc, n = 0, 0, int.from_bytes(os.urandom(4), "big"), 0
        next_send = time.monotonic()
        while not self._stop:
            now = time.monotonic()
            if now >= next_send:
                next_send += 0.02
                target = self.target
                with self._lock:
                    press = self._presses.pop(0) if self._presses and target is not None else None
                if press is not None:
                    seq, ts = self._event(press, seq, ts, ssrc, target)
                    next_send = time.monotonic() + 0.02
                elif target is not None:
                    seq, ts, n = (seq + 1) & 0xFFFF, (ts + FRAME) & 0xFFFFFFFF, n + 1
                    self.sock.sendto(struct.pack("!BBHII", 0x80, 0, seq, ts, ssrc) + self._frame(n), target)
            try:
                data, _ = self.sock.recvfrom(2048)
            except (socket.timeout, OSError):
                continue
            if len(data) > 12 and data[1] & 0x7F == 0:
                with self._lock:
                    self.heard.append((time.monotonic(), data[12 + 4 * (data[0] & 0x0F):]))
            elif len(data) > 12:
                with self._lock:
                    self.others.append((data[1] & 0x7F, struct.unpack("!I", data[4:8])[0], data[12 + 4 * (data[0] & 0x0F):]))

    def _event(self, press: tuple[int, int, int], seq: int, ts: int, ssrc: int, target: tuple[str, int]) -> tuple[int, int]:
        """Send one RFC 4733 event (section 2.5): a packet every 20 ms sharing the event's timestamp,
        the first with the marker bit, the duration growing, the end packet three times; the audio
        resumes after it.  Returns (last sequence number, timestamp after the event)."""
        pt, code, steps = press
        start = (ts + FRAME) & 0xFFFFFFFF
        for step in range(1, steps + 1):
            end = step == steps
            payload = struct.pack("!BBH", code, (0x80 if end else 0) | 10, step * FRAME)
            for _ in range(3 if end else 1):
                seq = (seq + 1) & 0xFFFF
                marker = 0x80 if step == 1 else 0
                self.sock.sendto(struct.pack("!BBHII", 0x80, marker | pt, seq, start, ssrc) + payload, target)
            if not end:
                time.sleep(0.02)
        return seq, (start + (steps - 1) * FRAME) & 0xFFFFFFFF

    def press(self, digit: str, pt: int, ms: int = 200) -> None:
        """Send ``digit`` as an RFC 4733 event of payload type ``pt`` lasting ``ms`` (in 20 ms steps)
        at the next packet, in place of the tone (it needs :attr:`target` set)."""
        with self._lock:
            self._presses.append((pt, DIGITS.index(digit), max(1, ms // 20)))

    def packets_since(self, start: float) -> int:
        """PCMU packets received since ``start`` (monotonic s)."""
        with self._lock:
            return sum(1 for t, _ in self.heard if t >= start)

    def heard_hz(self, since: float, min_s: float = 0.5) -> float | None:
        """The strongest frequency (Hz) of the audio received since ``since`` (monotonic s); None
        until at least ``min_s`` of it (``min_s * 50`` packets) came."""
        with self._lock:
            payloads = [p for t, p in self.heard if t >= since]
        if len(payloads) < int(min_s * 50):
            return None
        samples = np.array([ulaw(b) for p in payloads for b in p], dtype=float)
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
        freqs = np.fft.rfftfreq(len(samples), 1.0 / RATE)
        return float(freqs[int(np.argmax(spectrum[1:])) + 1])

    def events(self, pt: int) -> str:
        """Digits of the RFC 4733 events received with payload type ``pt``, one per event (its
        packets share a timestamp, RFC 4733 section 2.5), in order."""
        with self._lock:
            packets = [(ts, payload) for kind, ts, payload in self.others if kind == pt and len(payload) >= 4]
        out, last = [], None
        for ts, payload in packets:
            if (ts, payload[0]) != last:
                out.append("0123456789*#ABCD"[payload[0]] if payload[0] < 16 else "?")
                last = (ts, payload[0])
        return "".join(out)

    def tones(self) -> str:
        """In-band DTMF digits (ITU-T Q.23) in all the audio received (:func:`tests.dtmfmedia.detect_tones`)."""
        with self._lock:
            payloads = [p for _, p in self.heard]
        return detect_tones([ulaw(b) for p in payloads for b in p])

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()

    def __enter__(self) -> "ToneRtp":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
