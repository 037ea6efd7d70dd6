"""Shared fixtures: a real redis-server per test session, emptied before each test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
import redis

from routing.tables.store import connect

from tests.helpers import free_port, wait_until


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real redis-server on loopback for the whole session: (host, port)."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (apt-get install redis-server)"
    port = free_port()
    workdir: Path = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(host="127.0.0.1", port=port)

    def up() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_until(up, what="redis-server to answer PING")
    yield "127.0.0.1", port
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def redis_client(redis_server: tuple[str, int]) -> Iterator[redis.Redis]:
    """A client (``decode_responses=True``) on an empty database."""
    host, port = redis_server
    client = connect(host, port, timeout_ms=2000, connect_timeout_ms=2000)
    client.flushall()
    yield client
    client.close()
