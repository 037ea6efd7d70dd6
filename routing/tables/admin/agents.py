"""Admin of voice agents: validate, write, read, remove; the JSON shape of an agent."""

from __future__ import annotations


import redis
from redis.client import Pipeline

from routing.tables import keys
from routing.tables.admin.common import (
    Writes,
    canonical_cidrs,
    check_cidrs_free,
    check_count,
    cidr_owners,
    dids_referencing,
    listing,
    number_format_dict,
    require,
    transaction,
)
from routing.tables.model import Agent, DataError, check_name, parse_sip_uri
from routing.tables.topology import read_topology
from routing.tables.admin.accounts import check_account_ref, check_agent_move

__all__ = ["check_agent", "queue_put_agent", "queue_remove_agent", "put_agent", "get_agent", "list_agents", "remove_agent", "agent_dict"]

def check_agent(agent: Agent) -> Agent:
    """Validate an agent; return it as the call path will read it back.

    Raises:
        DataError: bad name, URI, CIDR, max_calls < 0, or a URI listed twice.
    """
    name = check_name(agent.name, "agent")
    where = f"agent {name!r}"
    check_count(agent.max_calls, f"{where} max_calls")
    uris = [parse_sip_uri(uri, f"{where} uri") for uri in agent.uris]
    for i, uri in enumerate(uris):
        if uri in uris[:i]:
            raise DataError(f"{where} uri {uri!r}: listed twice")
    cidrs = canonical_cidrs(agent.cidrs, f"{where} cidr")
    return Agent.from_redis(name, agent.to_redis(), uris, cidrs)


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


def put_agent(client: redis.Redis, agent: Agent, replace: bool = False) -> Agent:
    """Add an agent, or overwrite it completely with ``replace=True`` (URI order kept).

    Returns:
        The agent as written (what :meth:`RedisStore.topology` reads back).

    Raises:
        DataError: invalid agent (see :func:`check_agent`), the name exists and
            ``replace`` is False, a CIDR already belongs to another trunk/agent, its account does
            not exist or a DID bound to it would then be of a trunk of another account.
    """
    agent = check_agent(agent)
    name, where = agent.name, f"agent {agent.name!r}"
    own_keys = keys.agent_keys(agent.name)

    def prepare(pipe: Pipeline) -> Writes:
        if pipe.sismember(keys.AGENTS, name) and not replace:
            raise DataError(f"{where} already exists (use --replace to overwrite it)")
        check_cidrs_free(cidr_owners(client, pipe, ("agent", name)), agent.cidrs, where)
        check_account_ref(pipe, agent.account, where)
        check_agent_move(client, pipe, name, agent.account, where)

        return lambda p: queue_put_agent(p, agent)

    transaction(client, [keys.AGENTS, *own_keys], prepare)
    return agent


def _read_agents(client: redis.Redis, names: list[str]) -> list[Agent]:
    return list(read_topology(client, agent_names=names).agents.values())


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
        require(pipe, keys.AGENTS, name, "agent")
        dids = dids_referencing(client, pipe, "agent", name)
        if dids:
            raise DataError(f"agent {name!r} is still bound to DIDs {listing(dids)}; remove them first")

        return lambda p: queue_remove_agent(p, name)

    transaction(client, [keys.AGENTS, keys.DIDS, *keys.agent_keys(name)], prepare)


def agent_dict(agent: Agent) -> dict[str, object]:
    """JSON shape of an agent: name, uris (in order), cidrs, max_calls (null = unlimited),
    allow_prefixes, deny_prefixes, dtmf (null = the node's dtmf.default_mode),
    media {codecs, ptime_ms, srtp, rtp_timeout_s, sip_keepalive, fill_silence} (null = node default),
    number_format {country_code, national_prefix, international_prefix, national_length} (as a trunk's),
    transfer_hosts (hosts of SIP URI transfer targets), probe (OPTIONS health checks of its URIs),
    answer_timeout_ms (null = the node's sip.ringing_timeout_ms), hold_answer_ms (0 = off), caller_id (default caller ID or null),
    caller_ids (E.164 prefixes it may present), present_dids (its DIDs too), account (null = none)."""
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
        "number_format": number_format_dict(agent.number_format),
        "transfer_hosts": list(agent.transfer_hosts),
        "probe": agent.probe,
        "answer_timeout_ms": agent.answer_timeout_ms,
        "hold_answer_ms": agent.hold_answer_ms,
        "caller_id": agent.caller_id or None,
        "caller_ids": list(agent.caller_ids),
        "present_dids": agent.present_dids,
        "account": agent.account or None,
    }
