"""Shared fixtures: a real redis-server per test session, emptied before each test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest
import redis

from routing.tables.store import connect

from tests.helpers import free_port, wait_until

if TYPE_CHECKING:
    from tests.postgres import PgServer


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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator["PgServer"]:
    """A real PostgreSQL server on 127.0.0.1 for the whole session (tests/postgres.py), stopped
    and removed afterwards."""
    from tests.postgres import PgServer

    server = PgServer("127.0.0.1", free_port())
    try:
        server.init().start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def postgres_dsn(postgres_server: "PgServer") -> str:
    """The server's DSN, with the ``call_records`` table dropped first (each test starts empty)."""
    import psycopg

    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS call_records")
    return postgres_server.dsn
