"""Decisions of an rtpengine set (settings ``rtpengine.nodes``, docs/media.md#rtpengine-sets): the
node a Kamailio rtpengine module URL names, the node an ng command of the plugin goes to, when
a node's failed pings make it dead, and when a dead edge node's call may give its slots back
(:func:`lost_call`).  Sans I/O: routing/kamailio/rtpset.py and routing/monitor/nodeloss.py do the
sending."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from .quality import idle_s

__all__ = ["DOWN_AFTER", "parse_url", "pick", "health", "lost_call", "NO_MEDIA", "MEDIA_GONE", "MEDIA_STOPPED",
           "RTPENGINE_LOST"]

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


#: :func:`lost_call`'s verdicts (the record's ``media_end_reason``; "" = keep the slots): the call had no
#: media to wait for (never answered, or no remote rtpengine: it died with the edge host)
NO_MEDIA = "no_media"
#: the call's rtpengine no longer has its session (timed out, or deleted)
MEDIA_GONE = "media_gone"
#: the call's rtpengine received no RTP from any side for the timeout
MEDIA_STOPPED = "media_stopped"
#: the call's rtpengine did not answer ng for the timeout: no media flows through it
RTPENGINE_LOST = "rtpengine_lost"


def lost_call(answer_s: float, node_url: str, reply: dict[str, Any] | None, gone: bool, unreachable_s: float,
              now: float, stopped_after_s: float) -> str:
    """Whether the slots of a call whose edge node died (no heartbeat) may be released now, and why:
    never while its media may still flow through an rtpengine on another host.

    Args:
        answer_s: when the call was answered (epoch s; 0 = never answered).
        node_url: the call's rtpengine (the live hash's ``rtp_node``, a module URL; "" = the local
            rtpengine, which died with the node).
        reply: that rtpengine's ng ``query`` reply of the call (None when it gave none).
        gone: it answered ``Unknown call-id`` (the session is no more).
        unreachable_s: how long it has not answered ng at all (s; 0 = it answered).
        now: epoch s.
        stopped_after_s: seconds without RTP from every side that make the media stopped (the RTP
            timeout, rtpengine ``docs/ng_control_protocol.md`` ``query``: ``last packet`` per stream).

    Returns:
        "" to keep the slots (ask again next round), else the reason they go: :data:`NO_MEDIA`,
        :data:`MEDIA_GONE`, :data:`MEDIA_STOPPED` or :data:`RTPENGINE_LOST`.
    """
    if not answer_s or not parse_url(node_url):
        return NO_MEDIA
    if gone:
        return MEDIA_GONE
    if reply is not None:
        return MEDIA_STOPPED if idle_s(reply, now, answer_s) >= stopped_after_s else ""
    return RTPENGINE_LOST if unreachable_s >= stopped_after_s else ""
