"""Bans on every node, on the running edge: a source this node bans (a scanner's User-Agent) is
published in redis for the other nodes (``edge:ban:{address}``), a ban another node published
silences the source here within seconds, and ``edgectl ban remove`` lifts it everywhere (the
other node is played by the test writing redis as its monitor would)."""

from __future__ import annotations

import json
import socket

from routing.monitor.sipprobe import sip_options
from routing.tables import keys
from tests.helpers import wait_until

from .conftest import NET, Edge
from .test_edgectl import edgectl

SCANNER_IP = f"{NET}.97"
FLOODER_IP = f"{NET}.96"


def _scanner_options(edge: Edge) -> None:
    """One OPTIONS from SCANNER_IP with a scanner's User-Agent (security.scanner_user_agents)."""
    host, port = edge.settings.sip_target
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((SCANNER_IP, 0))
        local = sock.getsockname()[1]
        sock.sendto((f"OPTIONS sip:{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {SCANNER_IP}:{local};branch=z9hG4bKscan1\r\n"
                     f"Max-Forwards: 70\r\nFrom: <sip:s@{SCANNER_IP}>;tag=s1\r\nTo: <sip:{host}>\r\n"
                     f"Call-ID: scan-1@{SCANNER_IP}\r\nCSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\n"
                     "Content-Length: 0\r\n\r\n").encode(), (host, port))


def _answered(edge: Edge, source: str) -> bool:
    host, port = edge.settings.sip_target
    return sip_options(host, port, timeout_s=0.5, source=source).code != 0


def test_a_ban_here_is_published_for_every_node(clean_edge: Edge) -> None:
    edge = clean_edge
    _scanner_options(edge)
    wait_until(lambda: edge.redis.get(keys.ban(SCANNER_IP)) == f"{edge.settings.node}|scanner", timeout=10,
               what="the scanner's ban published in redis")
    ttl = edge.redis.ttl(keys.ban(SCANNER_IP))
    assert 0 < ttl <= edge.settings.security.ban_time_s
    [row] = json.loads(edgectl(edge, "ban", "list", "--json").stdout)
    assert row["address"] == SCANNER_IP and row["node"] == edge.settings.node and row["reason"] == "scanner"
    assert not _answered(edge, SCANNER_IP)


def test_a_ban_by_another_node_silences_the_source_here_until_it_is_lifted(clean_edge: Edge) -> None:
    edge = clean_edge
    assert _answered(edge, FLOODER_IP)
    edge.redis.set(keys.ban(FLOODER_IP), "edge-b|flood", ex=120)  # what edge-b's monitor writes
    wait_until(lambda: not _answered(edge, FLOODER_IP), timeout=10, interval=0.2,
               what="silence for the source edge-b banned")
    removed = edgectl(edge, "ban", "remove", FLOODER_IP)
    assert removed.returncode == 0 and "lifted on every node" in removed.stdout, removed.stderr
    assert edge.redis.get(keys.ban(FLOODER_IP)) is None
    wait_until(lambda: _answered(edge, FLOODER_IP), timeout=10, interval=0.2, what="the source answered again")


def test_removing_a_ban_that_does_not_exist_fails_with_one_line(clean_edge: Edge) -> None:
    done = edgectl(clean_edge, "ban", "remove", "not-an-ip")
    assert done.returncode != 0 and "'not-an-ip' is not an IP address" in done.stderr
