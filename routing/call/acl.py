"""Source-address classification: which trunk or agent sent this request.

Longest prefix wins across every trunk and agent CIDR (a /32 beats a /24);
at equal length a trunk wins over an agent.  The source is the packet's
address, never a Via or Contact host.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from routing.tables.store import Topology

__all__ = ["Peer", "classify_source"]


@dataclass(frozen=True, slots=True)
class Peer:
    """The trunk or agent a source address belongs to."""

    kind: Literal["trunk", "agent"]
    name: str
    cidr: str


@lru_cache(maxsize=4096)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A parsed CIDR, memoised per worker: the same few CIDRs are checked on every request."""
    return ipaddress.ip_network(cidr)


@lru_cache(maxsize=4096)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A parsed source address (None when it is not one), memoised per worker."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


#: the topology the answers below are for (a worker's copy is replaced, never changed, on a
#: reload), and its answers per source address: a worker sees the same few sources call after call
_seen_of: object = None
_seen: dict[str, "Peer | None"] = {}


def classify_source(src_ip: str, topology: Topology) -> Peer | None:
    """Find the trunk or agent whose allowlist holds ``src_ip`` (memoised per topology object:
    every CIDR of every trunk and agent is scanned once per source and copy, not per call).

    Args:
        src_ip: packet source address (IPv4 or IPv6 text).
        topology: every trunk and agent.

    Returns:
        The best match, or None for a stranger (and for an unparsable address).
    """
    global _seen_of, _seen
    if _seen_of is not topology:
        _seen_of, _seen = topology, {}
    elif src_ip in _seen:
        return _seen[src_ip]
    found = _classify(src_ip, topology)
    if len(_seen) < 4096:
        _seen[src_ip] = found
    return found


def _classify(src_ip: str, topology: Topology) -> Peer | None:
    """:func:`classify_source` without the memo."""
    address = _address(src_ip)
    if address is None:
        return None
    best: tuple[int, int] | None = None
    found: Peer | None = None
    candidates = [("trunk", t.name, t.cidrs) for t in topology.trunks.values()]
    candidates += [("agent", a.name, a.cidrs) for a in topology.agents.values()]
    for kind, name, cidrs in candidates:
        for cidr in cidrs:
            network = _network(cidr)
            if network.version != address.version or address not in network:
                continue
            rank = (network.prefixlen, 1 if kind == "trunk" else 0)
            if best is None or rank > best:
                best, found = rank, Peer(kind, name, cidr)  # type: ignore[arg-type]
    return found
