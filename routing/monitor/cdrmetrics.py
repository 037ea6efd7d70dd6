"""Prometheus collector for call records and spend (prometheus_client custom collector).

Runs in the edge monitor process next to :class:`routing.monitor.exporter.EdgeCollector`;
read at every scrape (one pipelined redis round trip plus a directory scan):

==========================================  =====  ======  ==============================================
metric                                      type   labels  source
==========================================  =====  ======  ==============================================
``byoc_edge_trunk_spend_today``             gauge  trunk   ``edge:spend:{trunk}:{UTC today}`` (currency units)
``byoc_edge_trunk_daily_spend_cap``         gauge  trunk   the trunk's ``daily_spend_cap`` (absent when none)
``byoc_edge_account_spend_today``           gauge  account ``edge:account-spend:{account}:{UTC today}`` (currency units)
``byoc_edge_account_daily_spend_cap``       gauge  account the account's ``daily_spend_cap`` (absent when none)
``byoc_edge_cdr_spooled_records``           gauge  -       call records of this node waiting in ``cdr.spool_dir``
``byoc_edge_cdr_outbox_records``            gauge  -       records of this node waiting for the durable store
                                                           (``edge:cdrs:outbox:{node}``; absent without one)
==========================================  =====  ======  ==============================================

Spend today counts the records that ended today and, over a trunk or account with a cap, the calls in
progress as their cost accrues (:mod:`routing.tables.spend`).  The account families are left out of a
deployment without accounts.

Alert on ``spend_today / daily_spend_cap > 0.8`` before a trunk starts refusing
calls, and on ``cdr_spooled_records > 0`` for more than a few minutes (redis
unreachable from Kamailio, or a spool the edge cannot replay), and on ``cdr_outbox_records``
growing (the durable store unreachable: records pile up in redis, none is lost).
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Iterator

import redis
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from routing.tables import keys
from routing.call.cdr import COST_PLACES
from routing.tables.cdrstore import CdrStore, Spool
from routing.tables.store import StoreUnavailable

__all__ = ["CdrCollector"]

NAMESPACE = "byoc_edge"
log = logging.getLogger("byoc_edge.cdrmetrics")


class CdrCollector(Collector):
    """Spend per trunk today, spend caps, and the depth of the call-record spool.

    Args:
        client: redis client (``decode_responses=True``) with bounded timeouts.
        spool_dir: this node's ``cdr.spool_dir``.
        records: this node's redis records; its outbox (if any) is measured.
        clock: seconds since epoch (tests).
    """

    def __init__(self, client: redis.Redis, spool_dir: str | Path, records: CdrStore | None = None,
                 clock=time.time) -> None:
        self.client = client
        self.spool = Spool(spool_dir)
        self.records = records
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        """Yield the metrics of the table above; the spend ones are left out when redis fails
        (``byoc_edge_redis_up`` of the main exporter says so)."""
        spooled = GaugeMetricFamily(f"{NAMESPACE}_cdr_spooled_records",
                                    "Call records waiting in this node's spool for redis (records)")
        try:
            spooled.add_metric([], self.spool.pending())
        except OSError as exc:
            log.error("cannot read the call-record spool: %s", exc)
        yield spooled
        if self.records is not None and self.records.outbox:
            outbox = GaugeMetricFamily(f"{NAMESPACE}_cdr_outbox_records",
                                       "Call records of this node waiting in redis for the durable store (records)")
            try:
                outbox.add_metric([], self.records.waiting())
                yield outbox
            except StoreUnavailable as exc:
                log.error("cannot read the call-record outbox: %s", exc)
        try:
            yield from self._spend()
        except (redis.RedisError, OSError) as exc:
            log.error("cannot read spend from redis: %s", exc)

    def _spend(self) -> list[Metric]:
        day = time.strftime("%Y%m%d", time.gmtime(self.clock()))
        names = sorted(self.client.smembers(keys.TRUNKS))
        accounts = sorted(self.client.smembers(keys.ACCOUNTS))
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.get(keys.spend(name, day))
            pipe.hget(keys.trunk(name), "daily_spend_cap")
        for name in accounts:
            pipe.get(keys.account_spend(name, day))
            pipe.hget(keys.account(name), "daily_spend_cap")
        rows = pipe.execute()
        out = self._spend_families("trunk", names, rows)
        return out + (self._spend_families("account", accounts, rows[2 * len(names):]) if accounts else [])

    @staticmethod
    def _spend_families(kind: str, names: list[str], rows: list) -> list[Metric]:
        """``{kind}_spend_today`` and ``{kind}_daily_spend_cap`` of ``names`` from (spend, cap) row pairs."""
        spent = GaugeMetricFamily(f"{NAMESPACE}_{kind}_spend_today",
                                  f"Spend of the {kind} today, UTC: records that ended today and, under a cap, "
                                  "calls in progress as they accrue (currency units)", labels=[kind])
        cap = GaugeMetricFamily(f"{NAMESPACE}_{kind}_daily_spend_cap",
                                f"Daily spend cap of the {kind} (currency units; absent when none)", labels=[kind])
        for i, name in enumerate(names):
            micros, limit = rows[2 * i], rows[2 * i + 1]
            spent.add_metric([name], int(micros or 0) / 10**COST_PLACES)
            if limit:
                try:
                    cap.add_metric([name], float(Decimal(limit)))
                except InvalidOperation:
                    pass  # a malformed cap is reported by edgectl trunk list, not here
        return [spent, cap]
