"""Minimal SIP OPTIONS and rtpengine ng ``ping`` probes (readiness and health checks).

A probe sends one request and waits for its answer; it is used by
``edgectl up``/``status`` to tell when the edge answers SIP, by ``edgectl trunk
probe`` and by the gateway prober (``routing/monitor/prober.py``), never on the call path.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import ssl
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


def _request(target: str, port: int, transport: str, via_host: str, local_port: int, call_id: str) -> bytes:
    branch = "z9hG4bK" + secrets.token_hex(8)
    scheme = "sips" if transport == "tls" else "sip"
    param = "" if transport == "udp" else f";transport={transport}"
    return (
        f"OPTIONS {scheme}:{target}:{port}{param} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport.upper()} {via_host}:{local_port};branch={branch};rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:edgectl@{via_host}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <{scheme}:{target}:{port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 OPTIONS\r\n"
        f"User-Agent: byoc-edge\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def _status(data: bytes, call_id: str) -> tuple[int, str] | None:
    """(code, reason) of a final response to our request in ``data``, else None."""
    line = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("SIP/2.0") or call_id.encode() not in data:
        return None
    try:
        code = int(parts[1])
    except ValueError:
        return None
    return (code, parts[2] if len(parts) > 2 else "") if code >= 200 else None


def sip_options(host: str, port: int, timeout_s: float = 1.0, source: str | None = None,
                transport: str = "udp", tls_context: ssl.SSLContext | None = None) -> ProbeResult:
    """Send one SIP OPTIONS (RFC 3261 section 11) and return the final answer.

    Args:
        host: IPv4/IPv6 address or DNS name of the peer.
        port: its SIP port.
        timeout_s: how long to wait for a final answer (s), connection set-up included.
        source: local address to send from (the edge's SIP address, so carriers
            that allow-list the edge accept the probe); None = any.
        transport: ``udp``, ``tcp`` or ``tls`` (RFC 3261 section 18; sips for tls).
        tls_context: client context for ``tls`` (default: system CAs, hostname checked).

    Provisional (1xx) answers are skipped.  Never raises on network errors:
    they come back as ``code=0`` with the error text as ``reason``.
    """
    if transport not in ("udp", "tcp", "tls"):
        raise ValueError(f"transport must be udp, tcp or tls, got {transport!r}")
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    host = host.strip("[]")
    call_id = secrets.token_hex(12) + "@byoc-edge"
    start = time.monotonic()
    try:
        if transport == "udp":
            return _udp(host, port, timeout_s, source, family, call_id, start)
        return _stream(host, port, timeout_s, source, family, call_id, start, transport, tls_context)
    except socket.timeout:
        return ProbeResult(0, "timeout", None)
    except ssl.SSLError as exc:
        return ProbeResult(0, f"tls: {exc.reason or exc}", None)
    except OSError as exc:
        return ProbeResult(0, exc.strerror or str(exc), None)


def _local(sock: socket.socket, family: int) -> tuple[str, int]:
    local_host, local_port = sock.getsockname()[:2]
    if local_host in ("0.0.0.0", "::"):
        local_host = "127.0.0.1" if family == socket.AF_INET else "::1"
    return (f"[{local_host}]" if family == socket.AF_INET6 else local_host), local_port


def _udp(host: str, port: int, timeout_s: float, source: str | None, family: int, call_id: str,
         start: float) -> ProbeResult:
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((source or ("::" if family == socket.AF_INET6 else "0.0.0.0"), 0))
        via_host, local_port = _local(sock, family)
        target = f"[{host}]" if family == socket.AF_INET6 else host
        sock.settimeout(timeout_s)
        sock.sendto(_request(target, port, "udp", via_host, local_port, call_id), (host, port))
        while True:
            remaining = timeout_s - (time.monotonic() - start)
            if remaining <= 0:
                return ProbeResult(0, "timeout", None)
            sock.settimeout(remaining)
            data, _ = sock.recvfrom(65535)
            status = _status(data, call_id)
            if status:
                return ProbeResult(status[0], status[1], (time.monotonic() - start) * 1000)


def _stream(host: str, port: int, timeout_s: float, source: str | None, family: int, call_id: str,
            start: float, transport: str, tls_context: ssl.SSLContext | None) -> ProbeResult:
    raw = socket.socket(family, socket.SOCK_STREAM)
    try:
        if source:
            raw.bind((source, 0))
        raw.settimeout(timeout_s)
        raw.connect((host, port))
        sock: socket.socket = raw
        if transport == "tls":
            context = tls_context or ssl.create_default_context()
            sock = context.wrap_socket(raw, server_hostname=None if _is_ip(host) else host)
        via_host, local_port = _local(sock, family)
        target = f"[{host}]" if family == socket.AF_INET6 else host
        sock.sendall(_request(target, port, transport, via_host, local_port, call_id))
        buffer = b""
        while True:
            remaining = timeout_s - (time.monotonic() - start)
            if remaining <= 0:
                return ProbeResult(0, "timeout", None)
            sock.settimeout(remaining)
            chunk = sock.recv(65535)
            if not chunk:
                return ProbeResult(0, "connection closed", None)
            buffer += chunk
            while b"\r\n\r\n" in buffer:  # one message per header block (OPTIONS answers carry no body)
                message, _, buffer = buffer.partition(b"\r\n\r\n")
                status = _status(message, call_id)
                if status:
                    return ProbeResult(status[0], status[1], (time.monotonic() - start) * 1000)
    finally:
        raw.close()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def rtpengine_ping(host: str, port: int, timeout_s: float = 1.0, source: str | None = None) -> bool:
    """Send the ng-protocol ``ping`` command (bencoded) and expect ``pong``; ``source``: the local
    address to send from (IPv4), by default the kernel's choice.

    Source: rtpengine docs/ng_control_protocol.md ("ping" command).
    """
    cookie = secrets.token_hex(4)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        try:
            if source:
                sock.bind((source, 0))
            sock.sendto(f"{cookie} d7:command4:pinge".encode(), (host, port))
            data, _ = sock.recvfrom(4096)
        except OSError:
            return False
    return data.startswith(cookie.encode()) and b"pong" in data
