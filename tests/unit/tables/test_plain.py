"""routing.tables.plain: table dataclasses <-> plain YAML values, type-checked field by field."""

from __future__ import annotations

from decimal import Decimal

import pytest

from routing.call.numbers import NumberFormat
from routing.tables.model import DataError, Direction, Gateway, RouteEntry, Trunk, Transport
from routing.tables.plain import from_plain, to_plain


def test_a_trunk_round_trips() -> None:
    trunk = Trunk("t1", direction=Direction.OUTBOUND, cidrs=("192.0.2.0/24",),
                  gateways=(Gateway("192.0.2.10", 5061, Transport.TCP, 5, 50),),
                  number_format=NumberFormat(country_code="44", national_prefix="0", international_prefix="00"),
                  max_rate=Decimal("0.05"))
    plain = to_plain(trunk)
    assert plain["direction"] == "outbound" and plain["max_rate"] == "0.05"
    assert plain["gateways"] == [{"host": "192.0.2.10", "port": 5061, "transport": "tcp", "priority": 5, "weight": 50}]
    assert from_plain(Trunk, plain, "trunk") == trunk


def test_yaml_numbers_are_read_as_digit_strings() -> None:
    fmt = from_plain(NumberFormat, {"country_code": 44}, "fmt")
    assert fmt.country_code == "44"


@pytest.mark.parametrize("data, message", [
    ("+44", r"route: expected a mapping"),
    ({"prefix": "+44", "trunk": "t", "colour": "red"}, r"route: unknown field 'colour'"),
    ({"prefix": "+44"}, r"route.trunk: required"),
    ({"prefix": "+44", "trunk": "t", "rate": "0.01", "priority": "high"}, r"route.priority: "),
])
def test_errors_name_the_field(data: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        from_plain(RouteEntry, data, "route")
