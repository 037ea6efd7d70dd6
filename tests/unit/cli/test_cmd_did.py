"""edgectl did (routing.cli.cmd_did) through click's CliRunner against a real redis."""

from __future__ import annotations

import redis

from routing.tables import keys
from tests.unit.cli.results import ok


def test_did_number_normalised_to_e164(edgectl, provisioned: redis.Redis) -> None:
    ok(edgectl("did", "add", "1 (415) 555-0101", "--trunk", "telnyx", "--agent", "bot"))
    ok(edgectl("did", "add", "0014155550102", "--trunk", "telnyx", "--agent", "bot"))
    assert provisioned.smembers(keys.DIDS) == {"+14155550100", "+14155550101", "+14155550102"}
