"""edgectl agent (routing.cli.cmd_agent) through click's CliRunner against a real redis."""

from __future__ import annotations

import json

import redis

from routing.call.numbers import NumberFormat
from routing.tables.store import RedisStore
from tests.unit.cli.results import ok, one_line_error


def test_agent_number_format_lands_in_redis_as_the_call_path_reads_it(edgectl, redis_client: redis.Redis) -> None:
    ok(edgectl("agent", "add", "nanp-bot", "--uri", "sip:bot@203.0.113.21", "--cidr", "203.0.113.16/28",
               "--country-code", "1", "--international-prefix", "011", "--national-length", "10"))
    data = json.loads(ok(edgectl("agent", "show", "nanp-bot", "--json")).stdout)
    assert data["number_format"] == {"country_code": "1", "national_prefix": "", "international_prefix": "011",
                                     "national_length": 10}
    agent = RedisStore(redis_client, "n1").topology().agents["nanp-bot"]
    assert agent.number_format == NumberFormat(country_code="1", international_prefix="011", national_length=10)
    out = ok(edgectl("agent", "show", "nanp-bot")).stdout
    assert "international prefix" in out and "011" in out


def test_agent_transfer_hosts_land_in_redis_as_the_call_path_reads_them(edgectl, redis_client: redis.Redis) -> None:
    ok(edgectl("agent", "add", "bot", "--uri", "sip:bot@203.0.113.21", "--transfer-host", "PBX.example.com",
               "--transfer-host", "192.0.2.7"))
    assert RedisStore(redis_client, "n1").topology().agents["bot"].transfer_hosts == ("pbx.example.com", "192.0.2.7")
    assert json.loads(ok(edgectl("agent", "show", "bot", "--json")).stdout)["transfer_hosts"] == \
        ["pbx.example.com", "192.0.2.7"]


def test_agent_transfer_host_that_is_no_host_is_a_one_line_error(edgectl, redis_client: redis.Redis) -> None:
    line = one_line_error(edgectl("agent", "add", "bot", "--uri", "sip:bot@203.0.113.21", "--transfer-host", "pbx example"))
    assert "transfer_hosts" in line and "pbx example" in line
    assert not redis_client.exists("edge:agent:bot")


def test_agent_caller_id_settings(edgectl, redis_client: redis.Redis) -> None:
    ok(edgectl("agent", "add", "bot", "--uri", "sip:bot@203.0.113.21", "--caller-id", "+14155550100",
               "--caller-id-allow", "+1415", "--present-dids"))
    agent = RedisStore(redis_client, "n1").topology().agents["bot"]
    assert (agent.caller_id, agent.caller_ids, agent.present_dids) == ("+14155550100", ("+1415",), True)
    line = one_line_error(edgectl("agent", "add", "bot2", "--uri", "sip:bot@203.0.113.22", "--caller-id", "4155550100"))
    assert "caller_id" in line and "E.164" in line
