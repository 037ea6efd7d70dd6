"""The drain of call records from redis to the durable store (``cdr.store`` postgres or jsonl).

Runs as a thread of the edge monitor, never in Kamailio: the call path only adds the record to
redis and its id to the node's outbox (``edge:cdrs:outbox:{node}``, ``cdr_add.lua``).  Every
``cdr.drain_interval_ms`` the drain takes the oldest ``cdr.drain_batch`` records of the outbox,
writes them to the store (idempotent, keyed by record id: :mod:`routing.tables.cdrsinks`) and,
once the store acknowledged them, takes them out of the outbox and starts their redis TTL
(:meth:`routing.tables.cdrstore.CdrStore.drained`, which also trims redis to
``cdr.redis_max_records``).

No record is lost to an outage: while the store is down the records stay in the outbox (no TTL,
never trimmed) and the drain retries with a backoff doubling from ``drain_interval_ms`` to
:data:`MAX_BACKOFF_S`; while redis is down Kamailio spools them (:class:`routing.tables.cdrstore.Spool`)
and they reach the outbox when the spool is replayed.  A batch written but not acknowledged in redis
(redis failed, the monitor died) is written again, and the store skips what it has.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable

from routing.tables.cdrsinks import RecordSink
from routing.tables.cdrstore import CdrStore
from routing.tables.store import StoreUnavailable

__all__ = ["Drain", "DrainResult", "MAX_BACKOFF_S", "run"]

#: the longest wait between two attempts while the store or redis fails (s)
MAX_BACKOFF_S = 30.0
log = logging.getLogger("byoc_edge.cdrdrain")


@dataclass(frozen=True, slots=True)
class DrainResult:
    """One round: records read from the outbox, written new to the store, acknowledged in redis,
    and deleted from redis by the trim to ``cdr.redis_max_records``."""

    read: int = 0
    written: int = 0
    acknowledged: int = 0
    trimmed: int = 0


class Drain:
    """Moves records from a node's outbox to a durable store.

    Args:
        cdrs: the node's redis records, with its outbox and ``max_records``.
        sink: the durable store.
        batch: most records per write.
    """

    def __init__(self, cdrs: CdrStore, sink: RecordSink, batch: int = 500) -> None:
        if not cdrs.outbox:
            raise ValueError("the drain needs a CdrStore with an outbox")
        self.cdrs = cdrs
        self.sink = sink
        self.batch = batch

    def once(self) -> DrainResult:
        """Drain one batch.

        Raises:
            StoreUnavailable: redis or the store failed; nothing was acknowledged that the store
                does not hold.
        """
        records = self.cdrs.pending(self.batch)
        if not records:
            return DrainResult()
        written = self.sink.write(records)
        trimmed = self.cdrs.drained(records)
        return DrainResult(len(records), written, len(records), trimmed)

    def until_empty(self, rounds: int = 1000) -> DrainResult:
        """Drain batches until the outbox is empty (at most ``rounds``); totals of the rounds.

        Raises:
            StoreUnavailable: as :meth:`once` (the batches before it stay acknowledged).
        """
        read = written = acked = trimmed = 0
        for _ in range(rounds):
            res = self.once()
            read, written, acked, trimmed = (read + res.read, written + res.written, acked + res.acknowledged,
                                             trimmed + res.trimmed)
            if res.read < self.batch:
                break
        return DrainResult(read, written, acked, trimmed)


def run(drain: Drain, interval_s: float, stop: threading.Event,
        on_round: Callable[[DrainResult | None], None] | None = None) -> None:
    """Drain every ``interval_s`` until ``stop`` is set (the monitor's thread).  A failure is logged
    once per outage and the wait doubles up to :data:`MAX_BACKOFF_S`; the first success after it is
    logged with what it wrote.  ``on_round`` sees each round's result (None for a failed one)."""
    wait = interval_s
    failing = False
    while not stop.wait(wait):
        try:
            res = drain.until_empty()
        except StoreUnavailable as exc:
            if not failing:
                log.error("call records not written to the durable store (kept in redis, retrying): %s", exc)
            failing = True
            wait = min(wait * 2, MAX_BACKOFF_S)
            if on_round:
                on_round(None)
            continue
        except Exception:  # noqa: BLE001 - the thread must go on; the records stay in the outbox
            log.exception("call-record drain round failed")
            wait = min(wait * 2, MAX_BACKOFF_S)
            continue
        if failing:
            log.info("durable store reachable again: %d call record(s) written", res.written)
        elif res.written:
            log.debug("%d call record(s) written to the durable store", res.written)
        failing = False
        wait = interval_s
        if on_round:
            on_round(res)
    drain.sink.close()
