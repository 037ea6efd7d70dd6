"""Spend caps that count calls in progress (docs/identity.md#accounts, docs/operations.md).

A call's cost is known for sure only when it ends (its record, :mod:`routing.tables.cdrstore`), but a
daily spend cap that counted only finished calls could be overshot by every call still running.  So
the call clock's media watchdog (:func:`routing.kamailio.timers`), which already visits every
answered call every ``media.check_interval_s``, also adds what each call over a capped trunk or
account has cost so far (its billable time by the trunk's increment, times its rate:
:func:`routing.call.cdr.cost_so_far`) to the spend counters, with ``lua/accrue.lua``:

* the counters ``edge:spend:{trunk}:{day}`` and ``edge:account-spend:{account}:{day}`` get the
  difference with what the call already counted (``spend_accrued`` in its call hash, micro-units);
* when the call ends, ``finish.lua`` returns that hash, the record carries ``spend_accrued`` and
  ``cdr_add.lua`` adds only ``cost - spend_accrued``: every call counts its cost once.

Overshoot that remains: an admission sees each running call's cost as of its last accrual, at most
one step (``media.check_interval_s``, 2 s by default; with a coarse billing increment the step's
cost is up to one ``next`` block) behind; calls already running when a cap is reached go on (a cap
stops new calls, it never hangs up one).  One script per capped call and step, none for calls over
trunks and accounts without a cap.
"""

from __future__ import annotations

from pathlib import Path

import redis

from routing.tables import keys
from routing.tables.store import StoreUnavailable, run_script

__all__ = ["SpendAccrual", "SPEND_TTL_S"]

#: spend counters outlive their UTC day by two days (yesterday stays visible); as cdrstore's
SPEND_TTL_S = 3 * 86400


class SpendAccrual:
    """Adds the cost so far of calls in progress to the spend counters (``lua/accrue.lua``).

    Args:
        client: a redis client (``decode_responses=True``), usually the worker store's.
        node: this edge node's id (the call hashes are ``edge:call:{node}:{call-id}``).
    """

    def __init__(self, client: redis.Redis, node: str) -> None:
        self.node = node
        self._accrue = client.register_script((Path(__file__).resolve().parent / "lua" / "accrue.lua").read_text())

    def accrue(self, call_id: str, total_micros: int, trunk: str, account: str, day: str) -> int:
        """Count the call's cost so far, ``total_micros`` (micro-units), in the spend of ``trunk`` and
        ``account`` (when not empty) on UTC day ``day`` (``YYYYMMDD``); returns the micro-units added
        (0 when the call has ended or already counted as much).

        Raises:
            StoreUnavailable: redis unreachable or slow.
        """
        spend_keys = [keys.spend(trunk, day)] + ([keys.account_spend(account, day)] if account else [])
        try:
            return int(run_script(self._accrue, [keys.call(self.node, call_id), *spend_keys],
                                  [int(total_micros), SPEND_TTL_S]))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc
