"""Minimal SIP OPTIONS and rtpengine ng ``ping`` probes (readiness and health checks).

A probe sends one request and waits for its answer; it is used by
``edgectl up``/``status`` to tell when the edge answers SIP, not on the call path.
"""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass

__all__ = ["ProbeResult", "sip_options", "rtpengine_ping"]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Outcome of one probe.

    Attributes:
        code: SIP status code (0 when no answer).
        reason: reason phrase, or the error when no answer came.
        rtt_ms: round-trip time in milliseconds (None when no answer).
    """

    code: int
    reason: str
    rtt_ms: float | None


def sip_options(host: str, port: int, timeout_s: float = 1.0, source: str | None = None) -> ProbeResult:
    """Send one SIP OPTIONS over UDP (RFC 3261 section 11) and return the final answer.

    Provisional (1xx) answers are skipped.  Never raises on network errors:
    they come back as ``code=0`` with the error text as ``reason``.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((source or ("::" if family == socket.AF_INET6 else "0.0.0.0"), 0))
        local_host, local_port = sock.getsockname()[:2]
        if local_host in ("0.0.0.0", "::"):
            local_host = "127.0.0.1" if family == socket.AF_INET else "::1"
        branch = "z9hG4bK" + secrets.token_hex(8)
        call_id = secrets.token_hex(12) + "@edgectl"
        target = f"[{host}]" if family == socket.AF_INET6 else host
        via_host = f"[{local_host}]" if family == socket.AF_INET6 else local_host
        request = (
            f"OPTIONS sip:{target}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {via_host}:{local_port};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:edgectl@{via_host}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:{target}:{port}>\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: 1 OPTIONS\r\n"
            f"User-Agent: edgectl\r\n"
            f"Content-Length: 0\r\n\r\n"
        ).encode()
        sock.settimeout(timeout_s)
        start = time.monotonic()
        try:
            sock.sendto(request, (host, port))
            while True:
                remaining = timeout_s - (time.monotonic() - start)
                if remaining <= 0:
                    return ProbeResult(0, "timeout", None)
                sock.settimeout(remaining)
                data, _ = sock.recvfrom(65535)
                line = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
                parts = line.split(" ", 2)
                if len(parts) < 2 or not parts[0].startswith("SIP/2.0") or call_id.encode() not in data:
                    continue
                code = int(parts[1])
                if code >= 200:
                    rtt = (time.monotonic() - start) * 1000
                    return ProbeResult(code, parts[2] if len(parts) > 2 else "", rtt)
        except socket.timeout:
            return ProbeResult(0, "timeout", None)
        except OSError as exc:
            return ProbeResult(0, exc.strerror or str(exc), None)


def rtpengine_ping(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Send the ng-protocol ``ping`` command (bencoded) and expect ``pong``.

    Source: rtpengine docs/ng_control_protocol.md ("ping" command).
    """
    cookie = secrets.token_hex(4)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.sendto(f"{cookie} d7:command4:pinge".encode(), (host, port))
            data, _ = sock.recvfrom(4096)
        except OSError:
            return False
    return data.startswith(cookie.encode()) and b"pong" in data
