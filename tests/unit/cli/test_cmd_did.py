"""edgectl did (routing.cli.cmd_did) through click's CliRunner against a real redis."""

from __future__ import annotations

import json

import redis

from routing.tables import keys
from tests.unit.cli.results import ok, one_line_error


def test_did_number_normalised_to_e164(edgectl, provisioned: redis.Redis) -> None:
    ok(edgectl("did", "add", "1 (415) 555-0101", "--trunk", "telnyx", "--agent", "bot"))
    ok(edgectl("did", "add", "0014155550102", "--trunk", "telnyx", "--agent", "bot"))
    assert provisioned.smembers(keys.DIDS) == {"+14155550100", "+14155550101", "+14155550102"}


def test_did_fallback_steps_in_order(edgectl, provisioned: redis.Redis) -> None:
    ok(edgectl("agent", "add", "humans", "--uri", "sip:queue@203.0.113.30"))
    out = ok(edgectl("did", "add", "+14155550177", "--trunk", "telnyx", "--agent", "bot",
                     "--fallback", "agent:humans", "--fallback", "uri:sip:vm@pbx.example.com")).stdout
    assert "then agent:humans, uri:sip:vm@pbx.example.com" in out
    shown = json.loads(ok(edgectl("did", "show", "+14155550177", "--json")).stdout)
    assert shown["fallback"] == ["agent:humans", "uri:sip:vm@pbx.example.com"]
    line = one_line_error(edgectl("did", "add", "+14155550178", "--trunk", "telnyx", "--agent", "bot",
                                  "--fallback", "voicemail"))
    assert "fallback" in line and "'voicemail'" in line
