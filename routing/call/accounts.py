"""Accounts and spend caps in a call's routing decision, sans I/O (docs/identity.md#accounts).

An account groups trunks, agents, DIDs and routes of one customer or team
(:class:`routing.tables.model.Account`).  Its rules, as :mod:`routing.call.pipeline` applies them:

* origination: the DID's agent must be of the trunk's account (``edgectl`` never binds one of
  another account; a hand edit that does gets ``403 Agent Of Another Account``, stage ``agent``);
* termination: an agent uses only route entries whose trunk is of its own account, or entries
  marked ``shared`` (others skipped; nothing left: ``403 Trunk Of Another Account``, stage ``route``);
* limits: one more lease, ``edge:lease:account:{name}`` with its CPS bucket, joined in the same
  admission script as the trunk and agent slots (``503 Account Limit Reached: name``,
  ``503 Account CPS Limit Reached: name``, stage ``limits``);
* spend: the account's ``daily_spend_cap`` against ``edge:account-spend:{name}:{day}``, read in
  the route lookup's round trip (``403 Account Spend Cap Reached: name``, stage ``route``).

The unnamed account ("") has no limits and no lease: a deployment that names no account takes no
extra lease, no extra read and no extra key.  Spend caps (trunk and account) count calls in progress
as their cost accrues (:mod:`routing.tables.spend`).
"""

from __future__ import annotations

from decimal import Decimal

from routing.call.cdr import COST_PLACES
from routing.call.decision import Reason, Reject
from routing.tables import keys
from routing.tables.model import Account, Agent, RouteEntry, Trunk
from routing.tables.store import Lease, Topology

__all__ = ["account_lease", "spend_refusal", "account_spend_refusal", "account_spend_key", "route_usable",
           "agent_refusal", "capped_account"]


def account_lease(name: str, topology: Topology) -> list[Lease]:
    """The slot of account ``name`` (with its CPS bucket when ``max_cps`` is set) as a one-item list,
    [] for the unnamed account; an account named by a trunk or agent but absent from the tables
    (a hand edit) is counted without a limit."""
    if not name:
        return []
    account = topology.accounts.get(name) or Account(name)
    bucket = keys.account_cps(name) if account.max_cps else None
    return [Lease(keys.account_lease(name), account.max_calls, f"account {name}", account.max_cps, bucket)]


def spend_refusal(trunk: Trunk, spent_micros: int) -> Reject | None:
    """403 ``Daily Spend Cap Reached: {trunk}`` when the trunk's spend today (micro-units)
    has reached its ``daily_spend_cap``; None when it has no cap or is below it."""
    if trunk.daily_spend_cap is None or Decimal(spent_micros) / 10**COST_PLACES < trunk.daily_spend_cap:
        return None
    code, phrase, tag = Reason.SPEND_CAP
    return Reject(code, f"{phrase}: {trunk.name}", tag, trunk=trunk.name)


def capped_account(agent: Agent, topology: Topology) -> str:
    """The agent's account when it has a ``daily_spend_cap`` (its spend is then read with the
    routes), else ""."""
    account = topology.accounts.get(agent.account) if agent.account else None
    return agent.account if account is not None and account.daily_spend_cap is not None else ""


def account_spend_key(name: str) -> str:
    """Key of an account's spend in the route lookup's ``spent`` dict (trunk names hold no ``:``)."""
    return f"account:{name}"


def account_spend_refusal(name: str, topology: Topology, spent: dict[str, int]) -> Reject | None:
    """403 ``Account Spend Cap Reached: {name}`` when the account's spend today (micro-units, in
    ``spent`` under :func:`account_spend_key`) has reached its ``daily_spend_cap``; None otherwise."""
    account = topology.accounts.get(name) if name else None
    if account is None or account.daily_spend_cap is None:
        return None
    if Decimal(spent.get(account_spend_key(name), 0)) / 10**COST_PLACES < account.daily_spend_cap:
        return None
    code, phrase, tag = Reason.ACCOUNT_SPEND_CAP
    return Reject(code, f"{phrase}: {name}", tag)


def route_usable(entry: RouteEntry, trunk: Trunk, agent: Agent) -> bool:
    """Whether ``agent`` may terminate over ``entry`` (of ``trunk``): the same account, or a shared entry."""
    return entry.shared or trunk.account == agent.account


def agent_refusal(trunk: Trunk, agent: Agent) -> Reject | None:
    """``403 Agent Of Another Account`` when a DID of ``trunk`` is bound to an agent of another account."""
    return None if trunk.account == agent.account else Reject.of(Reason.ACCOUNT_AGENT)
