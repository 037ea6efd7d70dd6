"""Destination policy of a 3xx redirect's Contact (toll fraud through redirects), sans I/O over
the store's topology; a REFER's target is checked by :mod:`routing.call.transfer`."""

from __future__ import annotations

from routing.call.decision import Reason, Reject
from routing.call.numbers import NumberError, NumberFormat, from_uri_user
from routing.call.policy import destination_allowed
from routing.ops.runtime import RuntimeSettings
from routing.tables.store import Store

__all__ = ["check_redirect"]


def check_redirect(contact_user: str, agent_name: str, trunk_name: str, store: Store,
                   rt: RuntimeSettings) -> Reject | None:
    """Whether a hop's 3xx may send the call to its Contact.

    The target must be a telephone number allowed for the call's agent (its allow/deny
    prefixes and the node-wide blocked prefixes) and, when the call came in on a trunk, by
    that trunk's deny prefixes.  A target that is not a number cannot be checked and is refused.

    Args:
        contact_user: user part of the 3xx Contact URI.
        agent_name: the call's agent (empty when unknown: refused).
        trunk_name: the call's trunk, may be empty.

    Returns:
        None when allowed, else ``403 Redirect Not Allowed``.

    Raises:
        StoreUnavailable: redis unreachable.
    """
    try:
        number = from_uri_user(contact_user, NumberFormat())
    except NumberError:
        return Reject.of(Reason.REDIRECT_NOT_ALLOWED)
    topology = store.current_topology()
    agent = topology.agents.get(agent_name)
    if agent is None or not destination_allowed(number, agent.allow_prefixes, (*rt.blocked_prefixes, *agent.deny_prefixes)):
        return Reject.of(Reason.REDIRECT_NOT_ALLOWED)
    trunk = topology.trunks.get(trunk_name)
    if trunk is not None and not destination_allowed(number, (), trunk.deny_prefixes):
        return Reject.of(Reason.REDIRECT_NOT_ALLOWED)
    return None
