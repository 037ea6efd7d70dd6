"""``edgectl cdr``: call records (list, export as CSV or JSON, totals per trunk, spool replay, backfill
of the durable store).

Records are read from the durable store when ``cdr.store`` is postgres or jsonl (a record reaches it
within ``cdr.drain_interval_ms`` of its call's end; ``show`` also finds one still in redis), else
from redis (the window of ``cdr.retention_days`` and ``cdr.redis_max_records``)."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import click
from rich.console import Console
from rich.table import Table

from routing.call.cdr import FIELDS, totals
from routing.ops.cdrsettings import durable_sink, redis_records
from routing.tables.cdrsinks import RecordSink
from routing.tables.cdrstore import CdrStore, Spool, parse_time
from routing.tables.model import DataError
from routing.tables.store import StoreUnavailable
from . import AppContext, emit_json, handle_errors, pass_app

__all__ = ["cdr", "iso", "csv_rows", "csv_text", "json_chunks"]


def iso(ms: Any) -> str:
    """ms since epoch -> ``2026-11-21T18:02:03.250Z`` (UTC); empty for None."""
    if ms in (None, ""):
        return ""
    seconds, millis = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def csv_rows(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Records as CSV lines (RFC 4180): a header row of :data:`routing.call.cdr.FIELDS` plus ``start``,
    ``answer``, ``end`` in ISO 8601 UTC; lists and dicts as JSON text."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")

    def take() -> str:
        text = out.getvalue()
        out.seek(0)
        out.truncate()
        return text

    writer.writerow([*FIELDS, "start", "answer", "end"])
    yield take()
    for rec in records:
        row = []
        for name in FIELDS:
            value = rec.get(name)
            if isinstance(value, (list, dict)):
                value = json.dumps(value, separators=(",", ":"))
            row.append("" if value is None else value)
        writer.writerow([*row, iso(rec.get("start_ms")), iso(rec.get("answer_ms")), iso(rec.get("end_ms"))])
        yield take()


def csv_text(records: Iterable[dict[str, Any]]) -> str:
    """:func:`csv_rows` as one string."""
    return "".join(csv_rows(records))


def json_chunks(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Records as one JSON array, one record per chunk."""
    yield "["
    for n, rec in enumerate(records):
        yield ("," if n else "") + "\n  " + json.dumps(rec)
    yield "\n]\n"


def _window(since: str, until: str) -> tuple[int, int]:
    try:
        start, end = parse_time(since), parse_time(until)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if start > end:
        raise DataError(f"--since {since!r} is after --until {until!r}")
    return start, end


def _store(app: AppContext) -> CdrStore:
    return redis_records(app.settings, app.redis())


def _reader(app: AppContext) -> CdrStore | RecordSink:
    """Where records are read: the durable store when one is configured (closed with the
    command), else redis."""
    sink = durable_sink(app.settings)
    if sink is None:
        return _store(app)
    click.get_current_context().call_on_close(sink.close)
    return sink


def _streamed(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """``records`` with the durable store's failure as a one-line error (the iteration is lazy)."""
    try:
        yield from records
    except StoreUnavailable as exc:
        raise DataError(f"call-record store unreachable: {exc}") from None


_SINCE = click.option("--since", default="24h", show_default=True,
                      help="Start of the period: ISO 8601 (UTC unless an offset is given), today, or an age (2h, 7d).")
_UNTIL = click.option("--until", default="now", show_default=True, help="End of the period, same forms as --since.")
_TRUNK = click.option("--trunk", default=None, help="Only this trunk's calls.")


@click.group()
def cdr() -> None:
    """Call records: one per call attempt, answered, failed or refused at the edge."""


@cdr.command("list")
@_SINCE
@_UNTIL
@_TRUNK
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="Show the newest N records.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
@handle_errors
def list_(app: AppContext, since: str, until: str, trunk: str | None, limit: int, as_json: bool) -> None:
    """Call records started in a period, oldest first."""
    start, end = _window(since, until)
    try:
        records = _reader(app).records(start, end, trunk, limit)
    except StoreUnavailable as exc:
        raise DataError(f"call-record store unreachable: {exc}") from None
    if as_json:
        emit_json(records)
        return
    table = Table("start (UTC)", "dir", "status", "trunk", "agent", "number", "code", "talk s", "bill s", "cost",
                  "gateways", title=f"{len(records)} call record(s)")
    for rec in records:
        gateways = ", ".join(f"{g['gateway']}={g['result']}" for g in rec.get("gateways", []))
        table.add_row(iso(rec.get("start_ms"))[:19], rec.get("direction", "")[:4], rec.get("status", ""),
                      rec.get("trunk", ""), rec.get("agent", ""), rec.get("number", ""),
                      f"{rec.get('sip_code')} {rec.get('sip_reason', '')}", f"{int(rec.get('talk_ms') or 0) / 1000:.1f}",
                      str(rec.get("billable_s", 0)), str(rec.get("cost", "")), gateways or "-")
    Console().print(table)


@cdr.command("show")
@click.argument("record_id")
@pass_app
@handle_errors
def show(app: AppContext, record_id: str) -> None:
    """One record by id (``{node}:{call-id}:{cseq}``), as JSON."""
    try:
        found = _reader(app).get(record_id)
    except StoreUnavailable as exc:
        raise DataError(f"call-record store unreachable: {exc}") from None
    if found is None and app.settings.cdr.durable:
        found = _store(app).get(record_id)  # not drained yet
    if found is None:
        raise DataError(f"no call record {record_id!r}")
    emit_json(found)


@cdr.command("export")
@_SINCE
@_UNTIL
@_TRUNK
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file (default: standard output).")
@pass_app
@handle_errors
def export(app: AppContext, since: str, until: str, trunk: str | None, fmt: str, output: Path | None) -> None:
    """Every record of a period as CSV (one row per call, times also in ISO 8601 UTC) or JSON,
    streamed (a large period is never held in memory)."""
    start, end = _window(since, until)
    records = _streamed(_reader(app).iter_records(start, end, trunk))
    chunks = csv_rows(records) if fmt == "csv" else json_chunks(records)
    if output is None:
        for text in chunks:
            click.echo(text, nl=False)
        return
    count = -1 if fmt == "csv" else 0
    try:
        with output.open("w", encoding="utf-8", newline="") as handle:
            for text in chunks:
                handle.write(text)
                count += 1
    except OSError as exc:
        raise DataError(f"{output}: {exc.strerror}") from None
    if fmt == "json":
        count -= 2  # the opening and closing chunks
    click.echo(f"{count} record(s) written to {output}", err=True)


@cdr.command("totals")
@click.option("--since", default="today", show_default=True, help="Start of the period (see cdr list).")
@_UNTIL
@_TRUNK
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
@handle_errors
def totals_(app: AppContext, since: str, until: str, trunk: str | None, as_json: bool) -> None:
    """Calls, billable minutes and cost per trunk over a period (calls that started in it)."""
    start, end = _window(since, until)
    rows = totals(_streamed(_reader(app).iter_records(start, end, trunk)))
    if as_json:
        emit_json(rows)
        return
    table = Table("trunk", "calls", "answered", "billable min", "talk min", "cost",
                  title=f"totals {since} .. {until}")
    for row in rows:
        table.add_row(str(row["trunk"]) or "(none)", str(row["calls"]), str(row["answered"]),
                      str(row["billable_minutes"]), str(row["talk_minutes"]), str(row["cost"]))
    Console().print(table)


@cdr.command("replay")
@pass_app
@handle_errors
def replay(app: AppContext) -> None:
    """Store the records spooled while redis was unreachable now (the edge also does this by
    itself every few seconds).  Safe to repeat: a record already stored is skipped."""
    spool = Spool(app.settings.cdr_spool_path)
    try:
        stored, duplicates = spool.replay(_store(app).add)
    except StoreUnavailable as exc:
        raise DataError(f"redis unreachable: {exc}") from None
    except OSError as exc:
        raise DataError(f"{spool.directory}: {exc.strerror}") from None
    click.echo(f"{stored} record(s) stored, {duplicates} already present, {spool.pending()} still spooled")


@cdr.command("backfill")
@click.option("--since", default=None,
              help="Only records started since then (see cdr list); default: every record redis holds.")
@_UNTIL
@pass_app
@handle_errors
def backfill(app: AppContext, since: str | None, until: str) -> None:
    """Write the records redis holds to the durable store (cdr.store postgres or jsonl), each once:
    the records of calls before the store was set.  Safe to repeat: a record the store has is skipped."""
    sink = durable_sink(app.settings)
    if sink is None:
        raise DataError("cdr.store is redis: there is no durable store to fill")
    click.get_current_context().call_on_close(sink.close)
    start, end = _window(since or "1970-01-01", until)
    batch: list[dict[str, Any]] = []
    read = written = 0
    try:
        for rec in _store(app).iter_records(start, end):
            batch.append(rec)
            if len(batch) >= app.settings.cdr.drain_batch:
                written += sink.write(batch)
                read, batch = read + len(batch), []
        written += sink.write(batch)
        read += len(batch)
    except StoreUnavailable as exc:
        raise DataError(f"call-record store unreachable after {written} record(s) written: {exc}") from None
    click.echo(f"{written} record(s) written to the {app.settings.cdr.store} store, {read - written} already there")
