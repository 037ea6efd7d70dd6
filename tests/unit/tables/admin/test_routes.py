"""routing.tables.admin.routes against a real redis: round trips in LCR order, refusals, removal."""

from __future__ import annotations

from decimal import Decimal

import pytest
import redis

from routing.tables import admin, keys
from routing.tables.model import DataError, RouteEntry
from routing.tables.store import RedisStore
from tests.unit.tables.samples import make_trunk


def test_route_round_trip_and_lcr_order(peers: redis.Redis) -> None:
    admin.put_trunk(peers, make_trunk("twilio", cidrs=("10.2.0.0/16",)))
    a = admin.put_route(peers, RouteEntry("+1415", "telnyx", Decimal("0.0045"), 10))
    b = admin.put_route(peers, RouteEntry("+1415", "twilio", Decimal("0.0040"), 20))
    c = admin.put_route(peers, RouteEntry("+", "telnyx", Decimal("0.02")))

    assert peers.hgetall(keys.route("+1415")) == {"telnyx": "rate=0.0045;priority=10", "twilio": "rate=0.0040;priority=20"}
    assert peers.smembers(keys.ROUTES) == {"+", "+1415"}
    assert admin.list_routes(peers) == [c, b, a]
    assert admin.list_routes(peers, "+1415") == [b, a]
    assert sorted(RedisStore(peers, "n1").routes("+14155550100"), key=lambda e: e.trunk) == [a, b]
    assert RedisStore(peers, "n1").routes("+442071234567") == [c]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (RouteEntry("+1415", "ghost", Decimal("0.01")), r"^no trunk 'ghost'$"),
        (RouteEntry("1415", "telnyx", Decimal("0.01")), r"route prefix '1415'"),
        (RouteEntry("+1415", "telnyx", Decimal("-0.01")), r"rate: must be a non-negative number"),
        (RouteEntry("+1415", "telnyx", Decimal("NaN")), r"rate: must be a non-negative number"),
        (RouteEntry("+1415", "telnyx", Decimal("0.01"), -1), r"priority: must be >= 0"),
    ],
)
def test_bad_route_refused(peers: redis.Redis, entry: RouteEntry, message: str) -> None:
    with pytest.raises(DataError, match=message):
        admin.put_route(peers, entry)
    assert peers.smembers(keys.ROUTES) == set()


def test_route_rate_change_needs_replace(peers: redis.Redis) -> None:
    admin.put_route(peers, RouteEntry("+1415", "telnyx", Decimal("0.0045")))
    with pytest.raises(DataError, match=r"route \+1415 via trunk 'telnyx' already exists"):
        admin.put_route(peers, RouteEntry("+1415", "telnyx", Decimal("0.003")))
    admin.put_route(peers, RouteEntry("+1415", "telnyx", Decimal("0.003")), replace=True)
    assert [e.rate for e in admin.list_routes(peers)] == [Decimal("0.003")]


def test_remove_route_one_trunk_then_last(peers: redis.Redis) -> None:
    admin.put_trunk(peers, make_trunk("twilio", cidrs=("10.2.0.0/16",)))
    admin.put_route(peers, RouteEntry("+1415", "telnyx", Decimal("0.0045")))
    admin.put_route(peers, RouteEntry("+1415", "twilio", Decimal("0.004")))

    admin.remove_route(peers, "+1415", "telnyx")
    assert peers.hgetall(keys.route("+1415")) == {"twilio": "rate=0.004;priority=10"}
    assert peers.smembers(keys.ROUTES) == {"+1415"}

    with pytest.raises(DataError, match=r"no route '\+1415' via trunk 'telnyx'"):
        admin.remove_route(peers, "+1415", "telnyx")

    admin.remove_route(peers, "+1415", "twilio")
    assert not peers.exists(keys.route("+1415"))
    assert peers.smembers(keys.ROUTES) == set()
    with pytest.raises(DataError, match=r"no route '\+1415'"):
        admin.remove_route(peers, "+1415")
