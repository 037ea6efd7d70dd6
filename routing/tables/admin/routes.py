"""Admin of outbound routes (least-cost routing entries: prefix, trunk, rate): validate, write,
list, remove."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import redis
from redis.client import Pipeline

from routing.tables import keys
from routing.tables.admin.common import Writes, check_count, read, require, transaction
from routing.tables.model import DataError, RouteEntry, check_name, check_prefix, parse_rate

__all__ = ["check_route", "queue_put_route", "queue_remove_route", "put_route", "list_routes", "remove_route", "route_dict"]

def check_route(entry: RouteEntry) -> RouteEntry:
    """Validate a route entry; return it as the call path will read it back.

    Raises:
        DataError: bad prefix or trunk name, negative or non-finite rate, priority < 0.
    """
    prefix = check_prefix(entry.prefix)
    check_name(entry.trunk, "trunk")
    where = f"route {prefix} {entry.trunk}"
    rate = entry.rate if isinstance(entry.rate, Decimal) else parse_rate(str(entry.rate), f"{where} rate")
    if not rate.is_finite() or rate < 0:
        raise DataError(f"{where} rate: must be a non-negative number, got {entry.rate!r}")
    check_count(entry.priority, f"{where} priority")
    trunk, value = dataclasses.replace(entry, rate=rate).to_redis()
    return RouteEntry.from_redis(prefix, trunk, value)


def queue_put_route(p: Pipeline, entry: RouteEntry) -> None:
    """Queue one route entry (trunk offered on a prefix)."""
    p.hset(keys.route(entry.prefix), *entry.to_redis())
    p.sadd(keys.ROUTES, entry.prefix)


def queue_remove_route(p: Pipeline, prefix: str, trunk: str | None) -> None:
    """Queue the removal of one trunk from a prefix, or of the whole prefix when ``trunk`` is None
    (the caller passes None when the trunk is the prefix's last one)."""
    if trunk is None:
        p.delete(keys.route(prefix))
        p.srem(keys.ROUTES, prefix)
    else:
        p.hdel(keys.route(prefix), trunk)


def put_route(client: redis.Redis, entry: RouteEntry, replace: bool = False) -> RouteEntry:
    """Offer an existing trunk for a destination prefix at a rate.

    Returns:
        The entry as written (what :meth:`RedisStore.routes` reads back).

    Raises:
        DataError: invalid entry (see :func:`check_route`), unknown trunk, or
            the trunk is already on the prefix and ``replace`` is False.
    """
    entry = check_route(entry)
    route_key = keys.route(entry.prefix)

    def prepare(pipe: Pipeline) -> Writes:
        if pipe.hexists(route_key, entry.trunk) and not replace:
            raise DataError(
                f"route {entry.prefix} via trunk {entry.trunk!r} already exists (use --replace to overwrite it)"
            )
        require(pipe, keys.TRUNKS, entry.trunk, "trunk")

        return lambda p: queue_put_route(p, entry)

    transaction(client, [route_key, keys.TRUNKS], prepare)
    return entry


def list_routes(client: redis.Redis, prefix: str | None = None) -> list[RouteEntry]:
    """Route entries of one exact prefix, or of every prefix in the index set.

    Returns:
        Entries sorted by prefix, then as least-cost routing tries them
        (rate, priority, trunk).

    Raises:
        DataError: bad ``prefix``, or a stored entry is malformed.
    """
    prefixes = [check_prefix(prefix)] if prefix is not None else sorted(client.smembers(keys.ROUTES))
    rows = read(client, lambda p: [p.hgetall(keys.route(x)) for x in prefixes])
    entries = [
        RouteEntry.from_redis(x, trunk, value) for x, fields in zip(prefixes, rows) for trunk, value in fields.items()
    ]
    return sorted(entries, key=lambda e: (e.prefix, e.rate, e.priority, e.trunk))


def remove_route(client: redis.Redis, prefix: str, trunk: str | None = None) -> None:
    """Remove one trunk from a prefix, or the whole prefix when ``trunk`` is None.

    The prefix leaves ``edge:routes`` when its last trunk is removed.

    Raises:
        DataError: bad prefix, no such prefix, or the trunk is not on it.
    """
    check_prefix(prefix)
    route_key = keys.route(prefix)

    def prepare(pipe: Pipeline) -> Writes:
        trunks = set(pipe.hkeys(route_key))
        if not trunks and not pipe.sismember(keys.ROUTES, prefix):
            raise DataError(f"no route {prefix!r}")
        if trunk is not None and trunk not in trunks:
            raise DataError(f"no route {prefix!r} via trunk {trunk!r}")
        whole = trunk is None or trunks == {trunk}

        return lambda p: queue_remove_route(p, prefix, None if whole else trunk)

    transaction(client, [route_key, keys.ROUTES], prepare)


def route_dict(entry: RouteEntry) -> dict[str, object]:
    """JSON shape of a route entry: prefix, trunk, rate (decimal string, per minute), priority, shared
    (agents of every account may use it)."""
    return {"prefix": entry.prefix, "trunk": entry.trunk, "rate": str(entry.rate), "priority": entry.priority,
            "shared": entry.shared}
