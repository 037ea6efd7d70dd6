"""A minimal RTP endpoint for tests that need to count media packets rather than hear them.

:class:`RtpPeer` sends PCMU (payload type 0, a loud square wave) every 20 ms while ``talking``
(RFC 3550 fixed header, RFC 3551 payload type 0) and records the arrival time (``time.monotonic``,
s), payload type and source address of every packet it receives.  IPv4 or IPv6 by its address.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

__all__ = ["RtpPeer"]


class RtpPeer:
    """A UDP socket on ``ip``:``port`` (0: a free port the kernel picks, see :attr:`port`).

    Attributes:
        target: ``(ip, port)`` packets are sent to while :attr:`talking`; None sends nothing.
        received: ``(monotonic s, payload type, source ip)`` of every RTP packet received.
    """

    def __init__(self, ip: str, port: int = 0) -> None:
        self.ip = ip
        self.sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.port = int(self.sock.getsockname()[1])
        self.sock.settimeout(0.02)
        self.target: tuple[str, int] | None = None
        self.talking = False
        self.received: list[tuple[float, int, str]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seq, ts, ssrc = 0, 0, int.from_bytes(os.urandom(4), "big")
        payload = bytes([0x00] * 80 + [0x80] * 80)
        next_send = time.monotonic()
        while not self._stop:
            now = time.monotonic()
            if now >= next_send:
                next_send += 0.02
                if self.talking and self.target:
                    seq, ts = (seq + 1) & 0xFFFF, (ts + 160) & 0xFFFFFFFF
                    self.sock.sendto(struct.pack("!BBHII", 0x80, 0, seq, ts, ssrc) + payload, self.target)
            try:
                data, source = self.sock.recvfrom(2048)
            except (socket.timeout, OSError):
                continue
            if len(data) >= 12:
                self.received.append((time.monotonic(), data[1] & 0x7F, source[0]))

    def since(self, start: float) -> list[int]:
        """Payload types of the packets received since ``start`` (monotonic s)."""
        return [pt for t, pt, _ in self.received if t >= start]

    def sources_since(self, start: float) -> set[str]:
        """Source addresses of the packets received since ``start`` (monotonic s)."""
        return {src for t, _, src in self.received if t >= start}

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()

    def __enter__(self) -> "RtpPeer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
