"""Read-only views of calls in redis: the calls holding concurrency slots (``edgectl calls`` and
tests), and what ``edgectl explain`` shows of one Call-ID (its recorded refusal, its live facts,
its call records)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import redis

from routing.tables import keys

__all__ = ["active_calls", "lease_counts", "call_view", "read_record", "active_call", "call_records"]


def lease_counts(client: redis.Redis) -> dict[str, int]:
    """Unexpired members of every lease ZSET: lease key -> calls (expired leases are not counted)."""
    now = time.time()
    counts = {}
    for key in client.scan_iter(match=keys.LEASE_PATTERN, count=500):
        counts[key] = int(client.zcount(key, f"({now}", "+inf"))
    return counts


def call_view(facts: dict[str, str], now_ms: int) -> dict[str, Any]:
    """Derived fields of one live call from its call hash: ``state`` (``ringing`` until a
    2xx, then ``answered``), ``age_s`` (since the INVITE), ``duration_s`` (answered time so
    far, 0 while ringing) and ``codecs`` (``caller / callee`` codec lists)."""
    def ms(name: str) -> int | None:
        value = facts.get(name, "")
        return int(value) if value.isdigit() else None

    start, answer = ms("start_ms"), ms("answer_ms")
    caller = facts.get("codecs_caller", "")
    callee = facts.get("codecs_callee", "")
    return {
        "state": "answered" if answer is not None else "ringing",
        "age_s": None if start is None else max(0, now_ms - start) // 1000,
        "duration_s": 0 if answer is None else max(0, now_ms - answer) // 1000,
        "codecs": f"{caller or '-'} / {callee or '-'}" if caller or callee else "",
    }


def active_calls(client: redis.Redis) -> dict[str, Any]:
    """Active calls: ``{"counts": [{kind, name, active, limit}], "calls": [{call_id, node, ...facts}]}``.

    Every trunk, agent and account in the routing tables is listed, with 0 when idle.
    Each call carries its hash's facts (direction, trunk, agent, number, start_ms,
    answer_ms, codecs_caller, codecs_callee and whatever the media work adds) plus
    :func:`call_view`'s fields.
    """
    counts = lease_counts(client)
    rows = []
    for kind, index, lease_key, entity_key in (
        ("trunk", keys.TRUNKS, keys.trunk_lease, keys.trunk),
        ("agent", keys.AGENTS, keys.agent_lease, keys.agent),
        ("account", keys.ACCOUNTS, keys.account_lease, keys.account),
    ):
        for name in sorted(client.smembers(index)):
            limit = client.hget(entity_key(name), "max_calls")
            rows.append(
                {
                    "kind": kind,
                    "name": name,
                    "active": counts.get(lease_key(name), 0),
                    "limit": int(limit) if limit not in (None, "") else None,
                }
            )
    calls = []
    prefix = keys.call("", "")[:-2]
    for key in client.scan_iter(match=keys.CALL_PATTERN, count=500):
        node, _, call_id = key[len(prefix) + 1 :].partition(":")
        facts = {k: v for k, v in client.hgetall(key).items() if not k.startswith("lease:")}
        if not facts or "fenced" in facts:
            continue  # released between the scan and the read, or a fence (no call)
        calls.append({"call_id": call_id, "node": node, **facts, **call_view(facts, int(time.time() * 1000))})
    calls.sort(key=lambda c: c["call_id"])
    return {"counts": rows, "calls": calls}


def read_record(client: redis.Redis, call_id: str) -> dict[str, Any] | None:
    """The recorded refusal of ``call_id``, or None (never refused, or older than its TTL)."""
    text = client.get(keys.trace(call_id))
    return json.loads(text) if text else None


def _glob(text: str) -> str:
    """``text`` with redis MATCH wildcards escaped."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def call_records(client: redis.Redis, call_id: str) -> list[dict[str, Any]]:
    """The call records (``edge:cdr:{node}:{call-id}:{cseq}``, :mod:`routing.call.cdr`) of ``call_id``, oldest first.

    One SCAN over the records kept (``cdr.retention_days``): an ops-tool cost, never on the call path.
    """
    found = []
    for key in client.scan_iter(match=keys.cdr(f"*:{_glob(call_id)}:*"), count=1000):
        text = client.get(key)
        if text:
            record = json.loads(text)
            if record.get("call_id") == call_id:
                found.append(record)
    return sorted(found, key=lambda r: (r.get("start_ms") or 0, str(r.get("cseq"))))


def active_call(client: redis.Redis, call_id: str) -> dict[str, str] | None:
    """Facts of ``call_id`` while it holds slots (``edge:call:{node}:{call-id}`` on any node), else None."""
    pattern = keys.call("*", _glob(call_id))
    prefix = keys.call("", "")[:-1]  # "edge:call:"
    for key in client.scan_iter(match=pattern, count=1000):
        node = key[len(prefix):-len(call_id) - 1]
        facts = client.hgetall(key)
        if not facts or "fenced" in facts:
            continue  # released, or a fence left after an abandoned admission (no call)
        return {"node": node, **{k: v for k, v in facts.items() if not k.startswith("lease:")}}
    return None
