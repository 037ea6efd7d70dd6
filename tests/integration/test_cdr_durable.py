"""Call records at scale against the running edge with SIPp peers and a real PostgreSQL server.

Proves: with ``cdr.store: postgres`` the records of real calls (answered, refused, failed) reach
PostgreSQL exactly once, redis keeps only ``cdr.redis_max_records`` of them, and ``edgectl cdr``
reads the database; a batch written again (its acknowledgement lost) adds nothing; a PostgreSQL
outage loses no record and duplicates none (the exporter shows them waiting); records spooled while redis was down reach
PostgreSQL once, a replayed duplicate included; ``cdr.store: jsonl`` writes each record on one
line, once.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Iterator

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from routing.cli import main
from routing.ops import services
from routing.ops.cdrsettings import Cdr
from routing.tables import keys
from routing.tables.cdrsinks import PostgresRecords
from routing.tables.cdrstore import Spool
from tests.helpers import free_port, wait_until
from tests.postgres import PgServer
from tests.sipp import reject_uac_scenario, reply_uas_scenario, uac, uas

from .conftest import AGENT_IP, CARRIER_A, CARRIER_B, EDGE_IP, STRANGER, Edge
from .test_call_records import DEST, GW_PORT, SIMPLE_UAC, SIMPLE_UAS, place, provision, today


@contextlib.contextmanager
def cdr_settings(edge: Edge, cdr: Cdr) -> Iterator[Edge]:
    """Kamailio (its records go to the outbox) and the monitor (it drains it) restarted with ``cdr``;
    both restarted with the usual settings afterwards."""
    usual = edge.settings
    edge.settings = usual.model_copy(update={"cdr": cdr})
    try:
        services.restart(edge.settings, "kamailio")
        services.restart(edge.settings, "monitor")
        yield edge
    finally:
        edge.settings = usual
        services.restart(usual, "kamailio")
        services.restart(usual, "monitor")


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    server = PgServer(EDGE_IP, free_port(EDGE_IP))
    try:
        server.init().start()
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def pg_edge(edge: Edge, pg: PgServer) -> Iterator[Edge]:
    cdr = Cdr.model_validate({**edge.settings.cdr.model_dump(), "store": "postgres", "postgres": {"dsn": pg.dsn},
                              "redis_max_records": 2, "drain_interval_ms": 200})
    with cdr_settings(edge, cdr):
        yield edge


@pytest.fixture
def db(pg_edge: Edge, clean_edge: Edge, pg: PgServer) -> Iterator[str]:
    """The database's DSN, the records table emptied first."""
    sink = PostgresRecords(pg.dsn)
    sink.count()  # the table made as the monitor makes it on its first write
    sink.close()
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE call_records")
    yield pg.dsn


def query(dsn: str, sql: str) -> list[tuple]:
    """Rows of ``sql`` over a connection of its own (an outage of the server cuts every connection)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def ids_in(dsn: str) -> list[str]:
    """Every row's id, duplicates included (the primary key makes a duplicate an error anyway)."""
    return sorted(row[0] for row in query(dsn, "SELECT id FROM call_records"))


def outbox(edge: Edge) -> int:
    return edge.redis.zcard(keys.cdr_outbox(edge.settings.node))


def settings_file(edge: Edge) -> Path:
    path = edge.workdir / "durable.yaml"
    path.write_text(yaml.safe_dump(edge.settings.model_dump(mode="json")))
    return path


def test_records_of_real_calls_reach_postgres_once_and_redis_keeps_a_bounded_window(
        db: str, clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    since = int(time.time() * 1000) - 1
    a = uas(edge.workdir / "a", CARRIER_A, GW_PORT, scenario=reply_uas_scenario(edge.workdir, 503), rtp_echo=False)
    b = uas(edge.workdir / "b", CARRIER_B, GW_PORT, scenario=SIMPLE_UAS, answer_ms=100)
    agent = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, DEST, scenario=SIMPLE_UAC, hold_ms=500)
    assert agent.wait() == 0, agent.output()
    assert a.wait() == 0 and b.wait() == 0
    assert place(edge, STRANGER) == (403, "Source Not Allowed")
    busy = uas(edge.workdir / "a2", CARRIER_A, GW_PORT, scenario=reply_uas_scenario(edge.workdir, 486), rtp_echo=False)
    assert place(edge, AGENT_IP) == (486, "Test Reply 486")
    busy.wait()

    wait_until(lambda: len(ids_in(db)) == 3 and outbox(edge) == 0, timeout=20,
               what=f"3 records in PostgreSQL ({ids_in(db)}), outbox empty ({outbox(edge)})")
    rows = {r[0]: r[1:] for r in query(db, "SELECT id, status, sip_code, trunk, cost, record FROM call_records")}
    by_status = {status: (rid, code, trunk, cost, rec) for rid, (status, code, trunk, cost, rec) in rows.items()}
    assert set(by_status) == {"answered", "rejected", "failed"}
    rid, code, trunk, cost, rec = by_status["answered"]
    assert (code, trunk, str(cost), rec["id"]) == (200, "carrier-b", "0.020000", rid)
    assert [g["result"] for g in rec["gateways"]] == ["503", "200"]
    assert by_status["rejected"][4]["reject_tag"] == "acl_source" and by_status["failed"][1] == 486
    # redis keeps the newest 2 (cdr.redis_max_records), each with its retention now that it is stored
    kept = edge.redis.zrange(keys.CDRS, 0, -1)
    assert len(kept) == 2 and set(kept) <= set(rows)
    assert all(0 < edge.redis.ttl(keys.cdr(k)) <= 14 * 86400 for k in kept)
    assert edge.redis.get(keys.spend("carrier-b", today())) == "20000"

    # edgectl cdr reads the database: all 3, though redis holds 2
    runner = CliRunner()
    since_arg = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since / 1000 - 1))
    listed = runner.invoke(main, ["--settings", str(settings_file(edge)), "cdr", "list", "--since", since_arg, "--json"])
    assert listed.exit_code == 0, listed.output
    assert sorted(r["id"] for r in json.loads(listed.output)) == sorted(rows)

    # the acknowledgement lost (monitor killed between the INSERT and the outbox update): written again, no row added
    edge.redis.zadd(keys.cdr_outbox(edge.settings.node), {rid: 1 for rid in kept})
    for rid in kept:
        edge.redis.persist(keys.cdr(rid))
    wait_until(lambda: outbox(edge) == 0, timeout=10, what="the re-queued records drained again")
    assert ids_in(db) == sorted(rows)


def test_a_postgres_outage_loses_no_record_and_duplicates_none(db: str, clean_edge: Edge,
                                                              pg: PgServer) -> None:
    edge = clean_edge
    provision(edge)
    b = uas(edge.workdir / "b", CARRIER_B, GW_PORT, scenario=SIMPLE_UAS, answer_ms=50, calls=3)
    edge.redis.delete(keys.route("+44"))
    edge.route("+44", "carrier-b", "0.0200")
    log = Path(edge.settings.run_dir) / "monitor.log"
    pg.stop()
    try:
        caller = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, DEST, scenario=SIMPLE_UAC, hold_ms=200,
                     calls=3, rate=5)
        assert caller.wait() == 0, caller.output()
        b.wait()
        # every record waits in redis, none dropped by the bound of 2 while the database is down
        wait_until(lambda: outbox(edge) == 3, timeout=15, what=f"3 records in the outbox ({outbox(edge)})")
        wait_until(lambda: "kept in redis, retrying" in log.read_text(errors="replace"), timeout=15,
                   what="the monitor to log the outage")
        assert edge.redis.zcard(keys.CDRS) == 3
        assert all(edge.redis.ttl(keys.cdr(k)) == -1 for k in edge.redis.zrange(keys.CDRS, 0, -1))
        assert "byoc_edge_cdr_outbox_records 3.0" in edge.metrics("exporter")
    finally:
        pg.start()
    wait_until(lambda: len(ids_in(db)) == 3 and outbox(edge) == 0, timeout=45,
               what=f"3 records in PostgreSQL after the outage ({ids_in(db)}, outbox {outbox(edge)})")
    assert "durable store reachable again: 3 call record(s) written" in log.read_text(errors="replace")
    assert edge.redis.zcard(keys.CDRS) == 2
    assert len(set(ids_in(db))) == 3


def test_records_spooled_while_redis_is_down_reach_postgres_once(db: str, clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    spool = Spool(edge.settings.cdr_spool_path)
    b = uas(edge.workdir / "b", CARRIER_B, GW_PORT, scenario=SIMPLE_UAS, answer_ms=50, calls=3)
    a = uas(edge.workdir / "a", CARRIER_A, GW_PORT, scenario=reply_uas_scenario(edge.workdir, 503), rtp_echo=False,
            calls=3)
    agent = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, DEST, scenario=SIMPLE_UAC, hold_ms=3000, calls=3,
                rate=10)

    def all_answered() -> bool:
        hashes = [edge.redis.hgetall(k) for k in edge.call_records()]
        return len(hashes) == 3 and all(h.get("answer_ms") for h in hashes)

    wait_until(all_answered, timeout=15, what="3 calls answered")
    services._stop(Path(edge.settings.run_dir), "redis")
    try:
        assert agent.wait() == 0, agent.output()  # the calls end while redis is down
        wait_until(lambda: spool.pending() == 3, timeout=15, what=f"3 spooled records ({spool.pending()})")
    finally:
        services.up(edge.settings)  # only redis is restarted
    spooled_records = list(spool.records())
    spooled = sorted(r["id"] for r in spooled_records)
    wait_until(lambda: ids_in(db) == spooled and outbox(edge) == 0, timeout=30,
               what=f"the 3 spooled records in PostgreSQL ({ids_in(db)})")
    spool.append(spooled_records[0])  # replayed again: an interrupted replay
    wait_until(lambda: spool.pending() == 0, timeout=20, what="duplicate replayed")
    # redis may have let the record go already (cdr.redis_max_records 2): then it is queued again, and
    # PostgreSQL keeps the row it has
    wait_until(lambda: outbox(edge) == 0, timeout=10, what="the duplicate drained")
    assert ids_in(db) == spooled
    assert "replayed spooled call records" in edge.log()
    a.stop()
    b.wait()
    for key in [*edge.redis.scan_iter(match=keys.LEASE_PATTERN), *edge.call_records()]:
        edge.redis.delete(key)


def test_jsonl_store_writes_each_record_on_one_line_once(clean_edge: Edge) -> None:
    edge = clean_edge
    path = edge.workdir / "cdr" / "records.jsonl"
    cdr = Cdr.model_validate({**edge.settings.cdr.model_dump(), "store": "jsonl", "jsonl_path": path,
                              "drain_interval_ms": 200})
    with cdr_settings(edge, cdr):
        provision(edge)
        assert place(edge, STRANGER) == (403, "Source Not Allowed")
        busy = uas(edge.workdir / "a", CARRIER_A, GW_PORT, scenario=reply_uas_scenario(edge.workdir, 486),
                   rtp_echo=False)
        assert place(edge, AGENT_IP) == (486, "Test Reply 486")
        busy.wait()

        def lines() -> list[dict]:
            return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

        wait_until(lambda: len(lines()) == 2 and outbox(edge) == 0, timeout=20, what=f"2 lines in {path}: {lines()}")
        written = lines()
        assert sorted(r["status"] for r in written) == ["failed", "rejected"]
        assert oct(path.stat().st_mode & 0o777) == "0o640"
        # the acknowledgement lost: the batch is written again, the file does not grow
        edge.redis.zadd(keys.cdr_outbox(edge.settings.node), {r["id"]: 1 for r in written})
        wait_until(lambda: outbox(edge) == 0, timeout=10, what="the re-queued records drained again")
        assert lines() == written
        listed = CliRunner().invoke(main, ["--settings", str(settings_file(edge)), "cdr", "list", "--json"])
        assert listed.exit_code == 0 and [r["id"] for r in json.loads(listed.output)] == [r["id"] for r in written]
