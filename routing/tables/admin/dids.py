"""Admin of DIDs (E.164 numbers bound to a trunk and an agent): validate, write, read, remove."""

from __future__ import annotations


import redis
from redis.client import Pipeline

from routing.call.numbers import is_e164
from routing.tables import keys
from routing.tables.admin.common import Writes, read, require, transaction
from routing.tables.admin.accounts import check_did_accounts
from routing.tables.model import DataError, Did, check_name
from routing.tables.model.did import FallbackKind, parse_fallback

__all__ = ["check_did", "queue_put_did", "queue_remove_did", "put_did", "get_did", "list_dids", "remove_did", "did_dict"]

def check_did(did: Did) -> Did:
    """Validate a DID binding (number must already be E.164 with ``+``).

    Raises:
        DataError: number not E.164, bad trunk or agent name.
    """
    if not is_e164(did.number or ""):
        raise DataError(f"did {did.number!r}: not an E.164 number (+ then 4-15 digits)")
    check_name(did.trunk, "trunk")
    check_name(did.agent, "agent")
    fallback = parse_fallback(",".join(str(s) for s in did.fallback), f"did {did.number} fallback")
    return Did(number=did.number, trunk=did.trunk, agent=did.agent, fallback=fallback)


def queue_put_did(p: Pipeline, did: Did) -> None:
    """Queue a DID binding."""
    p.delete(keys.did(did.number))
    p.hset(keys.did(did.number), mapping=did.to_redis())
    p.sadd(keys.DIDS, did.number)


def queue_remove_did(p: Pipeline, number: str) -> None:
    """Queue the removal of a DID."""
    p.delete(keys.did(number))
    p.srem(keys.DIDS, number)


def put_did(client: redis.Redis, did: Did, replace: bool = False) -> Did:
    """Bind a DID (E.164 with ``+``) to an existing trunk and agent.

    Returns:
        The DID as written.

    Raises:
        DataError: invalid DID (see :func:`check_did`), unknown trunk or
            agent, an agent of another account than the trunk's, or the DID exists and ``replace`` is False.
    """
    did = check_did(did)
    where = f"did {did.number}"

    def prepare(pipe: Pipeline) -> Writes:
        if pipe.exists(keys.did(did.number)) and not replace:
            raise DataError(f"{where} already exists (use --replace to overwrite it)")
        require(pipe, keys.TRUNKS, did.trunk, "trunk")
        require(pipe, keys.AGENTS, did.agent, "agent")
        for step in did.fallback:
            if step.kind is FallbackKind.AGENT:
                require(pipe, keys.AGENTS, step.value, "fallback agent")
        check_did_accounts(client, pipe, did.number, did.trunk, did.agent,
                           tuple(s.value for s in did.fallback if s.kind is FallbackKind.AGENT))

        return lambda p: queue_put_did(p, did)

    transaction(client, [keys.did(did.number), keys.TRUNKS, keys.AGENTS], prepare)
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
    rows = read(client, lambda p: [p.hgetall(keys.did(n)) for n in numbers])
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

    transaction(client, [keys.did(number), keys.DIDS], prepare)


def did_dict(did: Did) -> dict[str, object]:
    """JSON shape of a DID: number, trunk, agent, fallback (``["agent:NAME", "uri:SIP_URI"]``, in order)."""
    return {"number": did.number, "trunk": did.trunk, "agent": did.agent, "fallback": [str(s) for s in did.fallback]}
