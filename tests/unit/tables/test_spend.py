"""routing.tables.spend (lua/accrue.lua) with the call's end (finish.lua, cdr_add.lua) against a real
redis: the cost of a call in progress counted as it accrues, each micro-unit once in the trunk's and
the account's spend, whatever the order of steps, the end and a replayed record."""

from __future__ import annotations

import time
from decimal import Decimal

import redis

from routing.call.cdr import cost_so_far, utc_day
from routing.tables import keys
from routing.tables.cdrstore import CdrStore
from routing.tables.spend import SpendAccrual
from routing.tables.store import Lease, RedisStore


def test_cost_so_far_bills_by_increment() -> None:
    assert cost_so_far(Decimal("0.60"), (60, 60), answer_ms=0, now_ms=1_000) == 600_000  # first minute whole
    assert cost_so_far(Decimal("0.60"), (60, 60), answer_ms=0, now_ms=61_000) == 1_200_000
    assert cost_so_far(Decimal("0.60"), (1, 1), answer_ms=0, now_ms=2_500) == 30_000  # 3 started seconds
    assert cost_so_far(Decimal("0.60"), (1, 1), answer_ms=5_000, now_ms=1_000) == 0  # clock before the answer


def test_accrued_spend_is_counted_once_with_the_record(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client, "n1")
    assert store.acquire("c1", [Lease(keys.account_lease("acme"), None, "account acme")], 60).admitted
    accrual, day = SpendAccrual(redis_client, "n1"), utc_day(int(time.time() * 1000))
    spent = lambda: (redis_client.get(keys.spend("b", day)), redis_client.get(keys.account_spend("acme", day)))  # noqa: E731

    assert accrual.accrue("c1", 100, "b", "acme", day) == 100
    assert accrual.accrue("c1", 100, "b", "acme", day) == 0  # the same total again adds nothing
    assert accrual.accrue("c1", 250, "b", "acme", day) == 150
    assert spent() == ("250", "250") and redis_client.ttl(keys.account_spend("acme", day)) > 86400

    hash_ = store.finish("c1")
    assert hash_["spend_accrued"] == "250"
    assert accrual.accrue("c1", 900, "b", "acme", day) == 0  # after the end: nothing, the hash is not re-created
    assert not redis_client.exists(keys.call("n1", "c1"))

    now = int(time.time() * 1000)
    record = {"id": "n1:c1:1", "trunk": "b", "account": "acme", "start_ms": now - 5000, "end_ms": now,
              "cost": "0.000400", "spend_accrued": "0.000250", "status": "answered"}
    cdrs = CdrStore(redis_client, 3600)
    assert cdrs.add(record) is True
    assert spent() == ("400", "400")  # the rest of the cost, once
    assert cdrs.add(record) is False  # a replayed record changes nothing
    assert spent() == ("400", "400")


def test_a_record_without_account_or_accrual_counts_as_before(redis_client: redis.Redis) -> None:
    now = int(time.time() * 1000)
    CdrStore(redis_client, 3600).add({"id": "n1:c2:1", "trunk": "b", "start_ms": now - 5000, "end_ms": now,
                                      "cost": "0.020000", "status": "answered"})
    assert redis_client.get(keys.spend("b", utc_day(now))) == "20000"
    assert redis_client.keys(keys.ACCOUNT_SPEND_PATTERN) == []
