"""Fixtures of the edgectl tests: edgectl through click's CliRunner against the test redis."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from routing.cli import main
from tests.unit.cli.results import ok


@pytest.fixture
def settings_file(tmp_path: Path, redis_server: tuple[str, int], redis_client: redis.Redis) -> Path:
    """Settings pointing edgectl at the test redis (emptied by ``redis_client``)."""
    host, port = redis_server
    path = tmp_path / "edge.yaml"
    path.write_text(f"redis: {{host: {host}, port: {port}}}\n", encoding="utf-8")
    return path


@pytest.fixture
def edgectl(settings_file: Path):
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(main, ["--settings", str(settings_file), *args], catch_exceptions=False)

    return run


@pytest.fixture
def provisioned(edgectl, redis_client: redis.Redis):
    """The four required forms, exactly as documented."""
    ok(edgectl("trunk", "add", "telnyx", "--gateway", "192.0.2.10:5060", "--direction", "both",
               "--cidr", "192.0.2.0/24", "--max-calls", "30"))
    ok(edgectl("agent", "add", "bot", "--uri", "sip:bot@203.0.113.20:5070", "--cidr", "203.0.113.0/28"))
    ok(edgectl("did", "add", "+14155550100", "--trunk", "telnyx", "--agent", "bot"))
    ok(edgectl("route", "add", "+1415", "--trunk", "telnyx", "--rate", "0.0045", "--priority", "5"))
    return redis_client
