"""edgectl cdr through click's CliRunner against a real redis: list, show, export (streamed), totals, replay."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from routing.call.cdr import CallFacts, build_record
from routing.tables.cdrstore import CdrStore, Spool
from routing.cli import main
from decimal import Decimal

DAY = 1_795_219_200_000  # 2026-11-21T00:00:00Z (ms)


@pytest.fixture
def settings_file(tmp_path: Path, redis_server: tuple[str, int], redis_client: redis.Redis) -> Path:
    host, port = redis_server
    path = tmp_path / "edge.yaml"
    path.write_text(f"redis: {{host: {host}, port: {port}}}\ncdr: {{spool_dir: {tmp_path / 'spool'}}}\n",
                    encoding="utf-8")
    return path


@pytest.fixture
def edgectl(settings_file: Path):
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(main, ["--settings", str(settings_file), *args], catch_exceptions=False)

    return run


def make(n: int, trunk: str, answered: bool = True) -> dict:
    start = DAY + 3_600_000 + n * 60_000
    return build_record(CallFacts(
        node="n1", call_id=f"c{n}", cseq="1", start_ms=start, end_ms=start + 65_000, sip_code=200 if answered else 486,
        sip_reason="OK" if answered else "Busy Here", direction="termination", trunk=trunk, agent="bot",
        number="+442071838750", answer_ms=start + 5_000 if answered else None, rate=Decimal("0.02"),
        increment=(60, 60), tried=[f"{trunk} 192.0.2.1:5060={200 if answered else 486}"],
    ))


@pytest.fixture
def stored(redis_client: redis.Redis) -> list[dict]:
    store = CdrStore(redis_client, 10 * 365 * 86400)
    recs = [make(n, "a" if n % 2 else "b", answered=n != 3) for n in range(7)]
    for rec in recs:
        store.add(rec)
    return recs


WINDOW = ["--since", "2026-11-21", "--until", "2026-11-22"]


def test_export_csv_and_json_stream_every_record(edgectl, stored: list[dict], tmp_path: Path) -> None:
    result = edgectl("cdr", "export", "--format", "csv", *WINDOW)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["id"] for r in rows] == [r["id"] for r in stored]
    assert rows[0]["start"] == "2026-11-21T01:00:00.000Z" and rows[0]["billable_s"] == "60"
    out = tmp_path / "x.json"
    result = edgectl("cdr", "export", "--format", "json", *WINDOW, "--trunk", "a", "-o", str(out))
    assert result.exit_code == 0 and "3 record(s) written" in result.output
    assert [r["id"] for r in json.loads(out.read_text())] == [r["id"] for r in stored if r["trunk"] == "a"]
    empty = edgectl("cdr", "export", "--format", "json", "--since", "2020-01-01", "--until", "2020-01-02")
    assert json.loads(empty.output) == []


def test_list_totals_and_show(edgectl, stored: list[dict]) -> None:
    listed = json.loads(edgectl("cdr", "list", *WINDOW, "--limit", "2", "--json").output)
    assert [r["id"] for r in listed] == [r["id"] for r in stored[-2:]]
    totals = {row["trunk"]: row for row in json.loads(edgectl("cdr", "totals", *WINDOW, "--json").output)}
    assert totals["a"] == {"trunk": "a", "calls": 3, "answered": 2, "billable_minutes": "2.00",
                           "talk_minutes": "2.00", "cost": "0.040000"}
    assert totals["b"]["calls"] == 4 and totals["b"]["cost"] == "0.080000"
    assert json.loads(edgectl("cdr", "show", stored[0]["id"]).output) == stored[0]


def test_errors_are_one_line(edgectl, stored: list[dict]) -> None:
    for args in (["cdr", "show", "nope"], ["cdr", "list", "--since", "tomorrow-ish"],
                 ["cdr", "totals", "--since", "2026-11-22", "--until", "2026-11-21"]):
        result = edgectl(*args)
        assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output


def test_replay_stores_the_spool(edgectl, redis_client: redis.Redis, tmp_path: Path) -> None:
    Spool(tmp_path / "spool").append(make(1, "a"))
    Spool(tmp_path / "spool").append(make(1, "a"))
    result = edgectl("cdr", "replay")
    assert result.exit_code == 0
    assert result.output.strip() == "1 record(s) stored, 1 already present, 0 still spooled"
    assert CdrStore(redis_client, 3600).get("n1:c1:1") is not None


def test_trunk_show_has_the_spend_of_today(edgectl, redis_client: redis.Redis) -> None:
    import time

    from routing.tables import admin, keys
    from routing.tables.model import Trunk

    admin.put_trunk(redis_client, Trunk("telnyx", daily_spend_cap=Decimal("5"), inbound_rate=Decimal("0.0085")))
    redis_client.set(keys.spend("telnyx", time.strftime("%Y%m%d", time.gmtime())), 1_250_000)
    shown = json.loads(edgectl("trunk", "show", "telnyx", "--json").output)
    assert (shown["spend_today"], shown["daily_spend_cap"], shown["inbound_rate"]) == ("1.250000", "5", "0.0085")
    table = edgectl("trunk", "show", "telnyx").output
    assert "spend today (UTC)" in table and "1.250000" in table


def durable_edgectl(tmp_path: Path, redis_server: tuple[str, int], cdr: str):
    host, port = redis_server
    path = tmp_path / "durable.yaml"
    path.write_text(f"node: n1\nredis: {{host: {host}, port: {port}}}\ncdr: {{spool_dir: {tmp_path / 'spool'}, {cdr}}}\n",
                    encoding="utf-8")
    runner = CliRunner()
    return lambda *args: runner.invoke(main, ["--settings", str(path), *args], catch_exceptions=False)


@pytest.mark.parametrize("store", ["postgres", "jsonl"])
def test_with_a_durable_store_cdr_reads_it(store: str, tmp_path: Path, redis_server: tuple[str, int],
                                          redis_client: redis.Redis, request: pytest.FixtureRequest) -> None:
    from routing.tables.cdrsinks import JsonlRecords, PostgresRecords

    if store == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        sink = PostgresRecords(dsn)
        run = durable_edgectl(tmp_path, redis_server, f"store: postgres, postgres: {{dsn: '{dsn}'}}")
    else:
        sink = JsonlRecords(tmp_path / "records.jsonl")
        run = durable_edgectl(tmp_path, redis_server, f"store: jsonl, jsonl_path: {sink.path}")
    recs = [make(n, "a" if n % 2 else "b", answered=n != 3) for n in range(5)]
    sink.write(recs[:4])  # the durable store holds 4; the 5th is still in redis, not drained
    CdrStore(redis_client, 10 * 365 * 86400).add(recs[4])
    listed = json.loads(run("cdr", "list", *WINDOW, "--json").output)
    assert [r["id"] for r in listed] == [r["id"] for r in recs[:4]]
    exported = list(csv.DictReader(io.StringIO(run("cdr", "export", "--format", "csv", *WINDOW, "--trunk", "a").output)))
    assert [r["id"] for r in exported] == [recs[1]["id"], recs[3]["id"]]
    totals = {row["trunk"]: row for row in json.loads(run("cdr", "totals", *WINDOW, "--json").output)}
    assert (totals["a"]["calls"], totals["b"]["calls"]) == (2, 2)
    assert json.loads(run("cdr", "show", recs[2]["id"]).output) == recs[2]
    assert json.loads(run("cdr", "show", recs[4]["id"]).output) == recs[4]  # not drained yet: found in redis
    sink.close()


def test_an_unreachable_database_is_a_one_line_error(tmp_path: Path, redis_server: tuple[str, int]) -> None:
    run = durable_edgectl(tmp_path, redis_server,
                          "store: postgres, postgres: {dsn: 'host=127.0.0.1 port=1 user=x dbname=x', connect_timeout_s: 1}")
    for args in (["cdr", "list", *WINDOW], ["cdr", "export", *WINDOW], ["cdr", "show", "x"]):
        result = run(*args)
        assert result.exit_code == 1, result.output
        assert "call-record store unreachable: postgres" in result.output


def test_backfill_writes_what_redis_holds_to_the_durable_store_once(tmp_path: Path, redis_server: tuple[str, int],
                                                                    redis_client: redis.Redis, postgres_dsn: str) -> None:
    from routing.tables.cdrsinks import PostgresRecords

    recs = [make(n, "a") for n in range(5)]
    store = CdrStore(redis_client, 10 * 365 * 86400)
    for rec in recs:
        store.add(rec)  # written before cdr.store was set: no outbox
    sink = PostgresRecords(postgres_dsn)
    sink.write(recs[:1])
    run = durable_edgectl(tmp_path, redis_server, f"store: postgres, drain_batch: 2, postgres: {{dsn: '{postgres_dsn}'}}")
    result = run("cdr", "backfill")
    assert result.exit_code == 0, result.output
    assert "4 record(s) written to the postgres store, 1 already there" in result.output
    assert sink.records(0, 2**62) == recs
    again = run("cdr", "backfill", "--since", "2026-11-21T01:02Z")
    assert "0 record(s) written to the postgres store, 3 already there" in again.output
    sink.close()
    plain = durable_edgectl(tmp_path, redis_server, "store: redis")("cdr", "backfill")
    assert plain.exit_code == 1 and "no durable store" in plain.output
