"""Validated reads and writes of the routing tables (trunks, agents, DIDs, routes).

The one write path shared by ``edgectl`` (and later the HTTP API and
``edgectl apply``).  Rules:

* every write is one redis ``MULTI``/``EXEC`` transaction, with ``WATCH`` on
  every key whose content was checked, retried on a concurrent change; it also
  increments ``edge:version`` (the call path's topology cache applies the change
  to the next call when it moves) and sets ``edge:schema``, so a write is applied
  completely or not at all;
* the index sets (``edge:trunks``, ``edge:agents``, ``edge:dids``,
  ``edge:routes``) are kept in step with the entity keys;
* a trunk or agent is written whole: its list/set/hash keys are deleted and
  rewritten inside the transaction (no stale gateway, CIDR or URI survives);
* referential integrity: a DID needs an existing trunk and agent, a route an
  existing trunk; a trunk still owning DIDs or used by routes, or an agent
  still bound to DIDs, cannot be removed; two trunks/agents cannot claim the
  same CIDR (the source classifier could not tell them apart).

"Exists" means "visible to the call path": a trunk or agent is a member of its
index set (the call path reads the topology through it); a DID or a route is
its hash (the call path reads those directly).

Every invalid input raises :class:`~routing.model.DataError` with a one-line
message naming the field.  The client must have ``decode_responses=True``
(:func:`routing.store.connect`).
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from decimal import Decimal
from enum import Enum
from typing import Callable, Iterable, Sequence, TypeVar

import redis
from redis.client import Pipeline

from . import keys
from .model import (
    Agent,
    DataError,
    Did,
    Direction,
    Gateway,
    RouteEntry,
    Transport,
    Trunk,
    check_name,
    check_prefix,
    format_increment,
    format_params,
    parse_cidr,
    parse_params,
    parse_rate,
    parse_sip_uri,
)
from .numbers import is_e164
from .secrets import SecretBox

__all__ = [
    "ConflictError",
    "MAX_ATTEMPTS",
    "put_trunk",
    "get_trunk",
    "list_trunks",
    "remove_trunk",
    "put_agent",
    "get_agent",
    "list_agents",
    "remove_agent",
    "put_did",
    "get_did",
    "list_dids",
    "remove_did",
    "put_route",
    "list_routes",
    "remove_route",
    "check_trunk",
    "check_agent",
    "check_did",
    "check_route",
    "parse_gateway",
    "trunk_dict",
    "agent_dict",
    "did_dict",
    "route_dict",
    "transaction",
    "queue_put_trunk",
    "queue_remove_trunk",
    "queue_credentials",
    "queue_put_agent",
    "queue_remove_agent",
    "queue_put_did",
    "queue_remove_did",
    "queue_put_route",
    "queue_remove_route",
]

#: Attempts of one write before giving up when the watched keys keep changing.
MAX_ATTEMPTS = 20

E = TypeVar("E", bound=Enum)
#: Queues the writes of a transaction on a pipeline in MULTI mode.
Writes = Callable[[Pipeline], None]


class ConflictError(DataError):
    """The keys a write depends on kept changing under concurrent writers."""


# --------------------------------------------------------------------------- validation


def _enum(kind: type[E], value: object, where: str) -> E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in kind)
        raise DataError(f"{where}: must be one of {allowed}, got {value!r}") from None


def _count(value: int | None, where: str, minimum: int = 0) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where}: expected an integer, got {value!r}")
    if value < minimum:
        raise DataError(f"{where}: must be >= {minimum}, got {value}")


def _cidrs(values: Iterable[str], where: str) -> list[str]:
    """Canonical CIDR strings (``10.0.0.1`` -> ``10.0.0.1/32``), duplicates dropped, sorted."""
    return sorted({str(parse_cidr(value, where)) for value in values})


def parse_gateway(spec: str, transport: str | Transport | None = None) -> Gateway:
    """Parse a gateway spec ``HOST[:PORT][;transport=tcp][;priority=10][;weight=50]``.

    Args:
        spec: ``host:port`` (``[v6]:port`` for IPv6; port defaults to 5060),
            optionally followed by SIP-style parameters.
        transport: transport used when the spec has no ``transport`` parameter
            (default ``udp``).

    Raises:
        DataError: bad host or port, unknown parameter or transport,
            priority < 0, weight < 1.
    """
    where = f"gateway {spec.strip()!r}"
    address, _, param_text = spec.partition(";")
    host, port = Gateway.parse_address(address, where)
    params = parse_params(param_text, where)
    unknown = sorted(set(params) - {"transport", "priority", "weight"})
    if unknown:
        raise DataError(f"{where}: unknown parameter {unknown[0]!r} (use transport, priority, weight)")
    chosen = params.get("transport") or (transport.value if isinstance(transport, Transport) else transport) or "udp"
    params["transport"] = _enum(Transport, chosen.lower(), f"{where} transport").value
    return Gateway.from_redis(f"{host}:{port}", format_params(params), where)


def check_trunk(trunk: Trunk) -> Trunk:
    """Validate a trunk; return it as the call path will read it back from redis.

    CIDRs become canonical and sorted, gateways are sorted by (priority,
    -weight, address).

    Raises:
        DataError: bad name, direction, max_calls < 0, CIDR, gateway (host,
            port, transport, priority < 0, weight < 1) or a gateway listed twice.
    """
    name = check_name(trunk.name, "trunk")
    where = f"trunk {name!r}"
    direction = _enum(Direction, trunk.direction, f"{where} direction")
    _count(trunk.max_calls, f"{where} max_calls")
    cidrs = _cidrs(trunk.cidrs, f"{where} cidr")
    gateways: dict[str, str] = {}
    for gw in trunk.gateways:
        gw_where = f"{where} gateway {gw.host}:{gw.port}"
        host, port = Gateway.parse_address(f"{gw.host}:{gw.port}", gw_where)
        _count(gw.priority, f"{gw_where} priority")
        _count(gw.weight, f"{gw_where} weight", minimum=1)
        checked = dataclasses.replace(
            gw, host=host, port=port, transport=_enum(Transport, gw.transport, f"{gw_where} transport")
        )
        address, value = checked.to_redis()
        if address in gateways:
            raise DataError(f"{where} gateway {address}: listed twice")
        gateways[address] = value
    fields = dataclasses.replace(trunk, direction=direction).to_redis()
    return Trunk.from_redis(name, fields, cidrs, gateways)


def check_agent(agent: Agent) -> Agent:
    """Validate an agent; return it as the call path will read it back.

    Raises:
        DataError: bad name, URI, CIDR, max_calls < 0, or a URI listed twice.
    """
    name = check_name(agent.name, "agent")
    where = f"agent {name!r}"
    _count(agent.max_calls, f"{where} max_calls")
    uris = [parse_sip_uri(uri, f"{where} uri") for uri in agent.uris]
    for i, uri in enumerate(uris):
        if uri in uris[:i]:
            raise DataError(f"{where} uri {uri!r}: listed twice")
    cidrs = _cidrs(agent.cidrs, f"{where} cidr")
    return Agent.from_redis(name, agent.to_redis(), uris, cidrs)


def check_did(did: Did) -> Did:
    """Validate a DID binding (number must already be E.164 with ``+``).

    Raises:
        DataError: number not E.164, bad trunk or agent name.
    """
    if not is_e164(did.number or ""):
        raise DataError(f"did {did.number!r}: not an E.164 number (+ then 4-15 digits)")
    check_name(did.trunk, "trunk")
    check_name(did.agent, "agent")
    return Did(number=did.number, trunk=did.trunk, agent=did.agent)


def check_route(entry: RouteEntry) -> RouteEntry:
    """Validate a route entry; return it as the call path will read it back.

    Raises:
        DataError: bad prefix or trunk name, negative or non-finite rate, priority < 0.
    """
    prefix = check_prefix(entry.prefix)
    check_name(entry.trunk, "trunk")
    where = f"route {prefix} {entry.trunk}"
    rate = entry.rate if isinstance(entry.rate, Decimal) else parse_rate(str(entry.rate), f"{where} rate")
    if not rate.is_finite() or rate < 0:
        raise DataError(f"{where} rate: must be a non-negative number, got {entry.rate!r}")
    _count(entry.priority, f"{where} priority")
    trunk, value = dataclasses.replace(entry, rate=rate).to_redis()
    return RouteEntry.from_redis(prefix, trunk, value)


# --------------------------------------------------------------------------- transactions


def _check_schema(pipe: Pipeline) -> None:
    found = pipe.get(keys.SCHEMA)
    if found not in (None, keys.SCHEMA_VERSION):
        raise DataError(
            f"{keys.SCHEMA} is {found!r} but this edgectl writes schema {keys.SCHEMA_VERSION}; refusing to write"
        )


def version_seed() -> int:
    """First value of ``edge:version`` on an empty database: the time in µs, so a flushed and
    re-provisioned database never repeats a version that a worker cached before the flush
    (every worker's topology cache is keyed on it, see :mod:`routing.store`)."""
    return time.time_ns() // 1000


def _transaction(client: redis.Redis, watch: Sequence[str], prepare: Callable[[Pipeline], Writes]) -> None:
    """Run one optimistic transaction: WATCH, check, MULTI, write, EXEC.

    ``prepare`` runs after ``WATCH`` with the pipeline in immediate mode: it
    reads and checks (it may ``pipe.watch`` more keys), raises
    :class:`DataError` to refuse, or returns the function that queues the writes.
    ``edge:version`` is incremented and ``edge:schema`` set in the same EXEC.

    Raises:
        DataError: whatever ``prepare`` raises; :class:`ConflictError` after
            :data:`MAX_ATTEMPTS` aborted attempts.
    """
    for _ in range(MAX_ATTEMPTS):
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(keys.SCHEMA, *watch)
                _check_schema(pipe)
                writes = prepare(pipe)
                pipe.multi()
                writes(pipe)
                pipe.set(keys.VERSION, version_seed(), nx=True)
                pipe.incr(keys.VERSION)
                pipe.set(keys.SCHEMA, keys.SCHEMA_VERSION)
                pipe.execute()
                return
            except redis.WatchError:
                continue
    raise ConflictError(f"the routing tables kept changing during {MAX_ATTEMPTS} attempts; try again")


#: Public name of the optimistic transaction runner (used by ``edgectl apply``).
transaction = _transaction


def _read(client: redis.Redis, queue: Callable[[Pipeline], None]) -> list:
    """One round trip of reads (no transaction)."""
    pipe = client.pipeline(transaction=False)
    queue(pipe)
    return pipe.execute()


def _watch_members(pipe: Pipeline, index: str, key: Callable[[str], str]) -> list[str]:
    """Members of an index set, with the set and every ``key(member)`` watched."""
    pipe.watch(index)
    members = sorted(pipe.smembers(index))
    if members:
        pipe.watch(*(key(m) for m in members))
    return members


def _cidr_owners(client: redis.Redis, pipe: Pipeline, skip: tuple[str, str]) -> dict[str, str]:
    """CIDR -> ``"trunk 'x'"``/``"agent 'y'"`` for every trunk and agent but ``skip`` (kind, name).

    Watches both index sets and every CIDR set it reads.
    """
    owners: dict[str, str] = {}
    for kind, index, cidr_key in (("trunk", keys.TRUNKS, keys.trunk_cidrs), ("agent", keys.AGENTS, keys.agent_cidrs)):
        names = [n for n in _watch_members(pipe, index, cidr_key) if (kind, n) != skip]
        rows = _read(client, lambda p: [p.smembers(cidr_key(n)) for n in names])
        for name, cidrs in zip(names, rows):
            for cidr in cidrs:
                owners.setdefault(str(parse_cidr(cidr, cidr_key(name))), f"{kind} {name!r}")
    return owners


def _check_cidrs_free(owners: dict[str, str], cidrs: Iterable[str], where: str) -> None:
    for cidr in cidrs:
        if cidr in owners:
            raise DataError(f"{where} cidr {cidr}: already belongs to {owners[cidr]}")


def _dids_referencing(client: redis.Redis, pipe: Pipeline, field: str, name: str) -> list[str]:
    """DIDs whose ``field`` (``trunk`` or ``agent``) is ``name``; watches every DID read."""
    numbers = _watch_members(pipe, keys.DIDS, keys.did)
    values = _read(client, lambda p: [p.hget(keys.did(n), field) for n in numbers])
    return [n for n, value in zip(numbers, values) if value == name]


def _routes_referencing(client: redis.Redis, pipe: Pipeline, trunk: str) -> list[str]:
    """Route prefixes offering ``trunk``; watches every route read."""
    prefixes = _watch_members(pipe, keys.ROUTES, keys.route)
    found = _read(client, lambda p: [p.hexists(keys.route(prefix), trunk) for prefix in prefixes])
    return [prefix for prefix, present in zip(prefixes, found) if present]


def _listing(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _require(pipe: Pipeline, index: str, name: str, what: str) -> None:
    if not pipe.sismember(index, name):
        raise DataError(f"no {what} {name!r}")


# --------------------------------------------------------------------------- queued writes
# What each write puts on a MULTI pipeline; shared by the single-entity writes
# below and by ``edgectl apply`` (routing.tableset), which queues many in one EXEC.


def queue_put_trunk(p: Pipeline, trunk: Trunk) -> None:
    """Queue a whole-trunk write (its keys are rewritten; credentials are kept)."""
    name = trunk.name
    p.delete(*keys.trunk_keys(name))
    p.hset(keys.trunk(name), mapping=trunk.to_redis())
    if trunk.cidrs:
        p.sadd(keys.trunk_cidrs(name), *trunk.cidrs)
    if trunk.gateways:
        p.hset(keys.trunk_gateways(name), mapping=dict(gw.to_redis() for gw in trunk.gateways))
    p.sadd(keys.TRUNKS, name)


def queue_remove_trunk(p: Pipeline, name: str, username: str | None) -> None:
    """Queue the removal of a trunk, its credentials, its digest username and its slots (leases, CPS bucket)."""
    p.delete(*keys.trunk_keys(name), *keys.trunk_secret_keys(name), *keys.trunk_slot_keys(name))
    if username:
        p.hdel(keys.AUTH_USERS, username)
    p.srem(keys.TRUNKS, name)


def queue_credentials(p: Pipeline, name: str, old_username: str | None, username: str, token: str) -> None:
    """Queue a trunk's digest credentials (``token``: the encrypted password)."""
    if old_username and old_username != username:
        p.hdel(keys.AUTH_USERS, old_username)
    p.hset(keys.trunk_auth(name), mapping={"username": username, "password": token})
    p.hset(keys.AUTH_USERS, username, name)


def queue_put_agent(p: Pipeline, agent: Agent) -> None:
    """Queue a whole-agent write (URI order kept)."""
    name = agent.name
    p.delete(*keys.agent_keys(name))
    p.hset(keys.agent(name), mapping=agent.to_redis())
    if agent.uris:
        p.rpush(keys.agent_uris(name), *agent.uris)
    if agent.cidrs:
        p.sadd(keys.agent_cidrs(name), *agent.cidrs)
    p.sadd(keys.AGENTS, name)


def queue_remove_agent(p: Pipeline, name: str) -> None:
    """Queue the removal of an agent and of its slots."""
    p.delete(*keys.agent_keys(name), *keys.agent_slot_keys(name))
    p.srem(keys.AGENTS, name)


def queue_put_did(p: Pipeline, did: Did) -> None:
    """Queue a DID binding."""
    p.delete(keys.did(did.number))
    p.hset(keys.did(did.number), mapping=did.to_redis())
    p.sadd(keys.DIDS, did.number)


def queue_remove_did(p: Pipeline, number: str) -> None:
    """Queue the removal of a DID."""
    p.delete(keys.did(number))
    p.srem(keys.DIDS, number)


def queue_put_route(p: Pipeline, entry: RouteEntry) -> None:
    """Queue one route entry (trunk offered on a prefix)."""
    p.hset(keys.route(entry.prefix), *entry.to_redis())
    p.sadd(keys.ROUTES, entry.prefix)


def queue_remove_route(p: Pipeline, prefix: str, trunk: str | None) -> None:
    """Queue the removal of one trunk from a prefix, or of the whole prefix when ``trunk`` is None
    (the caller passes None when the trunk is the prefix's last one)."""
    if trunk is None:
        p.delete(keys.route(prefix))
        p.srem(keys.ROUTES, prefix)
    else:
        p.hdel(keys.route(prefix), trunk)


# --------------------------------------------------------------------------- trunks


def put_trunk(client: redis.Redis, trunk: Trunk, replace: bool = False) -> Trunk:
    """Add a trunk, or overwrite it completely with ``replace=True``.

    Returns:
        The trunk as written (what :meth:`RedisStore.topology` reads back).

    Raises:
        DataError: invalid trunk (see :func:`check_trunk`), the name exists and
            ``replace`` is False, or a CIDR already belongs to another trunk/agent.
    """
    trunk = check_trunk(trunk)
    name, where = trunk.name, f"trunk {trunk.name!r}"
    own_keys = keys.trunk_keys(trunk.name)

    def prepare(pipe: Pipeline) -> Writes:
        if pipe.sismember(keys.TRUNKS, name) and not replace:
            raise DataError(f"{where} already exists (use --replace to overwrite it)")
        _check_cidrs_free(_cidr_owners(client, pipe, ("trunk", name)), trunk.cidrs, where)
        if trunk.register is not None:
            for other in sorted(pipe.smembers(keys.TRUNKS)):
                text = pipe.hget(keys.trunk(other), "register") if other != name else ""
                if text and f"contact={trunk.register.contact_user}" in text.split(";"):
                    raise DataError(f"{where} register contact {trunk.register.contact_user!r}: already used by trunk {other!r}")

        return lambda p: queue_put_trunk(p, trunk)

    _transaction(client, [keys.TRUNKS, *own_keys], prepare)
    return trunk


def _read_trunks(client: redis.Redis, names: list[str]) -> list[Trunk]:
    rows = _read(
        client,
        lambda p: [
            (p.hgetall(keys.trunk(n)), p.smembers(keys.trunk_cidrs(n)), p.hgetall(keys.trunk_gateways(n)))
            for n in names
        ],
    )
    out = []
    for i, name in enumerate(names):
        fields, cidrs, gateways = rows[3 * i : 3 * i + 3]
        if fields or cidrs or gateways:  # same rule as RedisStore.topology
            out.append(Trunk.from_redis(name, fields, cidrs, gateways))
    return out


def get_trunk(client: redis.Redis, name: str) -> Trunk | None:
    """The trunk ``name`` as the call path sees it, or None.

    Raises:
        DataError: the stored trunk is malformed (message names the key).
    """
    if not client.sismember(keys.TRUNKS, name):
        return None
    found = _read_trunks(client, [name])
    return found[0] if found else None


def list_trunks(client: redis.Redis) -> list[Trunk]:
    """Every trunk, sorted by name.

    Raises:
        DataError: a stored trunk is malformed.
    """
    return _read_trunks(client, sorted(client.smembers(keys.TRUNKS)))


def remove_trunk(client: redis.Redis, name: str) -> None:
    """Delete a trunk and its keys.

    Raises:
        DataError: no such trunk, or DIDs or routes still reference it (named).
    """

    def prepare(pipe: Pipeline) -> Writes:
        _require(pipe, keys.TRUNKS, name, "trunk")
        dids = _dids_referencing(client, pipe, "trunk", name)
        routes = _routes_referencing(client, pipe, name)
        users = ([f"DIDs {_listing(dids)}"] if dids else []) + ([f"routes {_listing(routes)}"] if routes else [])
        if users:
            raise DataError(f"trunk {name!r} is still used by {'; '.join(users)}; remove them first")

        username = pipe.hget(keys.trunk_auth(name), "username")

        return lambda p: queue_remove_trunk(p, name, username)

    _transaction(
        client, [keys.TRUNKS, keys.DIDS, keys.ROUTES, keys.AUTH_USERS, *keys.trunk_keys(name), keys.trunk_auth(name)],
        prepare,
    )


def set_trunk_password(client: redis.Redis, box: SecretBox, name: str, username: str, password: str) -> None:
    """Store (or replace) a trunk's digest credentials; the password is encrypted with ``box``.

    The same credentials verify the trunk's peers when they authenticate to the
    edge and answer a carrier's 401/407 on termination.

    Raises:
        DataError: no such trunk, empty username or password, a username that is
            not a SIP user token, or a username already used by another trunk.
    """
    if not password:
        raise DataError(f"trunk {name!r} password: must not be empty")
    if not _USERNAME.fullmatch(username or ""):
        raise DataError(f"trunk {name!r} username: use 1-64 letters, digits or -_.!~*'()&=+$,;?/")
    token = box.encrypt(password)

    def prepare(pipe: Pipeline) -> Writes:
        _require(pipe, keys.TRUNKS, name, "trunk")
        owner = pipe.hget(keys.AUTH_USERS, username)
        if owner and owner != name:
            raise DataError(f"trunk {name!r} username {username!r}: already used by trunk {owner!r}")
        old = pipe.hget(keys.trunk_auth(name), "username")

        return lambda p: queue_credentials(p, name, old, username, token)

    _transaction(client, [keys.TRUNKS, keys.AUTH_USERS, keys.trunk_auth(name)], prepare)


def new_contact_user() -> str:
    """A fresh registration contact user: ``edge`` and 16 random hex digits (a token only the
    carrier learns, so knowing a trunk's name is not enough to call as it)."""
    return "edge" + secrets.token_hex(8)


def registration_states(client: redis.Redis, name: str) -> list[dict[str, str]]:
    """The registration state of trunk ``name`` on every node, as the edge published it
    (``edge:reg:{trunk}:{node}``), each with its ``node``; sorted by node."""
    out = []
    prefix = keys.registration(name, "")
    for key in sorted(client.scan_iter(match=keys.registration_pattern(name), count=500)):
        fields = client.hgetall(key)
        if fields:
            out.append({"node": key[len(prefix):], **fields})
    return out


def trunk_username(client: redis.Redis, name: str) -> str | None:
    """The digest username of a trunk, or None; the password is never returned."""
    return client.hget(keys.trunk_auth(name), "username") or None


_USERNAME = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/]{1,64}")
#: digest usernames edgectl accepts (RFC 3261 section 25.1 ``user`` characters, 1-64)
USERNAME_PATTERN = _USERNAME


# --------------------------------------------------------------------------- agents


def put_agent(client: redis.Redis, agent: Agent, replace: bool = False) -> Agent:
    """Add an agent, or overwrite it completely with ``replace=True`` (URI order kept).

    Returns:
        The agent as written (what :meth:`RedisStore.topology` reads back).

    Raises:
        DataError: invalid agent (see :func:`check_agent`), the name exists and
            ``replace`` is False, or a CIDR already belongs to another trunk/agent.
    """
    agent = check_agent(agent)
    name, where = agent.name, f"agent {agent.name!r}"
    own_keys = keys.agent_keys(agent.name)

    def prepare(pipe: Pipeline) -> Writes:
        if pipe.sismember(keys.AGENTS, name) and not replace:
            raise DataError(f"{where} already exists (use --replace to overwrite it)")
        _check_cidrs_free(_cidr_owners(client, pipe, ("agent", name)), agent.cidrs, where)

        return lambda p: queue_put_agent(p, agent)

    _transaction(client, [keys.AGENTS, *own_keys], prepare)
    return agent


def _read_agents(client: redis.Redis, names: list[str]) -> list[Agent]:
    rows = _read(
        client,
        lambda p: [
            (p.hgetall(keys.agent(n)), p.lrange(keys.agent_uris(n), 0, -1), p.smembers(keys.agent_cidrs(n)))
            for n in names
        ],
    )
    out = []
    for i, name in enumerate(names):
        fields, uris, cidrs = rows[3 * i : 3 * i + 3]
        if fields or uris or cidrs:  # same rule as RedisStore.topology
            out.append(Agent.from_redis(name, fields, uris, cidrs))
    return out


def get_agent(client: redis.Redis, name: str) -> Agent | None:
    """The agent ``name`` as the call path sees it, or None.

    Raises:
        DataError: the stored agent is malformed.
    """
    if not client.sismember(keys.AGENTS, name):
        return None
    found = _read_agents(client, [name])
    return found[0] if found else None


def list_agents(client: redis.Redis) -> list[Agent]:
    """Every agent, sorted by name.

    Raises:
        DataError: a stored agent is malformed.
    """
    return _read_agents(client, sorted(client.smembers(keys.AGENTS)))


def remove_agent(client: redis.Redis, name: str) -> None:
    """Delete an agent and its keys.

    Raises:
        DataError: no such agent, or DIDs are still bound to it (named).
    """

    def prepare(pipe: Pipeline) -> Writes:
        _require(pipe, keys.AGENTS, name, "agent")
        dids = _dids_referencing(client, pipe, "agent", name)
        if dids:
            raise DataError(f"agent {name!r} is still bound to DIDs {_listing(dids)}; remove them first")

        return lambda p: queue_remove_agent(p, name)

    _transaction(client, [keys.AGENTS, keys.DIDS, *keys.agent_keys(name)], prepare)


# --------------------------------------------------------------------------- DIDs


def put_did(client: redis.Redis, did: Did, replace: bool = False) -> Did:
    """Bind a DID (E.164 with ``+``) to an existing trunk and agent.

    Returns:
        The DID as written.

    Raises:
        DataError: invalid DID (see :func:`check_did`), unknown trunk or
            agent, or the DID exists and ``replace`` is False.
    """
    did = check_did(did)
    where = f"did {did.number}"

    def prepare(pipe: Pipeline) -> Writes:
        if pipe.exists(keys.did(did.number)) and not replace:
            raise DataError(f"{where} already exists (use --replace to overwrite it)")
        _require(pipe, keys.TRUNKS, did.trunk, "trunk")
        _require(pipe, keys.AGENTS, did.agent, "agent")

        return lambda p: queue_put_did(p, did)

    _transaction(client, [keys.did(did.number), keys.TRUNKS, keys.AGENTS], prepare)
    return did


def get_did(client: redis.Redis, number: str) -> Did | None:
    """The DID ``number`` (E.164 with ``+``), or None.

    Raises:
        DataError: the stored DID is malformed.
    """
    fields = client.hgetall(keys.did(number))
    return Did.from_redis(number, fields) if fields else None


def list_dids(client: redis.Redis) -> list[Did]:
    """Every DID of the index set, sorted by number.

    Raises:
        DataError: a stored DID is malformed.
    """
    numbers = sorted(client.smembers(keys.DIDS))
    rows = _read(client, lambda p: [p.hgetall(keys.did(n)) for n in numbers])
    return [Did.from_redis(n, fields) for n, fields in zip(numbers, rows) if fields]


def remove_did(client: redis.Redis, number: str) -> None:
    """Delete a DID.

    Raises:
        DataError: no such DID.
    """

    def prepare(pipe: Pipeline) -> Writes:
        if not pipe.exists(keys.did(number)) and not pipe.sismember(keys.DIDS, number):
            raise DataError(f"no did {number!r}")

        return lambda p: queue_remove_did(p, number)

    _transaction(client, [keys.did(number), keys.DIDS], prepare)


# --------------------------------------------------------------------------- routes


def put_route(client: redis.Redis, entry: RouteEntry, replace: bool = False) -> RouteEntry:
    """Offer an existing trunk for a destination prefix at a rate.

    Returns:
        The entry as written (what :meth:`RedisStore.routes` reads back).

    Raises:
        DataError: invalid entry (see :func:`check_route`), unknown trunk, or
            the trunk is already on the prefix and ``replace`` is False.
    """
    entry = check_route(entry)
    route_key = keys.route(entry.prefix)

    def prepare(pipe: Pipeline) -> Writes:
        if pipe.hexists(route_key, entry.trunk) and not replace:
            raise DataError(
                f"route {entry.prefix} via trunk {entry.trunk!r} already exists (use --replace to overwrite it)"
            )
        _require(pipe, keys.TRUNKS, entry.trunk, "trunk")

        return lambda p: queue_put_route(p, entry)

    _transaction(client, [route_key, keys.TRUNKS], prepare)
    return entry


def list_routes(client: redis.Redis, prefix: str | None = None) -> list[RouteEntry]:
    """Route entries of one exact prefix, or of every prefix in the index set.

    Returns:
        Entries sorted by prefix, then as least-cost routing tries them
        (rate, priority, trunk).

    Raises:
        DataError: bad ``prefix``, or a stored entry is malformed.
    """
    prefixes = [check_prefix(prefix)] if prefix is not None else sorted(client.smembers(keys.ROUTES))
    rows = _read(client, lambda p: [p.hgetall(keys.route(x)) for x in prefixes])
    entries = [
        RouteEntry.from_redis(x, trunk, value) for x, fields in zip(prefixes, rows) for trunk, value in fields.items()
    ]
    return sorted(entries, key=lambda e: (e.prefix, e.rate, e.priority, e.trunk))


def remove_route(client: redis.Redis, prefix: str, trunk: str | None = None) -> None:
    """Remove one trunk from a prefix, or the whole prefix when ``trunk`` is None.

    The prefix leaves ``edge:routes`` when its last trunk is removed.

    Raises:
        DataError: bad prefix, no such prefix, or the trunk is not on it.
    """
    check_prefix(prefix)
    route_key = keys.route(prefix)

    def prepare(pipe: Pipeline) -> Writes:
        trunks = set(pipe.hkeys(route_key))
        if not trunks and not pipe.sismember(keys.ROUTES, prefix):
            raise DataError(f"no route {prefix!r}")
        if trunk is not None and trunk not in trunks:
            raise DataError(f"no route {prefix!r} via trunk {trunk!r}")
        whole = trunk is None or trunks == {trunk}

        return lambda p: queue_remove_route(p, prefix, None if whole else trunk)

    _transaction(client, [route_key, keys.ROUTES], prepare)


# --------------------------------------------------------------------------- JSON shapes


def trunk_dict(trunk: Trunk) -> dict[str, object]:
    """JSON shape of a trunk: name, direction, max_calls (null = unlimited),
    cidrs, gateways [{address, host, port, transport, priority, weight}], number_format,
    max_cps (calls/s, null = unlimited), max_duration_s, allow_prefixes, deny_prefixes,
    dtmf (rfc4733, info, inband; null = the node's dtmf.default_mode),
    billing_increment (``"first/next"`` s), max_rate (per-minute, decimal string or null),
    daily_spend_cap (currency per UTC day, decimal string or null), inbound_rate (per-minute
    price of origination calls, decimal string or null),
    media {codecs, ptime_ms, srtp, rtp_timeout_s, sip_keepalive, fill_silence} (null = node default)."""
    fmt = trunk.number_format
    return {
        "name": trunk.name,
        "direction": trunk.direction.value,
        "max_calls": trunk.max_calls,
        "cidrs": list(trunk.cidrs),
        "gateways": [
            {
                "address": gw.address,
                "host": gw.host,
                "port": gw.port,
                "transport": gw.transport.value,
                "priority": gw.priority,
                "weight": gw.weight,
            }
            for gw in trunk.gateways
        ],
        "number_format": {
            "country_code": fmt.country_code,
            "national_prefix": fmt.national_prefix,
            "international_prefix": fmt.international_prefix,
            "national_length": fmt.national_length,
        },
        "max_cps": trunk.max_cps,
        "max_duration_s": trunk.max_duration_s,
        "allow_prefixes": list(trunk.allow_prefixes),
        "deny_prefixes": list(trunk.deny_prefixes),
        "auth": trunk.auth.value,
        "x_headers": list(trunk.x_headers),
        "trust_identity": trunk.trust_identity,
        "probe": trunk.probe,
        "register": None if trunk.register is None else {
            "registrar": trunk.register.registrar,
            "transport": trunk.register.transport.value,
            "expires_s": trunk.register.expires_s,
            "contact_user": trunk.register.contact_user,
            "user": trunk.register.user or None,
        },
        "dtmf": None if trunk.dtmf is None else trunk.dtmf.value,
        "billing_increment": format_increment(trunk.billing_increment),
        "max_rate": None if trunk.max_rate is None else str(trunk.max_rate),
        "daily_spend_cap": None if trunk.daily_spend_cap is None else str(trunk.daily_spend_cap),
        "inbound_rate": None if trunk.inbound_rate is None else str(trunk.inbound_rate),
        "media": trunk.media.to_json(),
    }


def agent_dict(agent: Agent) -> dict[str, object]:
    """JSON shape of an agent: name, uris (in order), cidrs, max_calls (null = unlimited),
    allow_prefixes, deny_prefixes, dtmf (null = the node's dtmf.default_mode),
    media {codecs, ptime_ms, srtp, rtp_timeout_s, sip_keepalive, fill_silence} (null = node default)."""
    return {
        "name": agent.name,
        "uris": list(agent.uris),
        "cidrs": list(agent.cidrs),
        "max_calls": agent.max_calls,
        "allow_prefixes": list(agent.allow_prefixes),
        "deny_prefixes": list(agent.deny_prefixes),
        "x_headers": list(agent.x_headers),
        "trust_identity": agent.trust_identity,
        "dtmf": None if agent.dtmf is None else agent.dtmf.value,
        "media": agent.media.to_json(),
    }


def did_dict(did: Did) -> dict[str, object]:
    """JSON shape of a DID: number, trunk, agent."""
    return {"number": did.number, "trunk": did.trunk, "agent": did.agent}


def route_dict(entry: RouteEntry) -> dict[str, object]:
    """JSON shape of a route entry: prefix, trunk, rate (decimal string, per minute), priority."""
    return {"prefix": entry.prefix, "trunk": entry.trunk, "rate": str(entry.rate), "priority": entry.priority}
