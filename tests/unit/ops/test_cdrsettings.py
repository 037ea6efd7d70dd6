"""The ``cdr`` settings: the redis window, the durable store and its validation (errors name the field),
and what they make: the node's redis records, the durable store, the plugin's runtime settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
import yaml

from routing.ops import render
from routing.ops.cdrsettings import durable_sink, redis_records
from routing.ops.settings import Settings, SettingsError, load_settings
from routing.tables import keys
from routing.tables.cdrsinks import JsonlRecords, PostgresRecords


def load(tmp_path: Path, cdr: dict) -> Settings:
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump({"node": "n7", "run_dir": str(tmp_path / "run"), "cdr": cdr}))
    return load_settings(path)


def test_defaults_keep_records_in_redis_only_with_a_bounded_window(tmp_path: Path) -> None:
    s = load(tmp_path, {})
    assert (s.cdr.store, s.cdr.durable, s.cdr.redis_max_records) == ("redis", False, 100_000)
    assert durable_sink(s) is None
    runtime = render.runtime_settings(s)
    assert (runtime.cdr_outbox, runtime.cdr_max_records) == ("", 100_000)


def test_postgres_store_needs_its_dsn_and_a_valid_table(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"cdr: Value error, cdr.postgres is required when cdr.store is postgres"):
        load(tmp_path, {"store": "postgres"})
    with pytest.raises(SettingsError, match=r"cdr.postgres.dsn: Field required"):
        load(tmp_path, {"store": "postgres", "postgres": {}})
    with pytest.raises(SettingsError, match=r"cdr.postgres.table: String should match pattern"):
        load(tmp_path, {"store": "postgres", "postgres": {"dsn": "host=db", "table": "Robert'); DROP"}})
    with pytest.raises(SettingsError, match=r"cdr.store: Input should be 'redis', 'postgres' or 'jsonl'"):
        load(tmp_path, {"store": "mysql"})
    with pytest.raises(SettingsError, match=r"cdr.redis_max_records: Input should be greater than or equal to 1"):
        load(tmp_path, {"redis_max_records": 0})


def test_postgres_store_drains_the_nodes_outbox(tmp_path: Path) -> None:
    s = load(tmp_path, {"store": "postgres", "postgres": {"dsn": "host=db1 dbname=edge", "table": "cdrs"},
                        "redis_max_records": 500})
    sink = durable_sink(s)
    assert isinstance(sink, PostgresRecords) and (sink.dsn, sink.table) == ("host=db1 dbname=edge", "cdrs")
    runtime = render.runtime_settings(s)
    assert (runtime.cdr_outbox, runtime.cdr_max_records) == (keys.cdr_outbox("n7"), 500)
    store = redis_records(s, redis.Redis())
    assert (store.outbox, store.max_records, store.retention_s) == ("edge:cdrs:outbox:n7", 500, 14 * 86400)


def test_jsonl_store_defaults_to_a_file_in_the_run_dir(tmp_path: Path) -> None:
    s = load(tmp_path, {"store": "jsonl"})
    sink = durable_sink(s)
    assert isinstance(sink, JsonlRecords) and sink.path == tmp_path / "run" / "cdr" / "records.jsonl"
    assert durable_sink(load(tmp_path, {"store": "jsonl", "jsonl_path": "/var/log/edge/cdr.jsonl"})).path == Path(
        "/var/log/edge/cdr.jsonl")
    assert render.runtime_settings(s).cdr_outbox == keys.cdr_outbox("n7")
