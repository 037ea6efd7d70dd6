"""Small helpers shared by the tests."""

from __future__ import annotations

import socket
import time


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port the kernel reports free on ``host`` (IPv4 or IPv6) right now."""
    with socket.socket(_family(host), kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(host: str, count: int, kind: int = socket.SOCK_DGRAM) -> list[int]:
    """``count`` distinct ports the kernel reports free on ``host`` (IPv4 or IPv6) right now."""
    socks = [socket.socket(_family(host), kind) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port_both(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host`` (a SIP listener uses both)."""
    for _ in range(200):
        port = free_port(host, socket.SOCK_DGRAM)
        with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        return port
    raise AssertionError(f"no port free for both UDP and TCP on {host}")


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
