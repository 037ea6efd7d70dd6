"""Durable stores of call records (``cdr.store``): PostgreSQL, or a JSON-lines file.

The edge monitor drains each record from redis into one of these
(:mod:`routing.monitor.cdrdrain`); ``edgectl cdr`` reads them back.  Both write a
batch **idempotently, keyed by the record id** (``{node}:{call-id}:{cseq}``,
:func:`routing.call.cdr.record_id`), so a batch written again (the monitor died
or redis failed between the write and the acknowledgement in redis) adds nothing.

* :class:`PostgresRecords`: one row per record in ``cdr.postgres.table``
  (``id`` primary key, ``INSERT ... ON CONFLICT (id) DO NOTHING``, one statement
  and one transaction per batch), the whole record in ``record`` (jsonb) next to
  the columns one filters on.  The table and its index are created when missing.
* :class:`JsonlRecords`: one JSON object per line, appended and ``fsync``'d;
  the ids of the file's tail (the last batches written) are read before each
  batch and skipped.  The file is this node's alone (one writer: the monitor).

psycopg (3) is imported only by :class:`PostgresRecords`: nothing in Kamailio imports this module.
"""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

from routing.tables.store import StoreUnavailable

__all__ = ["RecordSink", "PostgresRecords", "JsonlRecords", "SCHEMA"]

#: the table (``{table}`` is ``cdr.postgres.table``); documented in docs/operations.md#call-records
SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    id         text PRIMARY KEY,
    node       text NOT NULL,
    call_id    text NOT NULL,
    start_ms   bigint NOT NULL,
    end_ms     bigint NOT NULL,
    status     text NOT NULL,
    trunk      text NOT NULL DEFAULT '',
    agent      text NOT NULL DEFAULT '',
    sip_code   integer,
    cost       numeric(20, 6) NOT NULL DEFAULT 0,
    record     jsonb NOT NULL,
    stored_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS {index} ON {table} (start_ms);
"""

_INSERT = """
INSERT INTO {table} (id, node, call_id, start_ms, end_ms, status, trunk, agent, sip_code, cost, record)
SELECT r->>'id', r->>'node', r->>'call_id', (r->>'start_ms')::bigint, (r->>'end_ms')::bigint, r->>'status',
       coalesce(r->>'trunk', ''), coalesce(r->>'agent', ''), (r->>'sip_code')::integer,
       coalesce((r->>'cost')::numeric, 0), r
FROM jsonb_array_elements(%s::jsonb) AS r
ON CONFLICT (id) DO NOTHING
"""


class RecordSink(Protocol):
    """What the drain writes to and ``edgectl cdr`` reads from."""

    def write(self, records: Sequence[Mapping[str, Any]]) -> int: ...
    def iter_records(self, since_ms: int, until_ms: int, trunk: str | None = None) -> Iterator[dict[str, Any]]: ...
    def records(self, since_ms: int, until_ms: int, trunk: str | None = None,
                limit: int | None = None) -> list[dict[str, Any]]: ...
    def get(self, record_id: str) -> dict[str, Any] | None: ...
    def close(self) -> None: ...


class PostgresRecords:
    """Call records in a PostgreSQL table, through psycopg 3.

    Args:
        dsn: libpq connection string or URI.
        table: table name (``[a-z_][a-z0-9_]*``, checked by the settings).
        connect_timeout_s: connection timeout (s).

    The connection is opened on first use and opened again after a failure.
    """

    def __init__(self, dsn: str, table: str = "call_records", connect_timeout_s: int = 5) -> None:
        self.dsn = dsn
        self.table = table
        self.connect_timeout_s = connect_timeout_s
        self._conn: Any = None

    def _sql(self, text: str) -> Any:
        from psycopg import sql

        return sql.SQL(text).format(table=sql.Identifier(self.table), index=sql.Identifier(f"{self.table}_start_ms"))

    def _connection(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            try:
                conn = psycopg.connect(self.dsn, connect_timeout=self.connect_timeout_s, autocommit=False)
            except psycopg.Error as exc:
                raise StoreUnavailable(f"postgres: {exc}".strip()) from exc
            try:
                with conn.transaction():
                    conn.execute(self._sql(SCHEMA))
            except psycopg.Error as exc:
                conn.close()
                raise StoreUnavailable(f"postgres: {exc}".strip()) from exc
            self._conn = conn
        return self._conn

    def _run(self, fn: Any) -> Any:
        import psycopg

        conn = self._connection()
        try:
            with conn.transaction():
                return fn(conn)
        except psycopg.Error as exc:
            self.close()
            raise StoreUnavailable(f"postgres: {exc}".strip()) from exc

    def write(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Insert ``records`` in one transaction; returns how many were new (the rest were there).

        Raises:
            StoreUnavailable: the database is unreachable or failed the transaction (nothing written).
        """
        from psycopg.types.json import Jsonb

        if not records:
            return 0
        payload = Jsonb([dict(r) for r in records])
        return int(self._run(lambda conn: conn.execute(self._sql(_INSERT), (payload,)).rowcount))

    def iter_records(self, since_ms: int, until_ms: int, trunk: str | None = None,
                     chunk: int = 500) -> Iterator[dict[str, Any]]:
        """Records whose start is in ``[since_ms, until_ms]``, oldest first (then by id), through a
        server-side cursor ``chunk`` rows at a time; only ``trunk``'s when given.

        Raises:
            StoreUnavailable: the database is unreachable.
        """
        where, params = self._where(since_ms, until_ms, trunk)
        import psycopg

        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor(name="edge_cdr_export") as cur:
                cur.itersize = chunk
                cur.execute(self._sql(f"SELECT record FROM {{table}} WHERE {where} ORDER BY start_ms, id"), params)
                for (record,) in cur:
                    yield record
        except psycopg.Error as exc:
            self.close()
            raise StoreUnavailable(f"postgres: {exc}".strip()) from exc

    def records(self, since_ms: int, until_ms: int, trunk: str | None = None,
                limit: int | None = None) -> list[dict[str, Any]]:
        """:meth:`iter_records` as a list, at most the newest ``limit`` (oldest first).

        Raises:
            StoreUnavailable: the database is unreachable.
        """
        if not limit:
            return list(self.iter_records(since_ms, until_ms, trunk))
        where, params = self._where(since_ms, until_ms, trunk)
        query = self._sql(f"SELECT record FROM {{table}} WHERE {where} ORDER BY start_ms DESC, id DESC LIMIT %s")
        rows = self._run(lambda conn: conn.execute(query, (*params, limit)).fetchall())
        return [row[0] for row in reversed(rows)]

    def get(self, record_id: str) -> dict[str, Any] | None:
        """One record by id, or None.

        Raises:
            StoreUnavailable: the database is unreachable.
        """
        query = self._sql("SELECT record FROM {table} WHERE id = %s")
        row = self._run(lambda conn: conn.execute(query, (record_id,)).fetchone())
        return None if row is None else row[0]

    def count(self) -> int:
        """Rows in the table (tests, operators' checks)."""
        return int(self._run(lambda conn: conn.execute(self._sql("SELECT count(*) FROM {table}")).fetchone()[0]))

    @staticmethod
    def _where(since_ms: int, until_ms: int, trunk: str | None) -> tuple[str, tuple[Any, ...]]:
        if trunk is None:
            return "start_ms BETWEEN %s AND %s", (since_ms, until_ms)
        return "start_ms BETWEEN %s AND %s AND trunk = %s", (since_ms, until_ms, trunk)

    def close(self) -> None:
        """Close the connection (opened again on next use)."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


class JsonlRecords:
    """Call records as JSON lines in ``path`` (a log shipper tails it; rotate it with
    ``copytruncate`` or by moving it: the next write creates it again).

    Args:
        path: the file, created 0640 (its directory 0750) when missing.
        tail_bytes: how much of the file's end :meth:`write` reads for the ids already written
            (at least the last batch: ``cdr.drain_batch`` x about 1.5 KB).
    """

    def __init__(self, path: str | Path, tail_bytes: int = 4 << 20) -> None:
        self.path = Path(path)
        self.tail_bytes = tail_bytes

    def _tail_ids(self) -> set[str]:
        try:
            with open(self.path, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - self.tail_bytes))
                lines = handle.read().split(b"\n")
        except FileNotFoundError:
            return set()
        if len(lines) > 1 and size > self.tail_bytes:
            lines = lines[1:]  # the first may be cut
        ids = set()
        for line in lines:
            try:
                ids.add(str(json.loads(line)["id"]))
            except (ValueError, KeyError, TypeError):
                continue
        return ids

    def write(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Append the records whose id is not in the file's tail, one line each, then ``fsync``;
        returns how many lines were written.

        Raises:
            StoreUnavailable: the file cannot be written (disk full, permissions): nothing is
                acknowledged, the records stay in redis.
        """
        try:
            seen = self._tail_ids()
            fresh = [r for r in records if str(r["id"]) not in seen]
            if not fresh:
                return 0
            self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in fresh).encode()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                view = memoryview(data)
                while view:  # a regular file takes it whole; a short write is finished, not cut
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            return len(fresh)
        except OSError as exc:
            raise StoreUnavailable(f"{self.path}: {exc.strerror or exc}") from exc

    def iter_records(self, since_ms: int, until_ms: int, trunk: str | None = None) -> Iterator[dict[str, Any]]:
        """Records of the file whose start is in ``[since_ms, until_ms]``, in the order written
        (drain order: each batch oldest first); only ``trunk``'s when given.  Lines that are not
        JSON are skipped; rotated files are not read."""
        try:
            handle = open(self.path, encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return
        with handle:
            for line in handle:
                try:
                    rec = json.loads(line)
                    start = int(rec["start_ms"])
                except (ValueError, KeyError, TypeError):
                    continue
                if since_ms <= start <= until_ms and (trunk is None or rec.get("trunk") == trunk):
                    yield rec

    def records(self, since_ms: int, until_ms: int, trunk: str | None = None,
                limit: int | None = None) -> list[dict[str, Any]]:
        """:meth:`iter_records` as a list, the last ``limit`` when given."""
        out: collections.deque[dict[str, Any]] = collections.deque(maxlen=limit or None)
        out.extend(self.iter_records(since_ms, until_ms, trunk))
        return list(out)

    def get(self, record_id: str) -> dict[str, Any] | None:
        """One record by id (a scan of the file), or None."""
        return next((r for r in self.iter_records(0, 2**63 - 1) if r.get("id") == record_id), None)

    def close(self) -> None:
        """Nothing held open between writes."""
