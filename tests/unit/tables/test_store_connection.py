"""routing.tables.store.connect, connection.send and store.run_script: the Kamailio worker's single
redis connection, against a real redis-server: a connection the server closed is replaced by the
next command (once), a timeout is never retried, an error reply keeps the connection in step."""

from __future__ import annotations

import pytest
import redis

from routing.tables.connection import send
from routing.tables.store import connect, run_script


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


def test_send_returns_each_reply_in_order_and_an_error_reply_without_raising(redis_server: tuple[str, int],
                                                                              redis_client: redis.Redis) -> None:
    host, port = redis_server
    redis_client.hset("edge:test:h", mapping={"a": "1"})
    redis_client.set("edge:test:s", "x")
    for worker in (connect(host, port, single_connection=True), connect(host, port)):  # one connection, a pool
        try:
            flat, wrong, value = send(worker, ("HGETALL", "edge:test:h"), ("INCR", "edge:test:s"), ("GET", "edge:test:s"))
            assert flat == ["a", "1"]  # raw: no redis-py callback
            assert isinstance(wrong, redis.ResponseError)
            assert value == "x"  # the replies after an error reply are read: the connection stays in step
            assert send(worker, ("GET", "edge:test:s")) == ["x"]
        finally:
            worker.close()


def test_send_replaces_a_connection_the_server_closed(redis_server: tuple[str, int], redis_client: redis.Redis) -> None:
    host, port = redis_server
    worker = connect(host, port, single_connection=True)
    try:
        victim = worker.client_id()
        assert redis_client.client_kill_filter(_id=victim) == 1
        assert send(worker, ("INCR", "edge:test:n")) == [1]  # sent once more on a new connection
        assert redis_client.get("edge:test:n") == "1"
        assert worker.client_id() != victim
    finally:
        worker.close()


def test_send_never_retries_a_timeout(redis_server: tuple[str, int], redis_client: redis.Redis) -> None:
    host, port = redis_server
    worker = connect(host, port, timeout_ms=100, single_connection=True)
    slow = "redis.call('INCR', KEYS[1]); local t = redis.call('TIME'); local start = t[1] * 1e6 + t[2]; " \
           "repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] - start > 300000; return 1"
    try:
        with pytest.raises(redis.TimeoutError):
            send(worker, ("EVAL", slow, 1, "edge:test:runs"))
        assert redis_client.get("edge:test:runs") == "1"
        assert send(worker, ("PING",)) == ["PONG"]  # a fresh connection: the late reply is not read
    finally:
        worker.close()


def test_run_script_loads_a_script_the_server_does_not_hold(redis_server: tuple[str, int],
                                                            redis_client: redis.Redis) -> None:
    host, port = redis_server
    worker = connect(host, port, single_connection=True)
    try:
        script = worker.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        redis_client.script_flush()  # as after a redis restart
        assert run_script(script, ["edge:test:n"], [2]) == 2
        assert run_script(script, ["edge:test:n"], [3]) == 5  # loaded now: EVALSHA alone
        failing = worker.register_script("return redis.error_reply('NOPE no')")
        with pytest.raises(redis.ResponseError, match="no"):
            run_script(failing, [], [])
    finally:
        worker.close()
