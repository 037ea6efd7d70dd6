"""Admin of accounts (docs/identity.md#accounts): validate, write, read, remove; and the account
rules every trunk, agent and DID write checks:

* a trunk or agent may name only an account that exists (``edge:accounts``);
* a DID binds only to an agent of its trunk's account (the unnamed account included);
* moving a trunk or an agent to another account is refused while a DID would then bind across
  accounts; an account cannot be removed while a trunk or an agent names it.

Every check runs inside the write's ``WATCH`` transaction (:func:`routing.tables.admin.common.transaction`).
"""

from __future__ import annotations

from typing import Callable

import redis
from redis.client import Pipeline

from routing.tables import keys
from routing.tables.admin.common import Writes, listing, read, require, transaction
from routing.tables.model import Account, DataError, check_account

__all__ = ["put_account", "get_account", "list_accounts", "remove_account", "account_dict", "queue_put_account",
           "queue_remove_account", "check_account_ref", "check_trunk_move", "check_agent_move", "check_did_accounts"]


def queue_put_account(p: Pipeline, account: Account) -> None:
    """Queue a whole-account write."""
    p.delete(keys.account(account.name))
    p.hset(keys.account(account.name), mapping=account.to_redis())
    p.sadd(keys.ACCOUNTS, account.name)


def queue_remove_account(p: Pipeline, name: str) -> None:
    """Queue the removal of an account and of its slots (lease ZSET, CPS bucket); its spend
    counters expire by themselves."""
    p.delete(keys.account(name), *keys.account_slot_keys(name))
    p.srem(keys.ACCOUNTS, name)


def put_account(client: redis.Redis, account: Account, replace: bool = False) -> Account:
    """Add an account, or overwrite its limits with ``replace=True``.

    Returns:
        The account as written.

    Raises:
        DataError: invalid account (:func:`check_account`), or the name exists and ``replace`` is False.
    """
    account = check_account(account)

    def prepare(pipe: Pipeline) -> Writes:
        if pipe.sismember(keys.ACCOUNTS, account.name) and not replace:
            raise DataError(f"account {account.name!r} already exists (use --replace to overwrite it)")
        return lambda p: queue_put_account(p, account)

    transaction(client, [keys.ACCOUNTS, keys.account(account.name)], prepare)
    return account


def get_account(client: redis.Redis, name: str) -> Account | None:
    """The account ``name``, or None.

    Raises:
        DataError: the stored account is malformed.
    """
    if not client.sismember(keys.ACCOUNTS, name):
        return None
    return Account.from_redis(name, client.hgetall(keys.account(name)))


def list_accounts(client: redis.Redis) -> list[Account]:
    """Every account, sorted by name.

    Raises:
        DataError: a stored account is malformed.
    """
    names = sorted(client.smembers(keys.ACCOUNTS))
    rows = read(client, lambda p: [p.hgetall(keys.account(n)) for n in names])
    return [Account.from_redis(n, fields) for n, fields in zip(names, rows)]


def _members_of(client: redis.Redis, pipe: Pipeline, index: str, key: Callable[[str], str], name: str) -> list[str]:
    """Members of ``index`` whose hash ``key(member)`` names account ``name``; watches what it reads."""
    pipe.watch(index)
    members = sorted(pipe.smembers(index))
    if members:
        pipe.watch(*(key(m) for m in members))
    values = read(client, lambda p: [p.hget(key(m), "account") for m in members])
    return [m for m, value in zip(members, values) if (value or "") == name]


def remove_account(client: redis.Redis, name: str) -> None:
    """Delete an account.

    Raises:
        DataError: no such account, or trunks or agents still name it (named).
    """

    def prepare(pipe: Pipeline) -> Writes:
        require(pipe, keys.ACCOUNTS, name, "account")
        trunks = _members_of(client, pipe, keys.TRUNKS, keys.trunk, name)
        agents = _members_of(client, pipe, keys.AGENTS, keys.agent, name)
        users = ([f"trunks {listing(trunks)}"] if trunks else []) + ([f"agents {listing(agents)}"] if agents else [])
        if users:
            raise DataError(f"account {name!r} is still used by {'; '.join(users)}; move or remove them first")
        return lambda p: queue_remove_account(p, name)

    transaction(client, [keys.ACCOUNTS, keys.account(name)], prepare)


def check_account_ref(pipe: Pipeline, account: str, where: str) -> None:
    """A trunk or agent names ``account``: it must exist (watched).

    Raises:
        DataError: no such account.
    """
    if account:
        pipe.watch(keys.ACCOUNTS)
        if not pipe.sismember(keys.ACCOUNTS, account):
            raise DataError(f"{where} account: no account {account!r} (edgectl account add {account})")


def _dids(client: redis.Redis, pipe: Pipeline) -> list[tuple[str, str, str]]:
    """(number, trunk, agent) of every DID; watches the index and every DID."""
    pipe.watch(keys.DIDS)
    numbers = sorted(pipe.smembers(keys.DIDS))
    if numbers:
        pipe.watch(*(keys.did(n) for n in numbers))
    rows = read(client, lambda p: [p.hmget(keys.did(n), "trunk", "agent") for n in numbers])
    return [(n, t or "", a or "") for n, (t, a) in zip(numbers, rows)]


def _account_of(client: redis.Redis, pipe: Pipeline, key: str) -> str:
    pipe.watch(key)
    return client.hget(key, "account") or ""


def check_trunk_move(client: redis.Redis, pipe: Pipeline, trunk: str, account: str, where: str) -> None:
    """Writing ``trunk`` with ``account``: every DID of the trunk must bind an agent of that account.

    Raises:
        DataError: the DIDs that would bind across accounts (named).
    """
    bad = [n for n, t, a in _dids(client, pipe) if t == trunk and _account_of(client, pipe, keys.agent(a)) != account]
    if bad:
        raise DataError(f"{where} account {account or '(none)'}: DIDs {listing(bad)} of the trunk are bound to agents "
                        "of another account; move those agents or DIDs first")


def check_agent_move(client: redis.Redis, pipe: Pipeline, agent: str, account: str, where: str) -> None:
    """Writing ``agent`` with ``account``: every DID bound to the agent must be of a trunk of that account.

    Raises:
        DataError: the DIDs that would bind across accounts (named).
    """
    bad = [n for n, t, a in _dids(client, pipe) if a == agent and _account_of(client, pipe, keys.trunk(t)) != account]
    if bad:
        raise DataError(f"{where} account {account or '(none)'}: DIDs {listing(bad)} bound to the agent are of trunks "
                        "of another account; move those trunks or DIDs first")


def check_did_accounts(client: redis.Redis, pipe: Pipeline, number: str, trunk: str, agent: str,
                       fallback_agents: tuple[str, ...] = ()) -> None:
    """A DID binds only to an agent of its trunk's account, and falls back only to agents of it (watched).

    Raises:
        DataError: the agent's (or a fallback agent's) account is not the trunk's.
    """
    trunk_account = _account_of(client, pipe, keys.trunk(trunk))
    for which, name in (("agent", agent), *(("fallback agent", a) for a in fallback_agents)):
        agent_account = _account_of(client, pipe, keys.agent(name))
        if trunk_account != agent_account:
            raise DataError(f"did {number}: {which} {name!r} is of account {agent_account or '(none)'}, trunk {trunk!r} "
                            f"of account {trunk_account or '(none)'}; a DID binds only to an agent of its trunk's account")


def account_dict(account: Account, active: int | None = None) -> dict[str, object]:
    """JSON shape of an account: name, max_calls (null = unlimited), max_cps (calls/s, null =
    unlimited), daily_spend_cap (currency per UTC day, decimal string or null), and ``active``
    (calls holding its slot) when given."""
    out: dict[str, object] = {
        "name": account.name,
        "max_calls": account.max_calls,
        "max_cps": account.max_cps,
        "daily_spend_cap": None if account.daily_spend_cap is None else str(account.daily_spend_cap),
    }
    if active is not None:
        out["active"] = active
    return out
