"""The one reader of trunks and agents from redis: the call path's topology
(:meth:`routing.tables.store.RedisStore.topology`) and the admin layer's reads
(:mod:`routing.tables.admin`) both go through it.

A trunk is ``edge:trunk:{name}`` (hash), ``edge:trunk:{name}:cidrs`` (set) and
``edge:trunk:{name}:gateways`` (hash); an agent is ``edge:agent:{name}`` (hash),
``edge:agent:{name}:uris`` (list) and ``edge:agent:{name}:cidrs`` (set)
(``docs/redis-schema.md``).  A name whose three keys are all empty is absent (a
member of the index set whose keys were deleted by hand), never an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import redis

from routing.tables import keys
from routing.tables.model import Account, Agent, Trunk

__all__ = ["Topology", "read_topology"]

#: redis replies per trunk and per agent in the reading pipeline
_ROWS = 3


@dataclass(frozen=True, slots=True)
class Topology:
    """All trunks and agents, as needed to classify a request's source; with the call path's copy
    (:meth:`routing.tables.store.RedisStore.topology`), the agent URIs marked down by the prober
    (``{agent}/{uri}``, :mod:`routing.monitor.agentprober`); the accounts that exist (empty in a
    deployment that names none, docs/identity.md#accounts)."""

    trunks: dict[str, Trunk]
    agents: dict[str, Agent]
    agents_down: frozenset[str] = frozenset()
    accounts: dict[str, Account] = field(default_factory=dict)


def read_topology(client: redis.Redis, trunk_names: Iterable[str] = (), agent_names: Iterable[str] = (),
                  account_names: Iterable[str] = ()) -> Topology:
    """The trunks, agents and accounts of these names, in one round trip (a pipeline without transaction).

    Args:
        client: a client with ``decode_responses=True``.
        trunk_names: trunk names (usually ``SMEMBERS edge:trunks``); absent ones are left out.
        agent_names: agent names (usually ``SMEMBERS edge:agents``); absent ones are left out.
        account_names: account names (usually ``SMEMBERS edge:accounts``); absent ones are left out.

    Returns:
        the trunks and agents by name, in the order of the names given.

    Raises:
        DataError: a stored trunk or agent is malformed (the message names the key).
        redis.ConnectionError, redis.TimeoutError: redis unreachable or slow (callers map these).
    """
    trunk_names, agent_names, account_names = list(trunk_names), list(agent_names), list(account_names)
    pipe = client.pipeline(transaction=False)
    for name in trunk_names:
        pipe.hgetall(keys.trunk(name))
        pipe.smembers(keys.trunk_cidrs(name))
        pipe.hgetall(keys.trunk_gateways(name))
    for name in agent_names:
        pipe.hgetall(keys.agent(name))
        pipe.lrange(keys.agent_uris(name), 0, -1)
        pipe.smembers(keys.agent_cidrs(name))
    for name in account_names:
        pipe.hgetall(keys.account(name))
    rows = pipe.execute() if trunk_names or agent_names or account_names else []
    trunks: dict[str, Trunk] = {}
    agents: dict[str, Agent] = {}
    for i, name in enumerate(trunk_names):
        fields, cidrs, gateways = rows[_ROWS * i : _ROWS * i + _ROWS]
        if fields or cidrs or gateways:
            trunks[name] = Trunk.from_redis(name, fields, cidrs, gateways)
    offset = _ROWS * len(trunk_names)
    for i, name in enumerate(agent_names):
        fields, uris, cidrs = rows[offset + _ROWS * i : offset + _ROWS * i + _ROWS]
        if fields or uris or cidrs:
            agents[name] = Agent.from_redis(name, fields, uris, cidrs)
    offset += _ROWS * len(agent_names)
    accounts = {name: Account.from_redis(name, fields)
                for name, fields in zip(account_names, rows[offset:]) if fields}
    return Topology(trunks=trunks, agents=agents, accounts=accounts)
