"""Every redis key name byoc-edge reads or writes.

This module is the single owner of the redis schema documented in
``docs/redis-schema.md``; no other module spells a key.  Names are plain
ASCII, ``:``-separated, and prefixed with ``edge:`` so the routing tables can
share a redis with other applications.

Routing tables (edited by ops with ``edgectl`` or ``redis-cli``):

=====================================  =====  ==========================================
key                                    type   content
=====================================  =====  ==========================================
``edge:trunks``                        SET    names of all trunks
``edge:trunk:{name}``                  HASH   direction, max_calls, number format fields
``edge:trunk:{name}:cidrs``            SET    source CIDRs allowed to send as this trunk
``edge:trunk:{name}:gateways``         HASH   ``host:port`` -> ``transport=udp;priority=10;weight=100``
``edge:trunk:{name}:auth``             HASH   digest username, password (encrypted token)
``edge:auth-users``                    HASH   digest username -> trunk name
``edge:agents``                        SET    names of all agents
``edge:agent:{name}``                  HASH   max_calls
``edge:agent:{name}:uris``             LIST   SIP URI targets, tried in order
``edge:agent:{name}:cidrs``            SET    source CIDRs allowed to send as this agent
``edge:dids``                          SET    all DIDs (E.164 with ``+``)
``edge:did:{e164}``                    HASH   agent, trunk
``edge:routes``                        SET    all outbound route prefixes
``edge:route:{prefix}``                HASH   trunk name -> ``rate=0.0045;priority=10``
``edge:accounts``                      SET    names of all accounts (optional grouping of trunks and agents)
``edge:account:{name}``                HASH   max_calls, max_cps, daily_spend_cap
``edge:version``                       STRING incremented by every ``edgectl`` write
=====================================  =====  ==========================================

Runtime state (written only by the edge, never by hand):

=====================================  =====  ==========================================
``edge:lease:trunk:{name}``            ZSET   member ``{node}:{call-id}``, score = lease expiry (s)
``edge:lease:agent:{name}``            ZSET   same, per agent
``edge:call:{node}:{call-id}``         HASH   the call's leases and facts (trunk, agent, ...)
``edge:cps:trunk:{name}``              HASH   CPS token bucket: tokens, ts (s)
``edge:media:{node}:{call-id}``        HASH   media quality of a call, kept after it ends (``media_*``)
``edge:health:trunk:{name}``           HASH   ``host:port`` -> gateway health (state, fails, oks, code, rtt_ms, at)
``edge:gateways:down``                 SET    ``{trunk}/{host:port}`` of every gateway marked down
``edge:health:agent:{name}``           HASH   agent URI -> its health (as a gateway's)
``edge:agents:down``                   SET    ``{agent}/{uri}`` of every agent URI marked down
``edge:trace:{call-id}``               STRING JSON of a refused call, for ``edgectl explain`` (TTL)
``edge:reg:{trunk}:{node}``            HASH   a registration trunk's state on one node (state, code, next_refresh...)
``edge:cdr:{node}:{call-id}:{cseq}``   STRING one call record (JSON), expires after the retention
``edge:cdrs``                          ZSET   member record id, score = start time (ms)
``edge:spend:{trunk}:{yyyymmdd}``      STRING spend of a trunk on a UTC day (micro-units)
``edge:lease:account:{name}``          ZSET   as a trunk's lease ZSET, per account
``edge:cps:account:{name}``            HASH   CPS token bucket of an account
``edge:account-spend:{name}:{yyyymmdd}`` STRING spend of an account on a UTC day (micro-units)
``edge:node:{node}``                   STRING a node's heartbeat (epoch s, TTL 10 s): gone = its calls are reaped
=====================================  =====  ==========================================
"""

from __future__ import annotations

PREFIX = "edge"
SCHEMA_VERSION = "1"

SCHEMA = f"{PREFIX}:schema"
VERSION = f"{PREFIX}:version"

TRUNKS = f"{PREFIX}:trunks"
AGENTS = f"{PREFIX}:agents"
DIDS = f"{PREFIX}:dids"
ROUTES = f"{PREFIX}:routes"
ACCOUNTS = f"{PREFIX}:accounts"


def account(name: str) -> str:
    """HASH of an account: ``max_calls``, ``max_cps``, ``daily_spend_cap`` (docs/redis-schema.md)."""
    return f"{PREFIX}:account:{name}"


def account_lease(name: str) -> str:
    """ZSET of the calls holding a slot of an account (as :func:`trunk_lease`)."""
    return f"{PREFIX}:lease:account:{name}"


def account_cps(name: str) -> str:
    """HASH: the CPS token bucket of an account (``tokens``, ``ts``)."""
    return f"{PREFIX}:cps:account:{name}"


def account_spend(name: str, day: str) -> str:
    """STRING integer: an account's spend on UTC day ``day`` (``YYYYMMDD``), micro-units (as :func:`spend`)."""
    return f"{PREFIX}:account-spend:{name}:{day}"


def account_slot_keys(name: str) -> list[str]:
    """An account's concurrency and CPS state: removed with the account."""
    return [account_lease(name), account_cps(name)]


def trunk(name: str) -> str:
    """HASH of a trunk's scalar settings."""
    return f"{PREFIX}:trunk:{name}"


def trunk_cidrs(name: str) -> str:
    """SET of the CIDRs a trunk's traffic may come from."""
    return f"{PREFIX}:trunk:{name}:cidrs"


def trunk_gateways(name: str) -> str:
    """HASH of a trunk's gateways: ``host:port`` -> parameter string."""
    return f"{PREFIX}:trunk:{name}:gateways"


def trunk_auth(name: str) -> str:
    """HASH of a trunk's digest credentials: username, password (encrypted token, never plain)."""
    return f"{PREFIX}:trunk:{name}:auth"


#: HASH digest username -> trunk name, to find the trunk of an authenticating peer.
AUTH_USERS = f"{PREFIX}:auth-users"


def agent(name: str) -> str:
    """HASH of an agent's scalar settings."""
    return f"{PREFIX}:agent:{name}"


def agent_uris(name: str) -> str:
    """LIST of an agent's SIP URI targets, in the order they are tried."""
    return f"{PREFIX}:agent:{name}:uris"


def agent_cidrs(name: str) -> str:
    """SET of the CIDRs an agent's traffic may come from."""
    return f"{PREFIX}:agent:{name}:cidrs"


def did(e164: str) -> str:
    """HASH binding a DID (E.164 with ``+``) to an agent and its owning trunk."""
    return f"{PREFIX}:did:{e164}"


def route(prefix: str) -> str:
    """HASH of an outbound route prefix: trunk name -> parameter string."""
    return f"{PREFIX}:route:{prefix}"


def trunk_lease(name: str) -> str:
    """ZSET of the calls currently holding a slot on a trunk."""
    return f"{PREFIX}:lease:trunk:{name}"


def trunk_cps(name: str) -> str:
    """HASH token bucket (tokens, ts) pacing new calls on a trunk."""
    return f"{PREFIX}:cps:trunk:{name}"


def agent_lease(name: str) -> str:
    """ZSET of the calls currently holding a slot on an agent."""
    return f"{PREFIX}:lease:agent:{name}"


def gateway_health(name: str) -> str:
    """HASH of a trunk's gateway health, written by the prober: ``host:port`` -> state string."""
    return f"{PREFIX}:health:trunk:{name}"


#: SET of the gateways marked down (``{trunk}/{host:port}``); least-cost routing skips them.
GATEWAYS_DOWN = f"{PREFIX}:gateways:down"
HEALTH_PATTERN = f"{PREFIX}:health:trunk:*"


def agent_health(name: str) -> str:
    """HASH of an agent's URI health, written by the prober: URI -> state string."""
    return f"{PREFIX}:health:agent:{name}"


#: SET of the agent URIs marked down (``{agent}/{uri}``); origination skips them.
AGENTS_DOWN = f"{PREFIX}:agents:down"
AGENT_HEALTH_PATTERN = f"{PREFIX}:health:agent:*"


def agent_member(agent_name: str, uri: str) -> str:
    """Member of :data:`AGENTS_DOWN` naming one URI of one agent."""
    return f"{agent_name}/{uri}"


def gateway_member(trunk_name: str, address: str) -> str:
    """Member of :data:`GATEWAYS_DOWN` naming one gateway of one trunk."""
    return f"{trunk_name}/{address}"
def registration(trunk: str, node: str) -> str:
    """HASH: state of one node's registration to a trunk's registrar (written by the edge)."""
    return f"{PREFIX}:reg:{trunk}:{node}"


def registration_lock(trunk: str) -> str:
    """STRING: the node that holds a ``nodes=one`` registration trunk's registration (TTL a few
    sync intervals, renewed by the holder; routing/kamailio/registration.py)."""
    return f"{PREFIX}:reglock:{trunk}"


def registration_pattern(trunk: str = "*") -> str:
    """SCAN pattern of the registration states of one trunk (every node), or of all trunks."""
    return f"{PREFIX}:reg:{trunk}:*"


LEASE_PATTERN = f"{PREFIX}:lease:*"
CALL_PATTERN = f"{PREFIX}:call:*"


def call(node: str, call_id: str) -> str:
    """HASH recording one admitted call on one edge node (leases held, facts)."""
    return f"{PREFIX}:call:{node}:{call_id}"


def trace(call_id: str) -> str:
    """STRING (JSON) recording why the initial INVITE ``call_id`` was refused; expires."""
    return f"{PREFIX}:trace:{call_id}"


MEDIA_PATTERN = f"{PREFIX}:media:*"


def media(node: str, call_id: str) -> str:
    """HASH of a call's media quality (``media_*`` fields), written when the call ends, with a TTL."""
    return f"{PREFIX}:media:{node}:{call_id}"


def node(name: str) -> str:
    """STRING: a node's heartbeat (epoch s), written by its call clock with a short TTL; gone = the node died."""
    return f"{PREFIX}:node:{name}"


def ban(address: str) -> str:
    """A source address banned by some node (STRING ``{node}|{reason}``, TTL ``security.ban_time_s``):
    every node's monitor applies it to its own Kamailio (routing/monitor/bansync.py)."""
    return f"{PREFIX}:ban:{address}"


BAN_PATTERN = f"{PREFIX}:ban:*"


def lease_member(node: str, call_id: str) -> str:
    """Member name of a call inside the lease ZSETs."""
    return f"{node}:{call_id}"


#: ZSET index of the call records: member = record id, score = start time (ms since epoch).
CDRS = f"{PREFIX}:cdrs"
CDR_PATTERN = f"{PREFIX}:cdr:*"
SPEND_PATTERN = f"{PREFIX}:spend:*"
ACCOUNT_SPEND_PATTERN = f"{PREFIX}:account-spend:*"


def cdr(record_id: str) -> str:
    """STRING holding one call record as JSON; ``record_id`` is ``{node}:{call-id}:{cseq}``."""
    return f"{PREFIX}:cdr:{record_id}"


def cdr_outbox(node: str) -> str:
    """ZSET of the ids of node ``node``'s call records not yet written to the durable store
    (``cdr.store`` postgres or jsonl), score the record's start (ms since epoch); the node's
    monitor drains it (routing/monitor/cdrdrain.py)."""
    return f"{PREFIX}:cdrs:outbox:{node}"


def spend(trunk: str, day: str) -> str:
    """STRING integer: a trunk's spend (call-record costs, both directions) on UTC day ``day`` (``YYYYMMDD``),
    in micro-units of the currency (cost x 10^6)."""
    return f"{PREFIX}:spend:{trunk}:{day}"


def trunk_keys(name: str) -> list[str]:
    """Every routing-table key that belongs to a trunk."""
    return [trunk(name), trunk_cidrs(name), trunk_gateways(name)]


def trunk_secret_keys(name: str) -> list[str]:
    """Keys holding a trunk's credentials (kept when the trunk is replaced, removed with it)."""
    return [trunk_auth(name)]


def trunk_slot_keys(name: str) -> list[str]:
    """A trunk's concurrency and CPS state (leases, token bucket): removed with the trunk, so no
    slot of a removed trunk lingers (a trunk added again under the name starts from zero)."""
    return [trunk_lease(name), trunk_cps(name)]


def agent_slot_keys(name: str) -> list[str]:
    """An agent's concurrency state (its lease ZSET): removed with the agent."""
    return [agent_lease(name)]


def agent_keys(name: str) -> list[str]:
    """Every routing-table key that belongs to an agent."""
    return [agent(name), agent_uris(name), agent_cidrs(name)]
