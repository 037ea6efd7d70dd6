"""The slots of an edge node that died, given back by the nodes that live (issue: no single point of
failure).  Every node's Kamailio keeps a heartbeat in redis (``edge:node:{node}``, written by its call
clock with a TTL, :mod:`routing.kamailio.timers`); every node's monitor runs :func:`reap` now and
then: the calls of a node whose heartbeat is gone lost their signalling path.  A call's slots are
released (``finish.lua``: exactly what the dead node would have done) once its media is gone too
(:func:`routing.call.rtpset.lost_call`): at once for a call never answered or whose rtpengine was the
dead host's own; for a call on an rtpengine of another host (the live hash's ``rtp_node``, written at
the answer, ``rtpengine.nodes``) only once that rtpengine no longer has the session, received no RTP
for the RTP timeout, or has not answered ng for that long; its session there is then deleted.  Each
released call gets a record ended by the node's loss (``hangup: node_lost``, ``media_end_reason`` the
verdict; the record id is the one every reaper computes, so several reapers write it once).  Never
while the node lives: a node whose Kamailio runs keeps its heartbeat whatever its monitor does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any, Callable

import redis

from routing.call import rtpset
from routing.call.cdr import CallFacts, build_record
from routing.ngclient import NgClient, NgError
from routing.tables import keys
from routing.tables.cdrstore import CdrStore
from routing.tables.store import HEARTBEAT_TTL_S, RedisStore, StoreUnavailable

__all__ = ["HEARTBEAT_TTL_S", "reap", "run"]

log = logging.getLogger("byoc_edge.nodeloss")

#: how often a monitor looks for dead nodes (s)
REAP_EVERY_S = 5


def reap(client: redis.Redis, me: str, cdrs: CdrStore, now: Callable[[], float] = time.time,
         stopped_after_s: float = 60, unreachable: dict[str, float] | None = None,
         ng: Callable[[str, int], Any] = NgClient) -> dict[str, int]:
    """Release the calls of every node without a heartbeat (but this one) whose media is gone, and
    record them.

    Args:
        stopped_after_s: seconds without RTP (or without an answer from the call's rtpengine) after
            which a dead node's call has no media any more (s, the RTP timeout).
        unreachable: ``{rtpengine URL: epoch s of its first unanswered query}``, kept by the caller
            across rounds (:func:`run`); updated here.
        ng: makes the ng client of ``(host, port)`` (:class:`routing.ngclient.NgClient`).

    Returns:
        ``{dead node: calls released}`` (a node whose calls all keep their media is absent).

    Raises:
        StoreUnavailable: redis unreachable.
    """
    unreachable = {} if unreachable is None else unreachable
    try:
        by_node: dict[str, list[str]] = defaultdict(list)
        prefix = keys.call("", "")[:-2]
        for key in client.scan_iter(match=keys.CALL_PATTERN, count=500):
            node, _, call_id = key[len(prefix) + 1:].partition(":")
            if node and node != me and call_id:
                by_node[node].append(call_id)
        if not by_node:
            return {}
        pipe = client.pipeline(transaction=False)
        for node in by_node:
            pipe.exists(keys.node(node))
        alive = dict(zip(by_node, pipe.execute()))
        heads: dict[str, list[list[str | None]]] = {}
        pipe = client.pipeline(transaction=False)
        for node, call_ids in by_node.items():
            if not alive[node]:
                for call_id in call_ids:
                    pipe.hmget(keys.call(node, call_id), "answer_ms", "rtp_node")
        flat = iter(pipe.execute())
        for node, call_ids in by_node.items():
            if not alive[node]:
                heads[node] = [next(flat) for _ in call_ids]
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(str(exc)) from exc
    media = _Media(ng, unreachable, now())
    released: dict[str, int] = {}
    try:
        for node, node_heads in heads.items():
            store = RedisStore(client, node)
            kept = 0
            for call_id, (answer_ms, rtp_node) in zip(by_node[node], node_heads):
                verdict = media.verdict(call_id, int(answer_ms or 0) / 1000, rtp_node or "", stopped_after_s)
                if not verdict:
                    kept += 1
                    continue
                fields = store.finish(call_id)
                if not fields or "fenced" in fields:
                    continue
                released[node] = released.get(node, 0) + 1
                if rtp_node and verdict == rtpset.MEDIA_STOPPED:
                    media.delete(call_id, rtp_node)  # its ports and state freed on that rtpengine now
                if verdict != rtpset.NO_MEDIA:
                    fields["media_end_reason"] = verdict
                cdrs.add(build_record(_facts(node, call_id, fields, now())))
            log.warning("node %s has no heartbeat: released %d of its calls, %d keep their media",
                        node, released.get(node, 0), kept)
    finally:
        media.close()
    return released


class _Media:
    """One round's view of the rtpengines of dead nodes' calls: one ng client per node, a node that
    did not answer asked no more this round (its wait is 0.5 s)."""

    def __init__(self, ng: Callable[[str, int], Any], unreachable: dict[str, float], now: float) -> None:
        self.ng, self.unreachable, self.now = ng, unreachable, now
        self.clients: dict[str, Any] = {}
        self.silent: set[str] = set()

    def _client(self, url: str) -> Any:
        if url not in self.clients:
            host, port = rtpset.parse_url(url) or ("", 0)
            self.clients[url] = self.ng(host, port)
        return self.clients[url]

    def verdict(self, call_id: str, answer_s: float, url: str, stopped_after_s: float) -> str:
        """:func:`routing.call.rtpset.lost_call` of one call, after asking its rtpengine (ng ``query``)."""
        reply, gone = None, False
        if answer_s and rtpset.parse_url(url) and url not in self.silent:
            try:
                reply = self._client(url).query(call_id)
                self.unreachable.pop(url, None)
            except NgError as exc:
                if "unknown call" in exc.reason.lower():
                    gone = True
                    self.unreachable.pop(url, None)
                elif not exc.reason:  # no answer at all (an error answer is an answer: the node lives)
                    self.silent.add(url)
                    self.unreachable.setdefault(url, self.now)
        since = self.unreachable.get(url)
        return rtpset.lost_call(answer_s, url, reply, gone, self.now - since if since is not None else 0, self.now,
                                stopped_after_s)

    def delete(self, call_id: str, url: str) -> None:
        """Delete the session of a call released with its media stopped (best effort: rtpengine's own
        timeout deletes it otherwise)."""
        try:
            self._client(url).command("delete", call_id=call_id)
        except NgError as exc:
            log.info("cannot delete the rtpengine session of %s on %s: %s", call_id, url, exc)

    def close(self) -> None:
        for client in self.clients.values():
            close = getattr(client, "close", None)
            if close is not None:
                close()


def _facts(node: str, call_id: str, fields: dict[str, str], now: float) -> CallFacts:
    """The record of a call the dead node held: what its call hash says, ended now, by the node's loss (its
    account, and the spend it accrued while it ran, which stays counted: the hash has no rate, the record
    no cost)."""
    def number(name: str) -> int | None:
        value = fields.get(name, "")
        return int(value) if value.isdigit() else None

    end_ms = int(now * 1000)
    answered = number("answer_ms")
    return CallFacts(node=node, call_id=call_id, cseq="0", start_ms=number("start_ms") or end_ms, end_ms=end_ms,
                     sip_code=200 if answered else 500, sip_reason="OK" if answered else "Node Lost",
                     direction=fields.get("direction", ""), answer_ms=answered, trunk=fields.get("trunk", ""),
                     agent=fields.get("agent", ""), number=fields.get("number", ""), account=fields.get("account", ""),
                     accrued_micros=number("spend_accrued") or 0,
                     reject_tag="" if answered else "node_lost", hangup="node_lost" if answered else "",
                     tried=[] if answered else [f"node {node}=node_lost"],
                     media={k: v for k, v in fields.items() if k.startswith("media_")})


def run(client: redis.Redis, me: str, cdrs: CdrStore, stop: threading.Event, stopped_after_s: float = 60) -> None:
    """:func:`reap` every :data:`REAP_EVERY_S` until ``stop`` is set (the monitor's thread); errors are
    logged and the next round tries again.  ``stopped_after_s``: as :func:`reap` (s)."""
    unreachable: dict[str, float] = {}
    while not stop.wait(REAP_EVERY_S):
        try:
            reap(client, me, cdrs, stopped_after_s=stopped_after_s, unreachable=unreachable)
        except (StoreUnavailable, redis.RedisError) as exc:
            log.error("node-loss round failed: %s", exc)
