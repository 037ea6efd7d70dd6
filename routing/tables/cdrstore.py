"""Durable storage of call records: redis when it answers, a local spool when it does not.

* :class:`CdrStore` writes a record into redis **exactly once**
  (``routing/tables/lua/cdr_add.lua``: ``SET NX`` on ``edge:cdr:{id}``, then the index
  ``edge:cdrs`` and the trunk's spend counter of the day, both only when the
  record is new), keeps the index to ``cdr.redis_max_records`` records, and reads
  records back for ``edgectl cdr``.  With a durable store (``cdr.store``) a new
  record also waits in the node's outbox, without TTL, until the monitor wrote it
  there (:meth:`CdrStore.pending`, :meth:`CdrStore.drained`, ``lua/cdr_drained.lua``).
* :class:`Spool` appends records that redis could not take to a JSON-lines file
  in the spool directory, one file per process (``cdr-{pid}.jsonl``), each write
  under an ``fcntl`` lock and ``fsync``'d, so a record survives a crash or a
  restart of Kamailio.  :meth:`Spool.replay` feeds them back; because the
  write is idempotent, a record replayed twice (a replay interrupted by another
  outage) is stored once and counted once.
* :class:`CdrWriter` is what the Kamailio processes use: it never blocks a call
  for longer than one redis timeout, and after a failure it spools directly for
  ``backoff_s`` without trying redis, so a dead redis costs nothing per call.
"""

from __future__ import annotations

import collections
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import redis

from routing.tables import keys
from routing.call.cdr import cost_micros, utc_day
from routing.tables.store import StoreUnavailable, run_scripts

__all__ = ["CdrStore", "Spool", "CdrWriter", "SPEND_TTL_S", "parse_time"]

#: spend counters outlive their UTC day by two days (yesterday stays visible)
SPEND_TTL_S = 3 * 86400
_LUA = Path(__file__).resolve().parent / "lua" / "cdr_add.lua"
_DRAINED_LUA = Path(__file__).resolve().parent / "lua" / "cdr_drained.lua"
_RECORD_PREFIX = keys.cdr("")


class CdrStore:
    """Call records in redis.

    Args:
        client: a redis client (``decode_responses=True``).
        retention_s: how long a record is kept (s); the index is pruned to the same window.
        stranger_retention_s: how long the record of a refusal that matched no trunk and no
            agent is kept (s; scanners and strangers), at most ``retention_s``; default ``retention_s``.
        max_records: most records in the index (``cdr.redis_max_records``), the oldest deleted
            beyond it (never one still in the outbox); 0 = no bound.
        outbox: the node's outbox key (:func:`routing.tables.keys.cdr_outbox`) when a durable
            store drains the records: a new record is then kept without TTL and its id queued
            there until :meth:`drained` (the TTL starts then).
    """

    def __init__(self, client: redis.Redis, retention_s: int, stranger_retention_s: int | None = None,
                 max_records: int = 0, outbox: str | None = None) -> None:
        self.client = client
        self.retention_s = int(retention_s)
        self.stranger_retention_s = min(self.retention_s, int(stranger_retention_s or retention_s))
        self.max_records = int(max_records)
        self.outbox = outbox
        self._add = client.register_script(_LUA.read_text())
        self._drained = client.register_script(_DRAINED_LUA.read_text())

    def ttl_of(self, record: Mapping[str, Any]) -> int:
        """How long ``record`` stays (s): the stranger retention for a refusal of a source that
        matched no trunk and no agent (no trunk, no agent, SIP status 300 or more), else the retention."""
        stranger = not record.get("trunk") and not record.get("agent") and int(record.get("sip_code") or 0) >= 300
        return self.stranger_retention_s if stranger else self.retention_s

    def add(self, record: Mapping[str, Any]) -> bool:
        """Store ``record`` unless a record with its id exists; True when it was new.

        A record with a trunk and a cost adds it (micro-units), less its ``spend_accrued`` (counted
        while the call ran, :mod:`routing.tables.spend`), to ``edge:spend:{trunk}:{UTC day of end_ms}``
        and, with an ``account``, to ``edge:account-spend:{account}:{day}``, in the same script.

        Raises:
            StoreUnavailable: redis unreachable or slower than the client's timeout.
        """
        return self.add_many([record])[0]

    def add_many(self, records: Sequence[Mapping[str, Any]]) -> list[bool]:
        """:meth:`add` of each record, in one write; per record True when it was new.

        Raises:
            StoreUnavailable: redis unreachable or slower than the client's timeout.
        """
        commands = []
        for record in records:
            rid = str(record["id"])
            keys_ = [keys.cdr(rid), keys.CDRS, self.outbox or keys.cdr_outbox("-")]
            micros = max(0, cost_micros(str(record.get("cost") or "0")) - cost_micros(str(record.get("spend_accrued") or "0")))
            if record.get("trunk") and micros > 0:
                keys_.append(keys.spend(str(record["trunk"]), utc_day(int(record["end_ms"]))))
                if record.get("account"):
                    keys_.append(keys.account_spend(str(record["account"]), utc_day(int(record["end_ms"]))))
            commands.append(("EVALSHA", self._add.sha, len(keys_), *keys_, json.dumps(record, separators=(",", ":")),
                             int(record["start_ms"]), rid, self.ttl_of(record), micros, SPEND_TTL_S, self.retention_s,
                             "1" if self.outbox else "0", self.max_records, _RECORD_PREFIX))
        return [bool(reply) for reply in run_scripts(self._add, commands)]

    def pending(self, count: int) -> list[dict[str, Any]]:
        """The oldest ``count`` records of the outbox (by start time), each with its ``id``; an id
        whose record is gone (deleted by hand) is dropped from the outbox.  Empty without an outbox.

        Raises:
            StoreUnavailable: redis unreachable or slower than the client's timeout.
        """
        if not self.outbox:
            return []
        try:
            ids = self.client.zrange(self.outbox, 0, count - 1)
            if not ids:
                return []
            texts = self.client.mget([keys.cdr(i) for i in ids])
            lost = [i for i, text in zip(ids, texts) if text is None]
            if lost:
                self.client.zrem(self.outbox, *lost)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc
        return [json.loads(text) for text in texts if text is not None]

    def waiting(self) -> int:
        """Records in the outbox (0 without one).

        Raises:
            StoreUnavailable: redis unreachable or slower than the client's timeout.
        """
        if not self.outbox:
            return 0
        try:
            return int(self.client.zcard(self.outbox))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc

    def drained(self, records: list[Mapping[str, Any]]) -> int:
        """The durable store holds ``records``: out of the outbox, each kept in redis for its
        retention from now (:meth:`ttl_of`), then the index trimmed to ``max_records``; returns
        how many records the trim deleted.

        Raises:
            StoreUnavailable: redis unreachable or slower than the client's timeout (the records
                stay in the outbox and are written again: the durable store skips them).
        """
        if not self.outbox:
            return 0
        args: list[object] = [_RECORD_PREFIX, self.max_records]
        for rec in records:
            args += [str(rec["id"]), self.ttl_of(rec)]
        try:
            return int(self._drained(keys=[self.outbox, keys.CDRS], args=args))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc

    def iter_records(self, since_ms: int, until_ms: int, trunk: str | None = None,
                     chunk: int = 500) -> Iterator[dict[str, Any]]:
        """Records whose start time is in ``[since_ms, until_ms]``, oldest first, read
        ``chunk`` at a time (an export of millions of records never sits in memory);
        only ``trunk``'s when given.  Records that expire meanwhile are skipped."""
        start = 0
        while True:
            ids = self.client.zrangebyscore(keys.CDRS, since_ms, until_ms, start=start, num=chunk)
            if not ids:
                return
            for text in self.client.mget([keys.cdr(i) for i in ids]):
                if text is None:
                    continue  # expired between the index read and now
                rec = json.loads(text)
                if trunk is None or rec.get("trunk") == trunk:
                    yield rec
            if len(ids) < chunk:
                return
            start += chunk

    def records(self, since_ms: int, until_ms: int, trunk: str | None = None,
                limit: int | None = None) -> list[dict[str, Any]]:
        """:meth:`iter_records` as a list; at most the newest ``limit`` when given."""
        if not limit:
            return list(self.iter_records(since_ms, until_ms, trunk))
        out: collections.deque[dict[str, Any]] = collections.deque(maxlen=limit)
        out.extend(self.iter_records(since_ms, until_ms, trunk))
        return list(out)

    def get(self, record_id: str) -> dict[str, Any] | None:
        """One record by id, or None."""
        text = self.client.get(keys.cdr(record_id))
        return None if text is None else json.loads(text)

    def spend(self, trunk: str, day: str) -> int:
        """A trunk's spend (both directions) on UTC day ``day`` (``YYYYMMDD``), micro-units."""
        return int(self.client.get(keys.spend(trunk, day)) or 0)


class Spool:
    """Records waiting for redis, as JSON lines in ``directory``.

    Args:
        directory: created 0750 when missing.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _path(self) -> Path:
        return self.directory / f"cdr-{os.getpid()}.jsonl"

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record durably (exclusive ``flock``, write, ``fsync``).

        Raises:
            OSError: the spool cannot be written (disk full, permissions).
        """
        self.directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        fd = os.open(self._path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock

    def files(self) -> list[Path]:
        """Spool files that hold at least one record."""
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        found = []
        for entry in entries:
            if not (entry.name.startswith("cdr-") and entry.name.endswith(".jsonl")):
                continue
            try:
                if entry.stat().st_size > 0:
                    found.append(Path(entry.path))
            except FileNotFoundError:
                continue  # replayed and removed by another process since the scan
        return sorted(found)

    def pending(self) -> int:
        """Records waiting (lines in the spool files); a file replayed meanwhile counts 0."""
        total = 0
        for path in self.files():
            try:
                with open(path, "rb") as handle:
                    total += sum(1 for line in handle if line.strip())
            except FileNotFoundError:
                continue
        return total

    def records(self) -> Iterator[dict[str, Any]]:
        """Every spooled record (unparseable lines skipped)."""
        for path in self.files():
            try:
                handle = open(path, encoding="utf-8", errors="replace")
            except FileNotFoundError:
                continue  # replayed and removed since the scan
            with handle:
                for line in handle:
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue

    def replay(self, add: Callable[[Mapping[str, Any]], bool]) -> tuple[int, int]:
        """Feed every spooled record to ``add`` (e.g. :meth:`CdrStore.add`); returns
        ``(stored, duplicates)``.

        Each file is locked while it is replayed (a file another process is
        replaying is skipped) and emptied only once every line went through.
        A line that is not JSON (a write cut by a crash) is moved to
        ``rejected.jsonl`` for a human.  Empty files of processes that no longer
        exist are removed.

        Raises:
            StoreUnavailable: redis failed again; the rest stays spooled (lines already
                stored are stored again as no-ops next time).
        """
        stored = duplicates = 0
        for path in self.files():
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                with os.fdopen(os.dup(fd), "rb") as handle:
                    lines = handle.read().splitlines()
                bad = []
                for raw in lines:
                    if not raw.strip():
                        continue
                    try:
                        record = json.loads(raw)
                        if not isinstance(record, dict) or "id" not in record:
                            raise ValueError("not a call record")
                    except ValueError:
                        bad.append(raw)
                        continue
                    if add(record):
                        stored += 1
                    else:
                        duplicates += 1
                if bad:
                    with open(self.directory / "rejected.jsonl", "ab") as rejected:
                        rejected.write(b"\n".join(bad) + b"\n")
                        rejected.flush()
                        os.fsync(rejected.fileno())
                os.ftruncate(fd, 0)
                os.fsync(fd)
            finally:
                os.close(fd)
        self._remove_stale()
        return stored, duplicates

    def _remove_stale(self) -> None:
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return
        for entry in entries:
            name = entry.name
            if not (name.startswith("cdr-") and name.endswith(".jsonl")) or entry.stat().st_size:
                continue
            pid = name[4:-6]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CdrWriter:
    """Write path used inside Kamailio: redis, else the spool; replays the spool later.

    Args:
        store: where records go.
        spool: where they wait while redis is down.
        backoff_s: after a redis failure, records go straight to the spool for this long (s).
        clock: monotonic clock (s), for tests.
    """

    def __init__(self, store: CdrStore, spool: Spool, backoff_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.spool = spool
        self.backoff_s = backoff_s
        self.clock = clock
        self._down_until = 0.0

    def mark_down(self) -> None:
        """redis just failed elsewhere (a release): spool without trying for ``backoff_s``."""
        self._down_until = self.clock() + self.backoff_s

    def write(self, record: Mapping[str, Any]) -> str:
        """Store ``record``: ``"stored"``, ``"duplicate"`` or ``"spooled"``.

        Raises:
            OSError: redis failed and the spool cannot be written either.
        """
        return self.write_many([record])[0]

    def write_many(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        """:meth:`write` of each record, in one redis write (all spooled when it fails).

        Raises:
            OSError: redis failed and the spool cannot be written either.
        """
        if self.clock() >= self._down_until:
            try:
                return ["stored" if added else "duplicate" for added in self.store.add_many(records)]
            except StoreUnavailable:
                self.mark_down()
        for record in records:
            self.spool.append(record)
        return ["spooled"] * len(records)

    def replay(self) -> tuple[int, int]:
        """Replay the spool unless redis is known down; ``(stored, duplicates)``.

        Raises:
            StoreUnavailable: redis failed during the replay (then backs off).
        """
        if self.clock() < self._down_until or not self.spool.files():
            return 0, 0
        try:
            return self.spool.replay(self.store.add)
        except StoreUnavailable:
            self.mark_down()
            raise


def parse_time(text: str, now_ms: int | None = None) -> int:
    """A point in time for ``edgectl cdr`` as ms since epoch.

    Accepts ISO 8601 (``2026-11-21``, ``2026-11-21T18:00``, ``...Z`` or with an
    offset; naive times are UTC), ``now``, ``today`` (UTC midnight), or an age such
    as ``90s``, ``15m``, ``2h``, ``7d`` (that long before now).

    Raises:
        ValueError: anything else.
    """
    import datetime as dt

    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = text.strip().lower()
    if value == "now":
        return now_ms
    if value == "today":
        return now_ms - now_ms % 86_400_000
    units = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    if len(value) > 1 and value[-1] in units and value[:-1].isdigit():
        return now_ms - int(value[:-1]) * units[value[-1]]
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time (use ISO 8601 such as 2026-11-21T18:00Z, today, now, or 2h, 7d)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp() * 1000)
