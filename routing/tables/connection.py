"""Redis clients of the edge: one redis server, or the master of a Sentinel set (redis-py's
:mod:`redis.sentinel`), with bounded socket timeouts and no retry of a command that may have run.

Every client of the edge (the call path in each Kamailio worker, ``edgectl``, the monitor) comes
from :func:`connect`, so all of them follow a Sentinel failover the same way: a connection is
opened to the address the Sentinels give for ``master_name`` (``SENTINEL
get-master-addr-by-name``, asked of each Sentinel in turn until one answers), and a connection
that breaks (the master died) or meets ``READONLY`` (the old master came back as a replica) is
closed; the next command asks the Sentinels again.  No failover logic of our own: redis-py's
``SentinelConnectionPool`` and ``SentinelManagedConnection`` do it
(https://redis.readthedocs.io/en/stable/connections.html#sentinel-client).
"""

from __future__ import annotations

from typing import Any, Sequence

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

__all__ = ["connect", "parse_address", "run_script", "send"]


def parse_address(text: str, default_port: int = 26379) -> tuple[str, int]:
    """``(host, port)`` of ``host:port``, ``[v6]:port``, or a bare host (``default_port``).

    Raises:
        ValueError: an empty host or a port that is not 1-65535.
    """
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"{text!r}: no host")
    port = int(port_text) if port_text.isdigit() else default_port if not port_text else -1
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: the port must be 1-65535")
    return host, port


def connect(
    host: str = "127.0.0.1",
    port: int = 6379,
    db: int = 0,
    password: str | None = None,
    timeout_ms: int = 200,
    connect_timeout_ms: int = 200,
    single_connection: bool = False,
    sentinels: Sequence[tuple[str, int]] = (),
    master_name: str = "",
    sentinel_password: str | None = None,
) -> redis.Redis:
    """Open a redis client with bounded socket timeouts and no retries.

    ``single_connection`` (a Kamailio worker: one process, one thread) keeps one connection
    instead of a pool: the pool checks each connection out and polls it before every command,
    which costs about a third of redis-py's CPU per command (measured: 54 against 38 µs per
    EVALSHA).  Such a client connects at once and raises ``redis.ConnectionError`` when redis is
    down (``redis.sentinel.MasterNotFoundError``, a ``ConnectionError``, when no Sentinel knows
    a master).

    A Kamailio worker must never block on redis: redis-py's own default is
    no timeout, so both the connect and the command timeouts are explicit.  A
    command is retried once, at once, only after a connection error (a
    connection broken while redis restarted, or whose master died, is replaced without failing
    a call when a master answers); a timeout is never retried, so a hung redis costs one timeout
    and the caller answers 503.

    Args:
        host, port: the redis server; not used with ``sentinels``.
        db, password: database number and ``requirepass`` of the redis server (the master).
        timeout_ms: per-command socket timeout (ms).
        connect_timeout_ms: connect timeout (ms), also each Sentinel's query timeout: finding the
            master costs at most one connect timeout per Sentinel that does not answer.
        sentinels: ``(host, port)`` of each Sentinel; empty = no Sentinel, ``host:port`` is redis.
        master_name: the master's name in the Sentinels' configuration (``sentinel monitor NAME``).
        sentinel_password: the Sentinels' own ``requirepass``, if any.
    """
    common = dict(
        db=db,
        password=password,
        socket_timeout=timeout_ms / 1000,
        socket_connect_timeout=connect_timeout_ms / 1000,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        # without this redis-py closes the connection and raises instead of retrying; a pooled client
        # hid that by polling each connection before use (a connection the server closed is replaced)
        retry_on_error=[redis.ConnectionError],
        retry_on_timeout=False,
        decode_responses=True,
        lib_name=None,  # no CLIENT SETINFO round trip on each (re)connect
        lib_version=None,
    )
    if not sentinels:
        return redis.Redis(host=host, port=port, single_connection_client=single_connection, **common)
    sentinel = Sentinel(
        list(sentinels),
        sentinel_kwargs={"socket_timeout": connect_timeout_ms / 1000, "socket_connect_timeout": connect_timeout_ms / 1000,
                         "password": sentinel_password, "lib_name": None, "lib_version": None},
    )
    pool = SentinelConnectionPool(master_name, sentinel, is_master=True, check_connection=False, **common)
    return redis.Redis(connection_pool=pool, single_connection_client=single_connection)


def send(client: redis.Redis, *commands: Sequence[Any]) -> list[Any]:
    """Send ``commands`` (each ``(name, *args)``) in one write and return their raw replies in
    order: an error reply is returned as its ``redis.ResponseError`` (e.g. ``NoScriptError``),
    not raised, and no redis-py response callback is applied (``HGETALL`` is a flat list,
    ``SMEMBERS`` a list).

    On a worker's single-connection client (:func:`connect` ``single_connection``) the commands go
    straight to that connection (packed by hiredis, ``send_packed_command``, ``read_response``),
    without redis-py's per-command layers (script object, ``execute_command``, retry wrapper,
    pipeline object, response callbacks), which cost more CPU than the round trip's own socket
    calls on the call path.  The retry policy is :func:`connect`'s: after a connection error the
    connection is closed and the whole write sent once more on a new one; a timeout closes the
    connection (its late reply is never read by the next command) and is raised, never retried.
    A pooled client (no ``connection``) does the same on a connection it takes from its pool.

    Raises:
        redis.ConnectionError: still no connection after the retry.
        redis.TimeoutError: redis did not answer within the socket timeout.
    """
    conn = client.connection
    pool = client.connection_pool if conn is None else None
    if pool is not None:
        conn = pool.get_connection()
    try:
        # hiredis (redis-py's own packer here) on the whole write at once: the same bytes as pack_commands
        packed = [b"".join([hiredis.pack_command(tuple(command)) for command in commands])]
        for attempt in (0, 1):
            try:
                conn.send_packed_command(packed, check_health=False)
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(conn.read_response())
                    except redis.ResponseError as exc:  # read whole: the connection stays in step
                        replies.append(exc)
                return replies
            except redis.ConnectionError:
                conn.disconnect()
                if attempt:
                    raise
        raise AssertionError("unreachable")
    finally:
        if pool is not None:
            pool.release(conn)


def run_script(script: redis.commands.core.Script, keys_: Sequence[str], args: Sequence[object]) -> object:
    """``EVALSHA`` of a registered script through :func:`routing.tables.connection.send` (one write,
    no redis-py command layers); a server that does not hold the script yet (``NOSCRIPT``: redis
    restarted, ``SCRIPT FLUSH``) gets it through redis-py's script object, which loads it.

    Raises:
        redis.ResponseError: the script failed.
        redis.ConnectionError, redis.TimeoutError: as :func:`~routing.tables.connection.send`.
    """
    (reply,) = send(script.registered_client, ("EVALSHA", script.sha, len(keys_), *keys_, *args))
    if isinstance(reply, redis.exceptions.NoScriptError):
        return script(keys=keys_, args=args)
    if isinstance(reply, redis.ResponseError):
        raise reply
    return reply
