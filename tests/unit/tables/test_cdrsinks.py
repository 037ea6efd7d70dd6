"""Durable stores of call records: PostgreSQL (a real server, tests/postgres.py) and JSON lines.
Both write a batch idempotently by record id and read records back by window, trunk and id."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import psycopg
import pytest

from routing.tables.cdrsinks import JsonlRecords, PostgresRecords
from routing.tables.store import StoreUnavailable


def record(n: int, trunk: str = "b", start_ms: int = 1_700_000_000_000) -> dict:
    return {"id": f"n1:call-{n}:1", "node": "n1", "call_id": f"call-{n}", "cseq": "1", "status": "answered",
            "start_ms": start_ms + n, "end_ms": start_ms + n + 5000, "answer_ms": None, "trunk": trunk, "agent": "bot",
            "sip_code": 200, "cost": "0.020000", "gateways": [{"gateway": "gw", "result": "200"}], "media": {}}


def test_postgres_writes_a_batch_once_and_reads_it_back(postgres_dsn: str) -> None:
    sink = PostgresRecords(postgres_dsn)
    batch = [record(n, trunk="a" if n % 2 else "b") for n in range(5)]
    assert sink.write(batch) == 5
    assert sink.write(batch) == 0  # the same batch again (no acknowledgement reached redis): nothing new
    assert sink.write([*batch[3:], record(5)]) == 1
    assert sink.count() == 6
    assert sink.records(0, 2**62) == [*batch, record(5)]
    assert [r["id"] for r in sink.records(0, 2**62, trunk="a")] == ["n1:call-1:1", "n1:call-3:1"]
    assert [r["id"] for r in sink.records(0, 2**62, limit=2)] == ["n1:call-4:1", "n1:call-5:1"]
    assert list(sink.iter_records(batch[1]["start_ms"], batch[2]["start_ms"])) == batch[1:3]
    assert sink.get("n1:call-2:1") == batch[2] and sink.get("nope") is None
    with psycopg.connect(postgres_dsn) as conn:
        row = conn.execute("SELECT node, call_id, start_ms, status, trunk, sip_code, cost FROM call_records "
                           "WHERE id = 'n1:call-1:1'").fetchone()
    assert row == ("n1", "call-1", batch[1]["start_ms"], "answered", "a", 200, __import__("decimal").Decimal("0.02"))
    sink.close()


def test_postgres_unreachable_raises_store_unavailable_and_recovers(postgres_server, postgres_dsn: str) -> None:
    dead = PostgresRecords("host=127.0.0.1 port=1 user=edge dbname=postgres", connect_timeout_s=1)
    with pytest.raises(StoreUnavailable, match="postgres"):
        dead.write([record(1)])
    sink = PostgresRecords(postgres_dsn)
    assert sink.write([record(1)]) == 1
    postgres_server.stop()
    try:
        with pytest.raises(StoreUnavailable):
            sink.write([record(2)])
    finally:
        postgres_server.start()
    assert sink.write([record(2)]) == 1  # a new connection after the outage
    assert sink.count() == 2
    sink.close()


def test_jsonl_appends_each_record_once_readable_only_by_the_operator(tmp_path: Path) -> None:
    path = tmp_path / "cdr" / "records.jsonl"
    sink = JsonlRecords(path)
    batch = [record(n) for n in range(3)]
    assert sink.write(batch) == 3
    assert sink.write(batch) == 0
    assert sink.write([batch[2], record(3)]) == 1
    lines = path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [f"n1:call-{n}:1" for n in range(4)]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o750
    assert sink.records(0, 2**62, limit=2) == [record(2), record(3)]
    assert sink.get("n1:call-1:1") == record(1)


def test_jsonl_dedupes_against_the_tail_only_and_skips_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    sink = JsonlRecords(path, tail_bytes=600)
    for n in range(10):
        sink.write([record(n)])
    with open(path, "a") as handle:
        handle.write('{"id": "torn')  # a write cut by a crash
    assert sink.write([record(9)]) == 0  # in the tail
    assert len(list(sink.iter_records(0, 2**62))) == 10
    assert sink.write([record(0)]) == 1  # long out of the tail: the tail is the last batches only


def test_jsonl_unwritable_raises_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreUnavailable):
        JsonlRecords(tmp_path / "file" / "records.jsonl").write([record(1)])
