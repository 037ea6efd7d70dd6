"""routing.tables.store.connect: the Kamailio worker's single redis connection, against a real
redis-server: a connection the server closed is replaced by the next command (once), a timeout is
never retried."""

from __future__ import annotations

import pytest
import redis

from routing.tables.store import connect


def test_a_connection_the_server_closed_is_replaced_by_the_next_command(redis_server: tuple[str, int],
                                                                         redis_client: redis.Redis) -> None:
    host, port = redis_server
    worker = connect(host, port, single_connection=True)
    try:
        worker.set("edge:test", "1")
        victim = worker.client_id()
        assert redis_client.client_kill_filter(_id=victim) == 1  # as a redis restart would
        assert worker.get("edge:test") == "1"  # retried once on a new connection, no error
        assert worker.client_id() != victim
    finally:
        worker.close()


def test_a_timeout_is_not_retried(redis_server: tuple[str, int], redis_client: redis.Redis) -> None:
    host, port = redis_server
    worker = connect(host, port, timeout_ms=100, single_connection=True)
    # counts its runs, then keeps redis busy for 300 ms (longer than the client waits)
    slow = "redis.call('INCR', KEYS[1]); local t = redis.call('TIME'); local start = t[1] * 1e6 + t[2]; " \
           "repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] - start > 300000; return 1"
    try:
        with pytest.raises(redis.TimeoutError):
            worker.eval(slow, 1, "edge:test:runs")
        # (this read waits for the script to end) sent once: a command that may have run is never sent twice
        assert redis_client.get("edge:test:runs") == "1"
        assert worker.ping() is True  # a fresh connection: the late reply is not read by the next command
    finally:
        worker.close()
