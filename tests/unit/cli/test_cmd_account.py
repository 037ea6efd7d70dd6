"""edgectl account, and the --account / --shared options of trunk, agent and route, through click's
CliRunner against a real redis: what they write, show and refuse (one line, exit 1, nothing written)."""

from __future__ import annotations

import json

import redis

from routing.tables import keys
from tests.unit.cli.results import ok, one_line_error


def test_account_add_show_list_and_remove(edgectl, redis_client: redis.Redis) -> None:
    assert ok(edgectl("account", "add", "acme", "--max-calls", "4", "--max-cps", "2", "--daily-spend-cap", "25.50")
              ).stdout == "account 'acme' saved\n"
    assert redis_client.hgetall(keys.account("acme")) == {"max_calls": "4", "max_cps": "2", "daily_spend_cap": "25.50"}
    ok(edgectl("trunk", "add", "telnyx", "--gateway", "192.0.2.10:5060", "--cidr", "192.0.2.0/24", "--account", "acme"))
    ok(edgectl("agent", "add", "bot", "--uri", "sip:bot@203.0.113.20", "--cidr", "203.0.113.0/28", "--account", "acme"))
    ok(edgectl("did", "add", "+14155550100", "--trunk", "telnyx", "--agent", "bot"))
    assert "shared" in ok(edgectl("route", "add", "+1", "--trunk", "telnyx", "--rate", "0.01", "--shared")).stdout
    assert redis_client.hget(keys.route("+1"), "telnyx") == "rate=0.01;priority=10;shared=yes"

    shown = json.loads(ok(edgectl("account", "show", "acme", "--json")).stdout)
    assert shown == {"name": "acme", "max_calls": 4, "max_cps": 2.0, "daily_spend_cap": "25.50", "active": 0,
                     "spend_today": "0.000000", "trunks": ["telnyx"], "agents": ["bot"]}
    assert [a["name"] for a in json.loads(ok(edgectl("account", "list", "--json")).stdout)] == ["acme"]
    assert json.loads(ok(edgectl("trunk", "show", "telnyx", "--json")).stdout)["account"] == "acme"

    error = one_line_error(edgectl("account", "rm", "acme"))
    assert error == "Error: account 'acme' is still used by trunks telnyx; agents bot; move or remove them first"


def test_bad_account_input_is_one_line_and_writes_nothing(edgectl, redis_client: redis.Redis) -> None:
    assert one_line_error(edgectl("trunk", "add", "telnyx", "--gateway", "192.0.2.10:5060", "--account", "ghost")) \
        == "Error: trunk 'telnyx' account: no account 'ghost' (edgectl account add ghost)"
    assert one_line_error(edgectl("account", "add", "acme", "--max-calls", "-1")) \
        == "Error: account 'acme' max_calls: must be >= 0, got -1"
    assert one_line_error(edgectl("account", "add", "acme", "--daily-spend-cap", "lots")).startswith(
        "Error: account 'acme' daily_spend_cap")
    assert one_line_error(edgectl("account", "show", "nope")) == "Error: no account 'nope'"
    assert redis_client.keys("edge:*") == []
