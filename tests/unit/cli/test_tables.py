"""edgectl trunk/agent/did/route together through click's CliRunner against a real redis: what the
commands write, list, show and refuse (one command's own options: test_cmd_<noun>.py)."""

from __future__ import annotations

import json
import socket
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from routing.tables import admin, keys
from routing.cli import main
from routing.tables.model import Direction, Gateway, Transport
from routing.tables.store import RedisStore
from tests.unit.cli.results import ok, one_line_error


def test_required_forms_land_in_redis_as_the_call_path_reads_them(provisioned: redis.Redis) -> None:
    store = RedisStore(provisioned, "n1")
    topo = store.topology()

    trunk = topo.trunks["telnyx"]
    assert trunk.direction is Direction.BOTH and trunk.max_calls == 30
    assert trunk.cidrs == ("192.0.2.0/24",)
    assert trunk.gateways == (Gateway("192.0.2.10", 5060, Transport.UDP, 10, 100),)
    agent = topo.agents["bot"]
    assert agent.uris == ("sip:bot@203.0.113.20:5070",) and agent.max_calls is None
    assert store.did("+14155550100").agent == "bot"  # type: ignore[union-attr]
    [entry] = store.routes("+14155550123")
    assert (entry.prefix, entry.trunk, entry.rate, entry.priority) == ("+1415", "telnyx", Decimal("0.0045"), 5)
    seed = admin.version_seed()
    assert seed - 60_000_000 < int(provisioned.get(keys.VERSION)) - 3 <= seed  # seeded (µs), then 4 writes


def test_list_and_show_json(edgectl, provisioned: redis.Redis) -> None:
    trunks = json.loads(ok(edgectl("trunk", "list", "--json")).stdout)
    assert [t["name"] for t in trunks] == ["telnyx"]
    assert trunks[0]["cidrs"] == ["192.0.2.0/24"] and trunks[0]["max_calls"] == 30

    agents = json.loads(ok(edgectl("agent", "list", "--json")).stdout)
    assert agents == [{"name": "bot", "uris": ["sip:bot@203.0.113.20:5070"], "cidrs": ["203.0.113.0/28"], "max_calls": None,
                       "allow_prefixes": [], "deny_prefixes": [], "x_headers": [], "trust_identity": False, "dtmf": None,
                       "media": {"codecs": None, "ptime_ms": None, "srtp": None, "rtp_timeout_s": None,
                                 "sip_keepalive": None, "fill_silence": None},
                       "number_format": {"country_code": "", "national_prefix": "", "international_prefix": "00",
                                         "national_length": 0}, "transfer_hosts": [], "probe": True,
                       "answer_timeout_ms": None, "hold_answer_ms": 0, "caller_id": None, "caller_ids": [], "present_dids": False,
                       "account": None}]
    assert json.loads(ok(edgectl("agent", "show", "bot", "--json")).stdout) == {**agents[0], "health": {}}

    dids = json.loads(ok(edgectl("did", "list", "--json")).stdout)
    assert dids == [{"number": "+14155550100", "trunk": "telnyx", "agent": "bot", "fallback": []}]
    assert json.loads(ok(edgectl("did", "show", "+1 415 555 0100", "--json")).stdout) == dids[0]

    routes = json.loads(ok(edgectl("route", "list", "--json")).stdout)
    assert routes == [{"prefix": "+1415", "trunk": "telnyx", "rate": "0.0045", "priority": 5, "shared": False}]
    assert json.loads(ok(edgectl("route", "show", "+1415", "--json")).stdout) == routes


def test_human_tables_show_the_rows(edgectl, provisioned: redis.Redis) -> None:
    out = ok(edgectl("trunk", "list")).stdout
    assert "telnyx" in out and "192.0.2.10:5060" in out and "192.0.2.0/24" in out
    assert "sip:bot@203.0.113.20:5070" in ok(edgectl("agent", "show", "bot")).stdout
    assert "+14155550100" in ok(edgectl("did", "list")).stdout
    out = ok(edgectl("route", "list")).stdout
    assert "+1415" in out and "0.0045" in out


def test_rm_refused_while_referenced_then_allowed(edgectl, provisioned: redis.Redis) -> None:
    line = one_line_error(edgectl("trunk", "rm", "telnyx"))
    assert "+14155550100" in line and "+1415" in line
    assert "+14155550100" in one_line_error(edgectl("agent", "rm", "bot"))

    ok(edgectl("did", "rm", "+14155550100"))
    ok(edgectl("route", "rm", "+1415"))
    ok(edgectl("agent", "rm", "bot"))
    ok(edgectl("trunk", "rm", "telnyx"))
    assert set(provisioned.keys("*")) == {keys.VERSION, keys.SCHEMA}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("trunk", "add", "t1", "--cidr", "10.0.0.300/24"), "trunk 't1' cidr: '10.0.0.300/24' does not appear"),
        (("trunk", "add", "t1", "--cidr", "10.0.0.1/8"), "has host bits set"),
        (("trunk", "add", "t1", "--gateway", "192.0.2.1:70000"), "port: must be <= 65535, got 70000"),
        (("trunk", "add", "t1", "--gateway", "192.0.2.1:50x"), "port: expected an integer"),
        (("trunk", "add", "t1", "--country-code", "0x"), "number format: country_code must be digits"),
        (("agent", "add", "a1", "--uri", "bot@example.com"), "agent 'a1' uri: not a SIP URI"),
        (("agent", "add", "a1", "--international-prefix", "+011"), "agent 'a1' number format: international_prefix must be digits"),
        (("agent", "add", "a1", "--country-code", "044"), "agent 'a1' number format: country_code must not start with 0"),
        (("agent", "add", "a1", "--national-length", "15"), "agent 'a1' number format: national_length must be between 0 and 14"),
        (("did", "add", "+14155550111", "--trunk", "ghost", "--agent", "bot"), "Error: no trunk 'ghost'"),
        (("did", "add", "+14155550111", "--trunk", "telnyx", "--agent", "ghost"), "Error: no agent 'ghost'"),
        (("did", "add", "+0123", "--trunk", "telnyx", "--agent", "bot"), "not a valid E.164 number"),
        (("did", "add", "call-me", "--trunk", "telnyx", "--agent", "bot"), "not a telephone number"),
        (("route", "add", "+1415", "--trunk", "ghost", "--rate", "0.01"), "Error: no trunk 'ghost'"),
        (("route", "add", "+14x", "--trunk", "telnyx", "--rate", "0.01"), "route prefix '+14x'"),
        (("route", "add", "+44", "--trunk", "telnyx", "--rate", "cheap"), "--rate: expected a decimal rate"),
        (("trunk", "show", "ghost"), "Error: no trunk 'ghost'"),
        (("agent", "rm", "ghost"), "Error: no agent 'ghost'"),
        (("did", "show", "+14155550199"), "Error: no did '+14155550199'"),
    ],
)
def test_errors_are_one_line(edgectl, provisioned: redis.Redis, args: tuple[str, ...], expected: str) -> None:
    before = provisioned.get(keys.VERSION)
    assert expected in one_line_error(edgectl(*args))
    assert provisioned.get(keys.VERSION) == before  # nothing written


def test_unreachable_redis_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:  # bound but not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        path = tmp_path / "edge.yaml"
        path.write_text(f"redis: {{host: 127.0.0.1, port: {sock.getsockname()[1]}}}\n", encoding="utf-8")
        result = CliRunner().invoke(main, ["--settings", str(path), "trunk", "list"])
    assert "redis unreachable" in one_line_error(result)


def test_media_policy_options(edgectl, redis_client: redis.Redis) -> None:
    ok(edgectl("trunk", "add", "twilio", "--cidr", "192.0.2.0/24", "--codecs", "pcmu,PCMA", "--ptime", "20",
               "--srtp", "sdes", "--rtp-timeout", "90"))
    ok(edgectl("agent", "add", "bot", "--uri", "sip:bot@203.0.113.20:5070", "--codecs", "opus,PCMU", "--srtp", "dtls"))
    fields = redis_client.hgetall(keys.trunk("twilio"))
    assert (fields["codecs"], fields["ptime_ms"], fields["srtp"], fields["rtp_timeout_s"]) == ("PCMU,PCMA", "20", "sdes", "90")
    agent = json.loads(ok(edgectl("agent", "show", "bot", "--json")).output)
    assert agent["media"] == {"codecs": ["opus", "PCMU"], "ptime_ms": None, "srtp": "dtls", "rtp_timeout_s": None,
                              "sip_keepalive": None, "fill_silence": None}
    shown = ok(edgectl("trunk", "show", "twilio")).output
    assert "PCMU,PCMA" in shown and "sdes" in shown
    assert "node default" in ok(edgectl("agent", "show", "bot")).output  # ptime and timeout not set
    error = one_line_error(edgectl("agent", "add", "bot2", "--uri", "sip:b@203.0.113.21", "--codecs", "G729"))
    assert "codecs: unknown codec 'G729'" in error
    assert not redis_client.exists(keys.agent("bot2"))


def test_keepalive_and_fill_silence_options(edgectl, redis_client: redis.Redis) -> None:
    ok(edgectl("trunk", "add", "carrier", "--cidr", "192.0.2.0/24", "--sip-keepalive", "yes", "--fill-silence", "cn"))
    fields = redis_client.hgetall(keys.trunk("carrier"))
    assert (fields["sip_keepalive"], fields["fill_silence"]) == ("yes", "cn")
    shown = ok(edgectl("trunk", "show", "carrier")).output
    assert "sip keepalive" in shown and "fill silence" in shown
    bad = edgectl("agent", "add", "bot", "--uri", "sip:bot@203.0.113.20:5070", "--fill-silence", "loud")
    assert bad.exit_code != 0 and not redis_client.exists(keys.agent("bot"))
