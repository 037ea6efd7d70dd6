"""The lock of a registration trunk that exactly one node registers (``register ... nodes=one``,
docs/security.md#registration-trunks): ``edge:reglock:{trunk}`` holds the name of the node that
registers, with a TTL its holder renews at each registration sync; when the holder dies the lock
runs out and the next node to sync takes it."""

from __future__ import annotations

import redis

from routing.tables import keys
from routing.tables.store import StoreUnavailable

__all__ = ["hold"]


def hold(client: redis.Redis, node: str, trunk: str, ttl_s: int) -> str:
    """Take or renew ``trunk``'s lock for ``node`` (``SET NX EX``, the holder's ``EXPIRE``); returns
    the node that holds it (``node``, another, or ``""``).  A renewal racing the lock's expiry may
    extend the new holder's lock instead: harmless, it holds it anyway.

    Raises:
        StoreUnavailable: redis unreachable or slow.
    """
    key = keys.registration_lock(trunk)
    try:
        if client.set(key, node, nx=True, ex=ttl_s):
            return node
        holder = client.get(key) or ""
        if holder == node:
            client.expire(key, ttl_s)
        return holder
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(str(exc)) from exc
