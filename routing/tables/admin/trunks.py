"""Admin of carrier trunks: validate, write, read, remove; digest credentials; registration
state; the JSON shape ``edgectl trunk show --json`` prints."""

from __future__ import annotations

import dataclasses
import re
import secrets

import redis
from redis.client import Pipeline

from routing.ops.secrets import SecretBox
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
    parse_enum,
    require,
    routes_referencing,
    transaction,
)
from routing.tables.model import (
    DataError,
    Direction,
    Gateway,
    Transport,
    Trunk,
    check_name,
    format_increment,
    format_params,
    parse_params,
)
from routing.tables.topology import read_topology
from routing.tables.admin.accounts import check_account_ref, check_trunk_move

__all__ = ["parse_gateway", "check_trunk", "queue_put_trunk", "queue_remove_trunk", "queue_credentials", "put_trunk", "get_trunk", "list_trunks", "remove_trunk", "set_trunk_password", "new_contact_user", "registration_states", "trunk_username", "trunk_dict", "USERNAME_PATTERN"]

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
    params["transport"] = parse_enum(Transport, chosen.lower(), f"{where} transport").value
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
    direction = parse_enum(Direction, trunk.direction, f"{where} direction")
    check_count(trunk.max_calls, f"{where} max_calls")
    cidrs = canonical_cidrs(trunk.cidrs, f"{where} cidr")
    gateways: dict[str, str] = {}
    for gw in trunk.gateways:
        gw_where = f"{where} gateway {gw.host}:{gw.port}"
        host, port = Gateway.parse_address(f"{gw.host}:{gw.port}", gw_where)
        check_count(gw.priority, f"{gw_where} priority")
        check_count(gw.weight, f"{gw_where} weight", minimum=1)
        checked = dataclasses.replace(
            gw, host=host, port=port, transport=parse_enum(Transport, gw.transport, f"{gw_where} transport")
        )
        address, value = checked.to_redis()
        if address in gateways:
            raise DataError(f"{where} gateway {address}: listed twice")
        gateways[address] = value
    fields = dataclasses.replace(trunk, direction=direction).to_redis()
    return Trunk.from_redis(name, fields, cidrs, gateways)


# What each write puts on a MULTI pipeline; shared by the single-entity writes
# below and by ``edgectl apply`` (routing.tables.tableset), which queues many in one EXEC.


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


def put_trunk(client: redis.Redis, trunk: Trunk, replace: bool = False) -> Trunk:
    """Add a trunk, or overwrite it completely with ``replace=True``.

    Returns:
        The trunk as written (what :meth:`RedisStore.topology` reads back).

    Raises:
        DataError: invalid trunk (see :func:`check_trunk`), the name exists and
            ``replace`` is False, a CIDR already belongs to another trunk/agent, its account does
            not exist or a DID of the trunk would then bind an agent of another account.
    """
    trunk = check_trunk(trunk)
    name, where = trunk.name, f"trunk {trunk.name!r}"
    own_keys = keys.trunk_keys(trunk.name)

    def prepare(pipe: Pipeline) -> Writes:
        if pipe.sismember(keys.TRUNKS, name) and not replace:
            raise DataError(f"{where} already exists (use --replace to overwrite it)")
        check_cidrs_free(cidr_owners(client, pipe, ("trunk", name)), trunk.cidrs, where)
        check_account_ref(pipe, trunk.account, where)
        check_trunk_move(client, pipe, name, trunk.account, where)
        if trunk.register is not None:
            for other in sorted(pipe.smembers(keys.TRUNKS)):
                text = pipe.hget(keys.trunk(other), "register") if other != name else ""
                if text and f"contact={trunk.register.contact_user}" in text.split(";"):
                    raise DataError(f"{where} register contact {trunk.register.contact_user!r}: already used by trunk {other!r}")

        return lambda p: queue_put_trunk(p, trunk)

    transaction(client, [keys.TRUNKS, *own_keys], prepare)
    return trunk


def _read_trunks(client: redis.Redis, names: list[str]) -> list[Trunk]:
    return list(read_topology(client, trunk_names=names).trunks.values())


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
        require(pipe, keys.TRUNKS, name, "trunk")
        dids = dids_referencing(client, pipe, "trunk", name)
        routes = routes_referencing(client, pipe, name)
        users = ([f"DIDs {listing(dids)}"] if dids else []) + ([f"routes {listing(routes)}"] if routes else [])
        if users:
            raise DataError(f"trunk {name!r} is still used by {'; '.join(users)}; remove them first")

        username = pipe.hget(keys.trunk_auth(name), "username")

        return lambda p: queue_remove_trunk(p, name, username)

    transaction(
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
        require(pipe, keys.TRUNKS, name, "trunk")
        owner = pipe.hget(keys.AUTH_USERS, username)
        if owner and owner != name:
            raise DataError(f"trunk {name!r} username {username!r}: already used by trunk {owner!r}")
        old = pipe.hget(keys.trunk_auth(name), "username")

        return lambda p: queue_credentials(p, name, old, username, token)

    transaction(client, [keys.TRUNKS, keys.AUTH_USERS, keys.trunk_auth(name)], prepare)


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
#: digest usernames edgectl accepts (RFC 3261 section 25.1 ``user`` characters, 1-64)


def trunk_dict(trunk: Trunk) -> dict[str, object]:
    """JSON shape of a trunk: name, direction, max_calls (null = unlimited),
    cidrs, gateways [{address, host, port, transport, priority, weight}], number_format,
    max_cps (calls/s, null = unlimited), max_duration_s, allow_prefixes, deny_prefixes,
    dtmf (rfc4733, info, inband; null = the node's dtmf.default_mode),
    billing_increment (``"first/next"`` s), max_rate (per-minute, decimal string or null),
    daily_spend_cap (currency per UTC day, decimal string or null), inbound_rate (per-minute
    price of origination calls, decimal string or null), transfer (refer, bridge, auto), refer_to
    (sip, tel, sip-digits, sip-national), ringback_ms (null = never), caller_id_policy (pass, owned),
    caller_id_action (refuse, replace), verified_caller_ids, caller_shape {header, format, from_user,
    from_host, user_phone, display}, stir_sign, account (null = none),
    forwarded_caller_id (diversion, caller, did: the caller of forwarded and transferred legs), stir_verify,
    session_timer_s (s the carrier is asked to refresh at for an agent without timers; null = never),
    media {codecs, ptime_ms, srtp, rtp_timeout_s, sip_keepalive, fill_silence} (null = node default)."""
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
        "number_format": number_format_dict(trunk.number_format),
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
        "transfer": trunk.transfer.value,
        "refer_to": trunk.refer_to.value,
        "ringback_ms": trunk.ringback_ms,
        "caller_id_policy": trunk.caller_id_policy.value,
        "caller_id_action": trunk.caller_id_action.value,
        "verified_caller_ids": list(trunk.verified_caller_ids),
        "caller_shape": trunk.caller_shape.to_json(),
        "stir_sign": trunk.stir_sign,
        "account": trunk.account or None,
        "forwarded_caller_id": trunk.forwarded_caller_id.value,
        "stir_verify": trunk.stir_verify,
        "session_timer_s": trunk.session_timer_s,
    }
