"""The slots of an edge node that died, given back by the nodes that live (issue: no single point of
failure).  Every node's Kamailio keeps a heartbeat in redis (``edge:node:{node}``, written by its call
clock with a TTL, :mod:`routing.kamailio.timers`); every node's monitor runs :func:`reap` now and
then: the calls of a node whose heartbeat is gone lost their signalling path, and since rtpengine
runs on the edge's own host, their media died with it too, so their leases are released at once
(with an rtpengine set on other hosts, ``rtpengine.nodes``, their media may still flow: released at
once all the same, the limit docs/media.md#rtpengine-sets names) (``finish.lua``: exactly what the dead node would have done)
and each call gets a record ended by the node's loss (``hangup: node_lost``; the record id is the
one every reaper computes, so several reapers write it once).  Never while the node lives: a node
whose Kamailio runs keeps its heartbeat whatever its monitor does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Callable

import redis

from routing.call.cdr import CallFacts, build_record
from routing.tables import keys
from routing.tables.cdrstore import CdrStore
from routing.tables.store import HEARTBEAT_TTL_S, RedisStore, StoreUnavailable

__all__ = ["HEARTBEAT_TTL_S", "reap", "run"]

log = logging.getLogger("byoc_edge.nodeloss")

#: how often a monitor looks for dead nodes (s)
REAP_EVERY_S = 5


def reap(client: redis.Redis, me: str, cdrs: CdrStore, now: Callable[[], float] = time.time) -> dict[str, int]:
    """Release the calls of every node without a heartbeat (but this one) and record them.

    Returns:
        ``{dead node: calls released}``.

    Raises:
        StoreUnavailable: redis unreachable.
    """
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
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(str(exc)) from exc
    released: dict[str, int] = {}
    for node, call_ids in by_node.items():
        if alive[node]:
            continue
        store = RedisStore(client, node)
        for call_id in call_ids:
            fields = store.finish(call_id)
            if not fields or "fenced" in fields:
                continue
            released[node] = released.get(node, 0) + 1
            cdrs.add(build_record(_facts(node, call_id, fields, now())))
        log.warning("node %s has no heartbeat: released %d of its calls", node, released.get(node, 0))
    return released


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


def run(client: redis.Redis, me: str, cdrs: CdrStore, stop: threading.Event) -> None:
    """:func:`reap` every :data:`REAP_EVERY_S` until ``stop`` is set (the monitor's thread); errors are
    logged and the next round tries again."""
    while not stop.wait(REAP_EVERY_S):
        try:
            reap(client, me, cdrs)
        except (StoreUnavailable, redis.RedisError) as exc:
            log.error("node-loss round failed: %s", exc)
