"""routing.tables.connection: Sentinel addresses, clients of one redis or of a Sentinel set's master
(redis-py's Sentinel pool, no failover logic of our own), and the strict admission's WAIT against a
real redis without a replica."""

from __future__ import annotations

import pytest
import redis
from redis.sentinel import MasterNotFoundError, SentinelConnectionPool

from routing.tables import keys
from routing.tables.connection import connect, parse_address
from routing.tables.store import Lease, RedisStore, StoreUnavailable
from tests.helpers import free_port


@pytest.mark.parametrize("text, expected", [
    ("10.0.0.5:26380", ("10.0.0.5", 26380)),
    ("sentinel-a", ("sentinel-a", 26379)),
    ("[2001:db8::5]:26379", ("2001:db8::5", 26379)),
    ("2001:db8::5", ("2001:db8::5", 26379)),
])
def test_sentinel_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", [":26379", "host:0", "host:70000", "host:port", "[::1]:x"])
def test_bad_sentinel_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_a_sentinel_client_asks_the_sentinels_for_the_master_with_the_edges_timeouts() -> None:
    client = connect(password="pw", timeout_ms=150, connect_timeout_ms=120, sentinels=[("127.0.0.1", 1)],
                     master_name="byoc-edge")
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "byoc-edge" and pool.is_master
    kwargs = pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"], kwargs["password"]) == (0.15, 0.12, "pw")
    assert kwargs["retry_on_timeout"] is False and kwargs["decode_responses"] is True
    sentinel = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert (sentinel["socket_timeout"], sentinel["socket_connect_timeout"]) == (0.12, 0.12)


def test_no_sentinel_answering_is_a_connection_error_at_once() -> None:
    dead = free_port()
    with pytest.raises(MasterNotFoundError) as info:
        connect(sentinels=[("127.0.0.1", dead)], master_name="byoc-edge", single_connection=True)
    assert isinstance(info.value, redis.ConnectionError)  # the worker's fallback catches it as any redis error


def test_strict_admission_without_a_replica_is_refused(redis_client: redis.Redis) -> None:
    lease = Lease(keys.trunk_lease("a"), 5, "trunk a")
    assert RedisStore(redis_client, "n1").acquire("c1", [lease], 60).admitted
    strict = RedisStore(redis_client, "n1", strict_wait_ms=20)
    with pytest.raises(StoreUnavailable, match="not acknowledged by a replica within 20 ms"):
        strict.acquire("c2", [lease], 60)
    # the caller releases it (with a fence), as after any store failure at admission
    strict.release("c2", fence_s=10)
    assert redis_client.zcard(lease.key) == 1
    with pytest.raises(StoreUnavailable, match="lease extension"):
        strict.update_call("c1", {"answer_ms": "1"}, extend_s=600)
    assert RedisStore(redis_client, "n1", strict_wait_ms=20).update_call("c1", {"codecs": "PCMU"}) is True
