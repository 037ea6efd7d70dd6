"""The drain of call records from a node's redis outbox to a durable store (real redis; a JSON-lines
store, and stores that fail): every record written once, none lost to a store or redis outage."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import pytest
import redis

from routing.monitor import cdrdrain
from routing.monitor.cdrdrain import Drain, DrainResult
from routing.tables import keys
from routing.tables.cdrsinks import JsonlRecords
from routing.tables.cdrstore import CdrStore
from routing.tables.store import StoreUnavailable, connect
from tests.helpers import wait_until


NOW_MS = int(time.time() * 1000)


def record(n: int) -> dict:
    """A record of a call that started a minute ago (inside the retention of the index)."""
    return {"id": f"n1:call-{n}:1", "trunk": "b", "start_ms": NOW_MS - 60_000 + n, "end_ms": NOW_MS,
            "cost": "0", "status": "answered"}


def ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


class Flaky:
    """A store that fails while ``down`` and remembers every write."""

    def __init__(self) -> None:
        self.down = False
        self.rows: dict[str, Mapping[str, Any]] = {}
        self.closed = False

    def write(self, records: Sequence[Mapping[str, Any]]) -> int:
        if self.down:
            raise StoreUnavailable("down")
        new = [r for r in records if r["id"] not in self.rows]
        self.rows.update((r["id"], r) for r in new)
        return len(new)

    def close(self) -> None:
        self.closed = True


def test_the_drain_writes_each_record_once_in_batches(redis_client: redis.Redis, tmp_path: Path) -> None:
    cdrs = CdrStore(redis_client, 3600, max_records=3, outbox=keys.cdr_outbox("n1"))
    for n in range(7):
        cdrs.add(record(n))
    drain = Drain(cdrs, JsonlRecords(tmp_path / "r.jsonl"), batch=3)
    assert drain.once() == DrainResult(read=3, written=3, acknowledged=3, trimmed=3)
    assert drain.until_empty() == DrainResult(read=4, written=4, acknowledged=4, trimmed=1)  # 7 - 3 in all
    assert ids(tmp_path / "r.jsonl") == [f"n1:call-{n}:1" for n in range(7)]
    assert cdrs.waiting() == 0 and redis_client.zcard(keys.CDRS) == 3
    assert drain.once() == DrainResult()


def test_a_batch_written_but_not_acknowledged_is_not_written_twice(redis_client: redis.Redis, tmp_path: Path) -> None:
    cdrs = CdrStore(redis_client, 3600, outbox=keys.cdr_outbox("n1"))
    for n in range(3):
        cdrs.add(record(n))
    sink = JsonlRecords(tmp_path / "r.jsonl")
    sink.write(cdrs.pending(10))  # the monitor died (or redis failed) before the acknowledgement
    assert cdrs.waiting() == 3
    assert Drain(cdrs, sink).until_empty().written == 0
    assert ids(tmp_path / "r.jsonl") == [f"n1:call-{n}:1" for n in range(3)] and cdrs.waiting() == 0


def test_a_store_outage_keeps_every_record_in_redis_until_it_is_back(redis_client: redis.Redis) -> None:
    cdrs = CdrStore(redis_client, 3600, max_records=1, outbox=keys.cdr_outbox("n1"))
    sink = Flaky()
    drain = Drain(cdrs, sink, batch=2)
    sink.down = True
    for n in range(5):
        cdrs.add(record(n))
    with pytest.raises(StoreUnavailable):
        drain.until_empty()
    assert cdrs.waiting() == 5 and redis_client.zcard(keys.CDRS) == 5  # the bound waits for the store
    sink.down = False
    assert drain.until_empty().written == 5
    assert sorted(sink.rows) == [f"n1:call-{n}:1" for n in range(5)]
    assert cdrs.waiting() == 0 and redis_client.zcard(keys.CDRS) == 1


def test_redis_failing_leaves_the_outbox_for_the_next_round(redis_client: redis.Redis) -> None:
    dead = CdrStore(connect("127.0.0.1", 1, timeout_ms=100, connect_timeout_ms=100), 3600,
                    outbox=keys.cdr_outbox("n1"))
    with pytest.raises(StoreUnavailable):
        Drain(dead, Flaky()).once()


def test_run_retries_with_backoff_logs_once_and_closes_the_store(redis_client: redis.Redis,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    cdrs = CdrStore(redis_client, 3600, outbox=keys.cdr_outbox("n1"))
    sink = Flaky()
    sink.down = True
    cdrs.add(record(1))
    rounds: list[DrainResult | None] = []
    stop = threading.Event()
    thread = threading.Thread(target=cdrdrain.run, args=(Drain(cdrs, sink), 0.01, stop, rounds.append))
    with caplog.at_level(logging.INFO, logger="byoc_edge.cdrdrain"):
        thread.start()
        wait_until(lambda: rounds.count(None) >= 3, what="three failed rounds")
        sink.down = False
        wait_until(lambda: sink.rows, timeout=5, what="the record written after the outage")
        stop.set()
        thread.join(5)
    assert list(sink.rows) == ["n1:call-1:1"] and sink.closed
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "kept in redis" in errors[0].getMessage()
    assert any("reachable again: 1 call record(s) written" in r.getMessage() for r in caplog.records)


def test_the_drain_needs_an_outbox(redis_client: redis.Redis) -> None:
    with pytest.raises(ValueError):
        Drain(CdrStore(redis_client, 3600), Flaky())
