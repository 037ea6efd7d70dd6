"""edgectl route (routing.cli.cmd_route) through click's CliRunner against a real redis."""

from __future__ import annotations

import redis

from routing.tables import keys
from tests.unit.cli.results import ok, one_line_error


def test_route_prefix_forms_and_rm(edgectl, provisioned: redis.Redis) -> None:
    ok(edgectl("route", "add", "1212", "--trunk", "telnyx", "--rate", "0.004"))
    ok(edgectl("route", "add", "+", "--trunk", "telnyx", "--rate", "0.02"))
    assert provisioned.smembers(keys.ROUTES) == {"+", "+1212", "+1415"}

    ok(edgectl("route", "rm", "+1212", "--trunk", "telnyx"))
    ok(edgectl("route", "rm", "+"))
    assert provisioned.smembers(keys.ROUTES) == {"+1415"}
    assert "no route '+1212'" in one_line_error(edgectl("route", "rm", "1212"))
