"""Validated reads and writes of the routing tables (trunks, agents, DIDs, routes, accounts), one module
per noun (:mod:`.trunks`, :mod:`.agents`, :mod:`.dids`, :mod:`.routes`, :mod:`.accounts`) over the transactions
of :mod:`.common`; this package re-exports them (``admin.put_trunk(...)``).

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

Every invalid input raises :class:`~routing.tables.model.DataError` with a one-line
message naming the field.  The client must have ``decode_responses=True``
(:func:`routing.tables.store.connect`).
"""

from routing.tables.admin.common import (
    ConflictError,
    MAX_ATTEMPTS,
    Writes,
    number_format_dict,
    transaction,
    version_seed,
)
from routing.tables.admin.accounts import (
    account_dict,
    get_account,
    list_accounts,
    put_account,
    queue_put_account,
    queue_remove_account,
    remove_account,
)
from routing.tables.admin.trunks import (
    USERNAME_PATTERN,
    check_trunk,
    get_trunk,
    list_trunks,
    new_contact_user,
    parse_gateway,
    put_trunk,
    queue_credentials,
    queue_put_trunk,
    queue_remove_trunk,
    registration_states,
    remove_trunk,
    set_trunk_password,
    trunk_dict,
    trunk_username,
)
from routing.tables.admin.agents import (
    agent_dict,
    check_agent,
    get_agent,
    list_agents,
    put_agent,
    queue_put_agent,
    queue_remove_agent,
    remove_agent,
)
from routing.tables.admin.dids import (
    check_did,
    did_dict,
    get_did,
    list_dids,
    put_did,
    queue_put_did,
    queue_remove_did,
    remove_did,
)
from routing.tables.admin.routes import (
    check_route,
    list_routes,
    put_route,
    queue_put_route,
    queue_remove_route,
    remove_route,
    route_dict,
)

__all__ = [
    "account_dict", "get_account", "list_accounts", "put_account", "queue_put_account", "queue_remove_account",
    "remove_account",
    "MAX_ATTEMPTS",
    "Writes",
    "number_format_dict",
    "ConflictError",
    "transaction",
    "version_seed",
    "parse_gateway",
    "check_trunk",
    "queue_put_trunk",
    "queue_remove_trunk",
    "queue_credentials",
    "put_trunk",
    "get_trunk",
    "list_trunks",
    "remove_trunk",
    "set_trunk_password",
    "new_contact_user",
    "registration_states",
    "trunk_username",
    "trunk_dict",
    "USERNAME_PATTERN",
    "check_agent",
    "queue_put_agent",
    "queue_remove_agent",
    "put_agent",
    "get_agent",
    "list_agents",
    "remove_agent",
    "agent_dict",
    "check_did",
    "queue_put_did",
    "queue_remove_did",
    "put_did",
    "get_did",
    "list_dids",
    "remove_did",
    "did_dict",
    "check_route",
    "queue_put_route",
    "queue_remove_route",
    "put_route",
    "list_routes",
    "remove_route",
    "route_dict",
]
