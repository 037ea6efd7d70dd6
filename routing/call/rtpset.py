"""Decisions of an rtpengine set (settings ``rtpengine.nodes``, docs/media.md#rtpengine-sets): the
node a Kamailio rtpengine module URL names, the node an ng command of the plugin goes to, and when
a node's failed pings make it dead.  Sans I/O: routing/kamailio/rtpset.py does the sending."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

__all__ = ["DOWN_AFTER", "parse_url", "pick", "health"]

#: consecutive failed ng pings (one per call-clock tick, i.e. per second) after which a node is dead:
#: 3 keeps one or two lost UDP datagrams from ending the calls of a live node
DOWN_AFTER = 3


def parse_url(url: str) -> tuple[str, int] | None:
    """``(host, port)`` of a module node URL (``udp:HOST:PORT``, ``udp6:[HOST]:PORT``, an optional
    ``=WEIGHT`` ignored); None for anything else."""
    scheme, _, rest = url.partition(":")
    if scheme not in ("udp", "udp6") or not rest:
        return None
    rest = rest.split("=", 1)[0]
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        return None
    return host, int(port)


def pick(nodes: Sequence[tuple[str, int]], down: Iterable[str], key: str) -> str | None:
    """The node URL for a new session the plugin starts itself (``nodes``: ``(url, weight)``):
    weighted over the nodes not in ``down``, the same node for the same ``key`` (a Call-ID) while the
    nodes up do not change; None when every node is down."""
    down = set(down)
    up = [(url, weight) for url, weight in nodes if url not in down]
    total = sum(weight for _, weight in up)
    if not total:
        return None
    cut = zlib.crc32(key.encode()) % total
    for url, weight in up:
        if cut < weight:
            return url
        cut -= weight
    return up[-1][0]  # not reached


def health(failures: int, answered: bool, down: bool) -> tuple[int, bool]:
    """A node's next ``(consecutive failed pings, dead)`` after one ping: any answer brings it back
    up at once; ``DOWN_AFTER`` failures in a row make it dead."""
    if answered:
        return 0, False
    failures += 1
    return failures, down or failures >= DOWN_AFTER
