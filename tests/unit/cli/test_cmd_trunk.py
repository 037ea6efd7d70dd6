"""edgectl trunk (routing.cli.cmd_trunk) through click's CliRunner against a real redis."""

from __future__ import annotations

import json
import re

import pytest
import redis

from routing.tables import keys
from routing.tables.model import DataError, Trunk
from tests.unit.cli.results import ok, one_line_error


def test_trunk_gateway_specs_transport_and_number_format(edgectl, redis_client: redis.Redis) -> None:
    ok(edgectl("trunk", "add", "carrier", "--transport", "tcp",
               "--gateway", "192.0.2.1:5060",
               "--gateway", "192.0.2.2:5080;transport=tcp;priority=20;weight=50",
               "--country-code", "44", "--national-prefix", "0", "--international-prefix", "00",
               "--national-length", "10", "--direction", "inbound"))
    data = json.loads(ok(edgectl("trunk", "show", "carrier", "--json")).stdout)

    assert data["gateways"] == [
        {"address": "192.0.2.1:5060", "host": "192.0.2.1", "port": 5060, "transport": "tcp", "priority": 10, "weight": 100},
        {"address": "192.0.2.2:5080", "host": "192.0.2.2", "port": 5080, "transport": "tcp", "priority": 20, "weight": 50},
    ]
    assert data["number_format"] == {"country_code": "44", "national_prefix": "0", "international_prefix": "00", "national_length": 10}
    assert data["direction"] == "inbound" and data["max_calls"] is None
    assert redis_client.hget(keys.trunk_gateways("carrier"), "192.0.2.2:5080") == "transport=tcp;priority=20;weight=50"


def test_trunk_replace(edgectl, provisioned: redis.Redis) -> None:
    line = one_line_error(edgectl("trunk", "add", "telnyx", "--gateway", "192.0.2.99"))
    assert "already exists" in line and "--replace" in line

    ok(edgectl("trunk", "add", "telnyx", "--gateway", "192.0.2.99", "--cidr", "192.0.2.0/25", "--replace"))

    assert provisioned.hgetall(keys.trunk_gateways("telnyx")) == {"192.0.2.99:5060": "transport=udp;priority=10;weight=100"}
    assert provisioned.smembers(keys.trunk_cidrs("telnyx")) == {"192.0.2.0/25"}


def test_trunk_transfer_mode_and_refer_to_format(edgectl, redis_client: redis.Redis) -> None:
    ok(edgectl("trunk", "add", "twilio", "--gateway", "example.pstn.twilio.com", "--transfer", "refer",
               "--refer-to", "tel"))
    data = json.loads(ok(edgectl("trunk", "show", "twilio", "--json")).stdout)
    assert (data["transfer"], data["refer_to"]) == ("refer", "tel")
    assert redis_client.hget(keys.trunk("twilio"), "refer_to") == "tel"
    assert "refer (Refer-To tel)" in ok(edgectl("trunk", "show", "twilio")).stdout


def test_trunk_forwarded_caller_id(edgectl, redis_client: redis.Redis) -> None:
    ok(edgectl("trunk", "add", "bw", "--gateway", "sip.bw.example", "--transfer", "bridge",
               "--forwarded-caller-id", "did"))
    data = json.loads(ok(edgectl("trunk", "show", "bw", "--json")).stdout)
    assert (data["transfer"], data["forwarded_caller_id"]) == ("bridge", "did")
    assert redis_client.hget(keys.trunk("bw"), "forwarded_caller_id") == "did"
    assert re.search(r"forwarded caller ID\s*│\s*did\s", ok(edgectl("trunk", "show", "bw")).stdout)
    assert Trunk.from_redis("t", {}, [], {}).forwarded_caller_id.value == "diversion"
    with pytest.raises(DataError, match="forwarded_caller_id: must be one of diversion, caller, did"):
        Trunk.from_redis("t", {"forwarded_caller_id": "x"}, [], {})
    result = edgectl("trunk", "add", "x", "--gateway", "sip.bw.example", "--forwarded-caller-id", "dnis")
    assert result.exit_code != 0 and "forwarded-caller-id" in result.output


def test_trunk_deprecated_diversion_fields_in_redis_are_read() -> None:
    """Trunks stored before ``forwarded_caller_id``: ``transfer_caller_id: trunk`` is ``did``,
    ``diversion: no`` is ``caller``; the new field wins when both are there."""
    def forwarded(fields: dict[str, str]) -> str:
        return Trunk.from_redis("t", fields, [], {}).forwarded_caller_id.value

    assert forwarded({"transfer_caller_id": "transferee"}) == "diversion"
    assert forwarded({"transfer_caller_id": "trunk"}) == "did"
    assert forwarded({"diversion": "no"}) == "caller"
    assert forwarded({"diversion": "no", "transfer_caller_id": "trunk"}) == "did"
    assert forwarded({"diversion": "no", "forwarded_caller_id": "diversion"}) == "diversion"
    with pytest.raises(DataError, match="transfer_caller_id: must be one of transferee, trunk"):
        Trunk.from_redis("t", {"transfer_caller_id": "x"}, [], {})
    with pytest.raises(DataError, match="edge:trunk:t diversion: expected yes or no"):
        Trunk.from_redis("t", {"diversion": "maybe"}, [], {})


def test_trunk_bad_refer_to_in_redis_names_the_field(redis_client: redis.Redis) -> None:
    with pytest.raises(DataError, match="refer_to: must be one of sip, tel, sip-digits, sip-national"):
        Trunk.from_redis("t", {"refer_to": "fax"}, [], {})


def test_trunk_caller_id_policy(edgectl, redis_client: redis.Redis) -> None:
    ok(edgectl("trunk", "add", "twilio", "--gateway", "example.pstn.twilio.com", "--caller-id-policy", "owned",
               "--caller-id-action", "replace", "--verified-caller-id", "+14155550123"))
    data = json.loads(ok(edgectl("trunk", "show", "twilio", "--json")).stdout)
    assert (data["caller_id_policy"], data["caller_id_action"], data["verified_caller_ids"]) == \
        ("owned", "replace", ["+14155550123"])
    line = one_line_error(edgectl("trunk", "add", "bad", "--verified-caller-id", "4155550123"))
    assert "verified_caller_ids" in line


def test_trunk_session_timer(edgectl, redis_client: redis.Redis) -> None:
    ok(edgectl("trunk", "add", "carrier", "--gateway", "192.0.2.1", "--session-timer-s", "1800"))
    data = json.loads(ok(edgectl("trunk", "show", "carrier", "--json")).stdout)
    assert data["session_timer_s"] == 1800 and redis_client.hget(keys.trunk("carrier"), "session_timer_s") == "1800"
    assert "1800" in ok(edgectl("trunk", "show", "carrier")).stdout
    line = one_line_error(edgectl("trunk", "add", "short", "--gateway", "192.0.2.2", "--session-timer-s", "30"))
    assert line == "Error: trunk 'short' session_timer_s: must be between 90 and 86400 s, got 30", line
    assert redis_client.hgetall(keys.trunk("short")) == {}
