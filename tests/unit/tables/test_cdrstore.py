"""Call-record storage against a real redis: exactly-once writes, spend counters, the spool and its replay."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import redis

from routing.tables import keys
from routing.tables.cdrstore import CdrStore, CdrWriter, Spool, parse_time
from routing.tables.store import StoreUnavailable, connect


def record(n: int, cost: str = "0.020000", direction: str = "termination", start_ms: int | None = None) -> dict:
    import time

    start = start_ms if start_ms is not None else int(time.time() * 1000) - 10_000 + n
    return {"id": f"n1:call-{n}:1", "direction": direction, "trunk": "b", "start_ms": start, "end_ms": start + 5000,
            "cost": cost, "status": "answered"}


def test_a_record_is_stored_once_and_its_cost_counted_once(redis_client: redis.Redis) -> None:
    store = CdrStore(redis_client, 3600)
    rec = record(1)
    assert store.add(rec) is True
    assert store.add(rec) is False
    day = __import__("routing.call.cdr", fromlist=["utc_day"]).utc_day(rec["end_ms"])
    assert redis_client.get(keys.spend("b", day)) == "20000"
    assert 0 < redis_client.ttl(keys.spend("b", day)) <= 3 * 86400
    assert 3500 < redis_client.ttl(keys.cdr(rec["id"])) <= 3600
    assert store.records(0, 2**53) == [rec]
    assert store.get(rec["id"]) == rec


def test_free_calls_do_not_touch_spend_and_both_directions_count(redis_client: redis.Redis) -> None:
    store = CdrStore(redis_client, 3600)
    store.add(record(2, cost="0.000000"))
    store.add({**record(3), "trunk": ""})  # refused before a trunk was known
    assert list(redis_client.scan_iter(match=keys.SPEND_PATTERN)) == []
    rec = record(1, direction="origination", cost="0.008500")
    store.add(rec)
    store.add(record(4))
    from routing.call.cdr import utc_day

    assert store.spend("b", utc_day(rec["end_ms"])) == 8500 + 20000


def test_records_by_window_trunk_and_limit_and_retention(redis_client: redis.Redis) -> None:
    store = CdrStore(redis_client, 3600)
    for n in range(5):
        store.add(record(n))
    recs = store.records(0, 2**53)
    assert [r["id"] for r in recs] == [f"n1:call-{n}:1" for n in range(5)]
    assert store.records(recs[1]["start_ms"], recs[2]["start_ms"]) == recs[1:3]
    assert store.records(0, 2**53, limit=2) == recs[-2:]
    assert store.records(0, 2**53, trunk="other") == []
    old = record(9, start_ms=1000)  # older than the retention: pruned from the index at once
    store.add(old)
    assert old["id"] not in redis_client.zrange(keys.CDRS, 0, -1)


def test_stranger_refusals_expire_sooner_without_shrinking_the_index(redis_client: redis.Redis) -> None:
    store = CdrStore(redis_client, 3600, stranger_retention_s=600)
    stranger = {**record(1), "trunk": "", "agent": "", "sip_code": 403, "status": "rejected"}
    known = {**record(2), "trunk": "a", "sip_code": 403, "status": "rejected"}  # refused, but a trunk's call
    assert store.add(stranger) and store.add(known)
    assert 500 < redis_client.ttl(keys.cdr(stranger["id"])) <= 600
    assert 3500 < redis_client.ttl(keys.cdr(known["id"])) <= 3600
    # a record older than the stranger window but inside the retention stays indexed
    older = record(3, start_ms=int(__import__("time").time() * 1000) - 1_200_000)
    store.add(older)
    store.add({**record(4), "trunk": "", "sip_code": 404})
    assert older["id"] in redis_client.zrange(keys.CDRS, 0, -1)
    assert CdrStore(redis_client, 3600, stranger_retention_s=7200).stranger_retention_s == 3600


def test_spool_survives_processes_and_replays_idempotently(redis_client: redis.Redis, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_spool_many, args=(str(tmp_path / "spool"), w)) for w in range(3)]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(20)
        assert proc.exitcode == 0
    spool.append(record(0))  # this process too
    assert spool.pending() == 31
    store = CdrStore(redis_client, 3600)
    store.add(record(0))  # already stored before the outage: replayed as a duplicate
    assert spool.replay(store.add) == (30, 1)
    assert spool.pending() == 0
    assert redis_client.zcard(keys.CDRS) == 31
    assert spool.replay(store.add) == (0, 0)
    # the exited workers' empty files are cleaned up, this process's stays
    assert [p.name for p in (tmp_path / "spool").iterdir()] == [f"cdr-{os.getpid()}.jsonl"]


def _spool_many(directory: str, worker: int) -> None:
    spool = Spool(directory)
    for n in range(10):
        spool.append(record(100 * (worker + 1) + n))


def test_a_torn_line_is_set_aside_not_blocking_the_rest(redis_client: redis.Redis, tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(record(1))
    with open(tmp_path / f"cdr-{os.getpid()}.jsonl", "a") as handle:
        handle.write('{"id": "n1:cut')  # a crash in the middle of a write
    assert spool.replay(CdrStore(redis_client, 3600).add) == (1, 0)
    assert (tmp_path / "rejected.jsonl").read_text().startswith('{"id": "n1:cut')
    assert spool.pending() == 0


class FlakyStore:
    """A CdrStore that is down until ``up`` is set."""

    def __init__(self) -> None:
        self.up = False
        self.stored: dict[str, dict] = {}
        self.tries = 0

    def add(self, rec: dict) -> bool:
        self.tries += 1
        if not self.up:
            raise StoreUnavailable("Connection refused")
        new = rec["id"] not in self.stored
        self.stored.setdefault(rec["id"], rec)
        return new

    def add_many(self, recs: list[dict]) -> list[bool]:
        return [self.add(rec) for rec in recs]


def test_writer_spools_backs_off_and_replays(tmp_path: Path) -> None:
    now = [100.0]
    flaky = FlakyStore()
    writer = CdrWriter(flaky, Spool(tmp_path), backoff_s=5, clock=lambda: now[0])  # type: ignore[arg-type]
    assert writer.write(record(1)) == "spooled"
    assert writer.write(record(2)) == "spooled"
    assert flaky.tries == 1  # the second one did not wait for redis again
    assert writer.replay() == (0, 0)  # still backing off
    flaky.up = True
    now[0] += 6
    assert writer.replay() == (2, 0)
    assert writer.write(record(1)) == "duplicate"
    assert writer.write(record(3)) == "stored"
    assert sorted(flaky.stored) == ["n1:call-1:1", "n1:call-2:1", "n1:call-3:1"]


def test_replay_interrupted_by_another_outage_keeps_the_records(tmp_path: Path) -> None:
    flaky = FlakyStore()
    spool = Spool(tmp_path)
    for n in range(3):
        spool.append(record(n))
    with pytest.raises(StoreUnavailable):
        spool.replay(flaky.add)
    assert spool.pending() == 3
    flaky.up = True
    assert spool.replay(flaky.add) == (3, 0)


def test_writer_against_a_dead_redis_spools(tmp_path: Path) -> None:
    from tests.helpers import free_port

    dead = connect("127.0.0.1", free_port(), timeout_ms=200, connect_timeout_ms=200)
    writer = CdrWriter(CdrStore(dead, 3600), Spool(tmp_path))
    assert writer.write(record(1)) == "spooled"
    assert json.loads((tmp_path / f"cdr-{os.getpid()}.jsonl").read_text())["id"] == "n1:call-1:1"


def test_parse_time_forms() -> None:
    now = 1_800_000_000_000
    assert parse_time("now", now) == now
    assert parse_time("2h", now) == now - 7_200_000
    assert parse_time("7d", now) == now - 7 * 86_400_000
    assert parse_time("today", now) == now - now % 86_400_000
    assert parse_time("1970-01-02") == 86_400_000
    assert parse_time("1970-01-01T01:00:00+01:00") == 0
    assert parse_time("1970-01-01T00:00:01Z") == 1000
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday-ish")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["write", "write", "down", "up", "replay", "tick"]), max_size=40))
def test_no_record_is_lost_or_counted_twice_whatever_the_outages(tmp_path: Path, ops: list[str]) -> None:
    """Any sequence of writes, outages, replays and time passing: once redis is back and the
    spool replayed, every record written is stored exactly once (its spend counted once)."""
    directory = tmp_path / f"spool-{abs(hash(tuple(ops)))}"
    now = [0.0]
    flaky = CountingStore()
    writer = CdrWriter(flaky, Spool(directory), backoff_s=5, clock=lambda: now[0])  # type: ignore[arg-type]
    written = []
    for n, op in enumerate(ops):
        if op == "write":
            rec = record(n)
            written.append(rec["id"])
            writer.write(rec)
            if n % 3 == 0:
                writer.write(rec)  # a retransmission refused twice
        elif op in ("down", "up"):
            flaky.up = op == "up"
        elif op == "replay":
            try:
                writer.replay()
            except StoreUnavailable:
                pass
        else:
            now[0] += 6
    flaky.up = True
    now[0] += 6
    writer.replay()
    assert sorted(flaky.stored) == sorted(written)
    assert all(count == 1 for count in flaky.counted.values())
    assert Spool(directory).pending() == 0


class CountingStore(FlakyStore):
    """FlakyStore that also counts how often each record was *new* (the spend it would add)."""

    def __init__(self) -> None:
        super().__init__()
        self.up = True
        self.counted: dict[str, int] = {}

    def add(self, rec: dict) -> bool:
        new = super().add(rec)
        if new:
            self.counted[rec["id"]] = self.counted.get(rec["id"], 0) + 1
        return new


def test_iter_records_pages_through_the_index(redis_client: redis.Redis) -> None:
    store = CdrStore(redis_client, 3600)
    for n in range(7):
        store.add(record(n))
    redis_client.delete(keys.cdr("n1:call-3:1"))  # expired between the index and the read
    ids = [r["id"] for r in store.iter_records(0, 2**53, chunk=2)]
    assert ids == [f"n1:call-{n}:1" for n in range(7) if n != 3]


def test_a_bounded_window_drops_the_oldest_records_beyond_max_records(redis_client: redis.Redis) -> None:
    store = CdrStore(redis_client, 3600, max_records=3)
    for n in range(5):
        store.add(record(n))
    assert [r["id"] for r in store.records(0, 2**53)] == [f"n1:call-{n}:1" for n in (2, 3, 4)]
    assert redis_client.exists(keys.cdr("n1:call-0:1")) == 0 and redis_client.zcard(keys.CDRS) == 3


def test_with_an_outbox_a_record_waits_without_ttl_until_drained(redis_client: redis.Redis) -> None:
    outbox = keys.cdr_outbox("n1")
    store = CdrStore(redis_client, 3600, max_records=2, outbox=outbox)
    for n in range(4):
        assert store.add(record(n)) is True
    assert store.add(record(1)) is False  # a replay: not queued twice
    # nothing is dropped while the durable store has not taken it, whatever the bound
    assert store.waiting() == 4 and redis_client.zcard(keys.CDRS) == 4
    assert redis_client.ttl(keys.cdr("n1:call-0:1")) == -1
    pending = store.pending(3)
    assert [r["id"] for r in pending] == [f"n1:call-{n}:1" for n in range(3)]
    assert store.drained(pending) == 2  # acknowledged: the two oldest beyond the bound of 2 go
    assert store.waiting() == 1 and [r["id"] for r in store.records(0, 2**53)] == ["n1:call-2:1", "n1:call-3:1"]
    assert 3500 < redis_client.ttl(keys.cdr("n1:call-2:1")) <= 3600
    assert redis_client.ttl(keys.cdr("n1:call-3:1")) == -1  # still waiting


def test_an_outbox_id_whose_record_is_gone_is_dropped(redis_client: redis.Redis) -> None:
    store = CdrStore(redis_client, 3600, outbox=keys.cdr_outbox("n1"))
    store.add(record(1))
    store.add(record(2))
    redis_client.delete(keys.cdr("n1:call-1:1"))
    assert [r["id"] for r in store.pending(10)] == ["n1:call-2:1"]
    assert store.waiting() == 1


def test_without_an_outbox_nothing_is_queued(redis_client: redis.Redis) -> None:
    store = CdrStore(redis_client, 3600)
    store.add(record(1))
    assert store.pending(10) == [] and store.waiting() == 0 and store.drained([record(1)]) == 0
    assert not list(redis_client.scan_iter(match="edge:cdrs:outbox:*"))


def test_the_script_keeps_its_short_form_for_the_bench_peer(redis_client: redis.Redis) -> None:
    """bench/peer/kamailio.cfg calls cdr_add.lua with 2 keys and 6 arguments: no outbox, no bound."""
    from routing.tables.cdrstore import _LUA

    rec = record(1)
    sha = redis_client.script_load(_LUA.read_text())
    args = [json.dumps(rec), rec["start_ms"], rec["id"], 3600, 0, 86400]
    assert redis_client.evalsha(sha, 2, keys.cdr(rec["id"]), keys.CDRS, *args) == 1
    assert redis_client.evalsha(sha, 2, keys.cdr(rec["id"]), keys.CDRS, *args) == 0
    assert CdrStore(redis_client, 3600).records(0, 2**53) == [rec]


def test_add_many_stores_each_record_once_in_one_write(redis_client: redis.Redis) -> None:
    store = CdrStore(redis_client, 3600)
    assert store.add(record(1)) is True
    assert store.add_many([record(1), record(2), record(3)]) == [False, True, True]  # call-1 was there
    assert [store.get(f"n1:call-{n}:1")["id"] for n in (1, 2, 3)] == ["n1:call-1:1", "n1:call-2:1", "n1:call-3:1"]
    # each new record's cost is added to its trunk's spend of the day, the duplicate's is not
    from routing.call.cdr import utc_day
    assert store.spend("b", utc_day(record(1)["end_ms"])) == 3 * 20_000
    assert store.add_many([]) == []
