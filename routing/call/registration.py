"""Registration trunks: the edge REGISTERs to carriers that only accept calls toward a
registered account, and recognises their inbound calls through that registration.

Pure functions, no ``KSR``: :mod:`routing.kamailio` runs them in a timer process and
turns them into Kamailio ``uac`` module RPCs (``uac.reg_add``, ``uac.reg_remove``,
``uac.reg_unregister``, ``uac.reg_dump``; ``uac_reg`` of Kamailio 5.6).

* :func:`wanted` derives the registration table from the trunks in redis (the
  table is never edited by hand and never written to disk with a password).
* :func:`sync_plan` says which records to remove and (re)add.
* :func:`state_of` turns one ``uac.reg_dump`` record plus the last REGISTER reply
  into the state shown by ``edgectl trunk show`` (``edge:reg:{trunk}:{node}``).
* :func:`match_inbound` finds the trunk of an inbound INVITE sent to a registered
  contact (RFC 3261 section 10.2.1: the carrier sends calls to the Contact the
  edge registered).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from routing.tables.model import Registration, Transport, Trunk

__all__ = [
    "UAC_REG_DISABLED",
    "UAC_REG_ONGOING",
    "UAC_REG_ONLINE",
    "RegRecord",
    "wanted",
    "sync_plan",
    "state_of",
    "match_inbound",
    "allowed_sources",
    "NO_CREDENTIALS",
]

#: ``reg_uac_t.flags`` bits of Kamailio 5.6 ``src/modules/uac/uac_reg.c``
UAC_REG_DISABLED = 1 << 0
UAC_REG_ONGOING = 1 << 1
UAC_REG_ONLINE = 1 << 2

#: reason published for a registration trunk without digest credentials
NO_CREDENTIALS = "no credentials (edgectl trunk set-password)"


@dataclass(frozen=True, slots=True)
class RegRecord:
    """One row of Kamailio's ``uac_reg`` table, derived from a trunk.

    Attributes:
        trunk: trunk name (``l_username``).
        uuid: the registered Contact's user (``l_uuid``), the trunk's ``contact_user``.
        aor_user: account at the registrar (``r_username``; To and From user).
        registrar: ``host:port`` (``r_domain``; the REGISTER Request-URI is ``sip:{registrar}``).
        auth_user: digest username (``auth_username``).
        proxy: where REGISTERs are sent, with the transport (``auth_proxy``).
        expires_s: lifetime asked for (s).
        contact_addr: the edge's ``host:port[;transport=...]`` in the Contact.
        token: the stored (encrypted) password token: a new password re-adds the record.
        socket: the edge socket its REGISTERs leave from (``proto:address:port``, the carrier
            side's on an edge with one network per side); empty: Kamailio chooses.
    """

    trunk: str
    uuid: str
    aor_user: str
    registrar: str
    auth_user: str
    proxy: str
    expires_s: int
    contact_addr: str
    token: str
    socket: str = ""

    @property
    def to_uri(self) -> str:
        """The To URI of the REGISTERs (``sip:{aor_user}@{registrar}``), as ``uac_reg`` writes it."""
        return f"sip:{self.aor_user}@{self.registrar}"

    @property
    def fingerprint(self) -> str:
        """Digest of every field (the token included, never a plain password)."""
        text = "\x1f".join((self.trunk, self.uuid, self.aor_user, self.registrar, self.auth_user, self.proxy,
                            str(self.expires_s), self.contact_addr, self.token, self.socket))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def rpc_params(self, password: str) -> list[object]:
        """Parameters of ``uac.reg_add`` in its order (``SSSSSSSSSSdddSS``): l_uuid, l_username,
        l_domain, r_username, r_domain, realm (empty: any), auth_username, auth_password,
        auth_ha1 (``.`` = none), auth_proxy, expires, flags, reg_delay, socket (empty: any),
        contact_addr."""
        host = self.registrar.rsplit(":", 1)[0]
        return [self.uuid, self.trunk, host, self.aor_user, self.registrar, "", self.auth_user, password, ".",
                self.proxy, self.expires_s, 0, 0, self.socket, self.contact_addr]


def _proxy(reg: Registration) -> str:
    return f"sip:{reg.registrar};transport={reg.transport.value}"


def wanted(
    trunks: Iterable[Trunk], credentials: Mapping[str, tuple[str, str]], contacts: Mapping[str, str],
    sockets: Mapping[str, str] | None = None,
) -> tuple[dict[str, RegRecord], dict[str, str]]:
    """The registrations the edge should hold.

    Args:
        trunks: every trunk; those with ``register`` set are used.
        credentials: trunk name -> (digest username, encrypted password token).
        contacts: transport (``udp``/``tcp``/``tls``) -> the edge's ``host:port`` for that transport.
        sockets: transport -> the carrier side's socket (``proto:address:port``) on an edge with one
            network per side (:func:`routing.call.sides.side_sockets`); None or a missing transport: any.

    Returns:
        (uuid -> record, trunk -> problem) where a problem is a trunk that cannot
        register: no credentials, or no listener for the registrar's transport.
    """
    records: dict[str, RegRecord] = {}
    problems: dict[str, str] = {}
    for trunk in trunks:
        reg = trunk.register
        if reg is None:
            continue
        creds = credentials.get(trunk.name)
        if creds is None:
            problems[trunk.name] = NO_CREDENTIALS
            continue
        contact = contacts.get(reg.transport.value)
        if not contact:
            problems[trunk.name] = f"no {reg.transport.value} listener for the registrar's transport"
            continue
        if reg.transport is not Transport.UDP:
            contact = f"{contact};transport={reg.transport.value}"
        records[reg.contact_user] = RegRecord(
            trunk=trunk.name, uuid=reg.contact_user, aor_user=reg.user or creds[0], registrar=reg.registrar,
            auth_user=creds[0], proxy=_proxy(reg), expires_s=reg.expires_s, contact_addr=contact, token=creds[1],
            socket=(sockets or {}).get(reg.transport.value, ""),
        )
    return records, problems


def sync_plan(want: Mapping[str, RegRecord], have: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """What to change so Kamailio holds exactly ``want``.

    Args:
        want: uuid -> record wanted.
        have: uuid -> fingerprint of what the edge added and Kamailio still lists.

    Returns:
        (uuids to unregister and remove, uuids to add), sorted; a changed record is in both.
    """
    remove = sorted(u for u, fp in have.items() if u not in want or want[u].fingerprint != fp)
    add = sorted(u for u in want if u not in have or u in remove)
    return remove, add


def state_of(record: Mapping[str, object] | None, reply: str, now: int, timer_interval_s: int) -> dict[str, str]:
    """The published state of one registration.

    Args:
        record: the ``uac.reg_dump`` entry (flags, timer_expires in epoch s, expires), or
            None when Kamailio does not hold it yet.
        reply: last final REGISTER reply seen for it, ``"code|reason|epoch"``, or ``""``.
        now: current time (epoch s).
        timer_interval_s: the ``uac`` module's ``reg_timer_interval`` (s).

    Returns:
        Fields of ``edge:reg:{trunk}:{node}``: ``state`` (``registered``, ``registering``,
        ``failed``, ``disabled``, ``pending``), ``code`` and ``reason`` of the last final
        reply (empty when none came: a timeout), ``expires_at`` (epoch s, registered only),
        ``next_refresh`` (epoch s: the next REGISTER, a refresh or a retry), ``updated``.
        ``uac_reg`` sends a refresh once ``timer_expires <= now + reg_timer_interval + 3``.
    """
    code, reason = "", ""
    if reply:
        parts = reply.split("|", 2)
        code, reason = parts[0], parts[1] if len(parts) > 1 else ""
    out = {"code": code, "reason": reason, "expires_at": "", "next_refresh": "", "updated": str(now)}
    if record is None:
        return {**out, "state": "pending"}
    flags = int(record.get("flags", 0) or 0)
    timer_expires = int(record.get("timer_expires", 0) or 0)
    next_send = str(max(now, timer_expires - timer_interval_s - 3)) if timer_expires else str(now)
    if flags & UAC_REG_ONLINE and timer_expires > now:
        return {**out, "state": "registered", "expires_at": str(timer_expires), "next_refresh": next_send}
    if flags & UAC_REG_DISABLED:
        return {**out, "state": "disabled"}
    if flags & UAC_REG_ONGOING:
        return {**out, "state": "registering", "next_refresh": ""}
    if not code and not timer_expires:
        return {**out, "state": "pending", "next_refresh": next_send}
    if code.startswith("2"):
        code = ""  # a 200 without our Contact, or one that expired unrefreshed
        out["reason"] = "registration lapsed"
    return {**out, "state": "failed", "code": code, "next_refresh": next_send}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def allowed_sources(trunk: Trunk, resolved: Iterable[str] = ()) -> tuple[set[str], tuple[str, ...]]:
    """Where a registration trunk's inbound calls may come from: the registrar's address
    (literal, or ``resolved`` by the edge), the gateways' literal addresses, and the CIDRs.

    Returns:
        (addresses, cidrs).
    """
    addresses = {a for a in resolved if a}
    hosts = [g.host for g in trunk.gateways]
    if trunk.register is not None:
        hosts.append(trunk.register.host)
    for host in hosts:
        try:
            addresses.add(str(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            continue  # a DNS name: only its resolved addresses count
    return addresses, trunk.cidrs


def match_inbound(ruri_user: str, src_ip: str, trunks: Iterable[Trunk],
                  resolve: Callable[[str], Iterable[str]] | None = None) -> Trunk | None:
    """The registration trunk an inbound INVITE belongs to, or None.

    The Request-URI user must be a trunk's registered contact user, and the
    source one of :func:`allowed_sources`: knowing the contact alone is not enough.

    Args:
        ruri_user: Request-URI user of the INVITE.
        src_ip: packet source address.
        trunks: every trunk.
        resolve: trunk name -> addresses its registrar's DNS name resolved to (asked only
            for a registrar given by name, after the contact user matched).
    """
    if not ruri_user:
        return None
    for trunk in trunks:
        if trunk.register is None or trunk.register.contact_user != ruri_user:
            continue
        by_name = not _is_ip(trunk.register.host)
        addresses, cidrs = allowed_sources(trunk, resolve(trunk.name) if by_name and resolve else ())
        try:
            source = ipaddress.ip_address(src_ip)
        except ValueError:
            return None
        if str(source) in addresses:
            return trunk
        for cidr in cidrs:
            network = ipaddress.ip_network(cidr)
            if network.version == source.version and source in network:
                return trunk
        return None
    return None
