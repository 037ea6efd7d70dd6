"""A carrier trunk (``edge:trunk:{name}``) with its gateways and its optional registration."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal

from routing.call.dtmf import DtmfMode
from routing.call.numbers import NumberFormat
from routing.tables import keys
from routing.tables.model.fields import (
    AuthMode,
    DataError,
    Direction,
    format_increment,
    format_params,
    number_format_fields,
    parse_cidr,
    parse_header_names,
    parse_increment,
    parse_number_format,
    parse_params,
    parse_prefixes,
    CallerIdAction,
    CallerIdPolicy,
    ReferToFormat,
    ForwardedCallerId,
    legacy_forwarded,
    TransferMode,
    Transport,
    _auth_mode,
    _choice,
    _bool,
    _ca_path,
    _decimal,
    _dtmf,
    _float,
    _host,
    _int,
    _num,
)
from routing.tables.model.callershape import CallerIdShape
from routing.tables.model.media_policy import MediaPolicy
from routing.tables.model.account import parse_account_ref

__all__ = ["Gateway", "Registration", "Trunk", "CONTACT_USER_PATTERN", "check_ringback", "RINGBACK_MS", "upgrade_plain",
           "check_session_timer", "SESSION_TIMER_S"]


@dataclass(frozen=True, slots=True)
class Gateway:
    """One signalling address of a carrier trunk.

    Attributes:
        host: IPv4 address, ``[IPv6]`` or DNS name.
        port: UDP/TCP port (1-65535).
        transport: SIP transport.
        priority: lower is tried first.
        weight: among gateways of equal priority, a higher weight is tried first
            (a fixed order, not a random share).
    """

    host: str
    port: int = 5060
    transport: Transport = Transport.UDP
    priority: int = 10
    weight: int = 100

    @property
    def address(self) -> str:
        """The redis field name: ``host:port``."""
        return f"{self.host}:{self.port}"

    def uri(self, user: str) -> str:
        """Request-URI that sends ``user`` to this gateway."""
        suffix = "" if self.transport is Transport.UDP else f";transport={self.transport.value}"
        scheme = "sips" if self.transport is Transport.TLS else "sip"
        return f"{scheme}:{user}@{self.host}:{self.port}{suffix}"

    def to_redis(self) -> tuple[str, str]:
        """The (field, value) pair stored in ``edge:trunk:{name}:gateways``."""
        return self.address, format_params(
            {"transport": self.transport.value, "priority": self.priority, "weight": self.weight}
        )

    @classmethod
    def parse_address(cls, text: str, where: str = "gateway") -> tuple[str, int]:
        """Split ``host[:port]`` (``[v6]:port`` for IPv6); the port defaults to 5060."""
        text = text.strip()
        if text.startswith("["):
            host, _, rest = text.partition("]")
            host += "]"
            port_text = rest[1:] if rest.startswith(":") else ""
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
        else:
            host, port_text = text, ""
        port = _int(port_text, f"{where} port", minimum=1, default=5060)
        assert port is not None
        if port > 65535:
            raise DataError(f"{where} port: must be <= 65535, got {port}")
        return _host(host, where), port

    @classmethod
    def from_redis(cls, address: str, value: str, where: str) -> "Gateway":
        """Parse one gateway field of ``edge:trunk:{name}:gateways``.

        Raises:
            DataError: bad address, unknown transport or non-integer priority/weight.
        """
        host, port = cls.parse_address(address, where)
        params = parse_params(value, where)
        try:
            transport = Transport(params.get("transport", "udp").lower())
        except ValueError:
            raise DataError(f"{where}: transport must be udp, tcp or tls") from None
        priority = _int(params.get("priority"), f"{where} priority", default=10)
        weight = _int(params.get("weight"), f"{where} weight", minimum=1, default=100)
        assert priority is not None and weight is not None
        return cls(host=host, port=port, transport=transport, priority=priority, weight=weight)


#: contact user of a registration: a token only the carrier learns (RFC 3261 section 10.2.1 Contact)
CONTACT_USER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{7,63}$")
_USER = re.compile(r"^[A-Za-z0-9\-_.!~*'()&+$,?/]{1,64}$")


@dataclass(frozen=True, slots=True)
class Registration:
    """The edge's registration to a carrier that only accepts calls toward a registered account
    (RFC 3261 section 10; sent by Kamailio's ``uac`` module, ``uac_reg``).

    Attributes:
        registrar: ``host[:port]`` of the carrier's registrar (the REGISTER Request-URI domain).
        transport: SIP transport toward the registrar.
        expires_s: registration lifetime the edge asks for (s); the registrar's answer wins.
        contact_user: user part of the Contact the edge registers (``sip:{contact_user}@edge``);
            inbound calls to it are this trunk's.  A random token by default.
        user: account (address-of-record user, To/From); empty = the trunk's digest username.
        single: exactly one node registers (a redis lock with expiry; for carriers that keep one
            binding per account), another taking over when it dies; False = every node registers
            its own contact (docs/security.md#registration-trunks).
    """

    registrar: str
    contact_user: str
    transport: Transport = Transport.UDP
    expires_s: int = 3600
    user: str = ""
    single: bool = False

    @property
    def host(self) -> str:
        """The registrar's host (IPv4, ``[IPv6]`` or DNS name)."""
        return Gateway.parse_address(self.registrar, "register registrar")[0]

    def to_redis(self) -> str:
        """The ``register`` field of ``edge:trunk:{name}``."""
        params: dict[str, object] = {"registrar": self.registrar, "transport": self.transport.value,
                                     "expires": self.expires_s, "contact": self.contact_user}
        if self.user:
            params["user"] = self.user
        if self.single:
            params["nodes"] = "one"
        return format_params(params)

    @classmethod
    def parse(cls, text: str, where: str) -> "Registration | None":
        """Parse ``registrar=host:port;transport=udp;expires=3600;contact=TOKEN[;user=ACCOUNT][;nodes=one|all]``;
        an empty value means no registration.

        Raises:
            DataError: missing registrar or contact, bad host, transport, expires, user or nodes.
        """
        if not (text or "").strip():
            return None
        params = parse_params(text, where)
        unknown = set(params) - {"registrar", "transport", "expires", "contact", "user", "nodes"}
        if unknown:
            raise DataError(f"{where}: unknown parameter(s) {', '.join(sorted(unknown))}")
        host, port = Gateway.parse_address(params.get("registrar", "") or "", f"{where} registrar")
        try:
            transport = Transport(params.get("transport", "udp").lower())
        except ValueError:
            raise DataError(f"{where}: transport must be udp, tcp or tls") from None
        expires = _int(params.get("expires"), f"{where} expires", minimum=60, default=3600)
        assert expires is not None
        if expires > 86400:
            raise DataError(f"{where} expires: must be <= 86400, got {expires}")
        contact = params.get("contact", "")
        if not CONTACT_USER_PATTERN.fullmatch(contact):
            raise DataError(f"{where} contact: use 8-64 letters, digits, '_', '.', '-' (got {contact!r})")
        user = params.get("user", "")
        if user and not _USER.fullmatch(user):
            raise DataError(f"{where} user: not a SIP user name: {user!r}")
        nodes = (params.get("nodes") or "all").lower()
        if nodes not in ("all", "one"):
            raise DataError(f"{where} nodes: must be all (every node registers) or one (a single node), got {nodes!r}")
        return cls(registrar=f"{host}:{port}", contact_user=contact, transport=transport, expires_s=expires, user=user,
                   single=nodes == "one")


@dataclass(frozen=True, slots=True)
class Trunk:
    """A carrier connection (Twilio, Telnyx, a PBX, ...).

    Attributes:
        name: unique trunk name.
        direction: which calls the trunk carries.
        max_calls: concurrent calls allowed (both directions together); None = unlimited.
        cidrs: source networks whose traffic is this trunk's (IP-CIDR allowlist).
        gateways: where termination calls are sent.
        number_format: how the carrier writes DIDs and caller numbers.
        max_cps: new calls per second allowed (token bucket, both directions); None = unlimited.
        max_duration_s: longest call on this trunk (s), torn down with BYE after; None = node default.
        auth: ``ip`` (source CIDR), ``digest`` (credentials, any source) or ``both`` (RFC 3261 section 22).
        x_headers: X- headers the carrier may pass to agents (others are removed).
        trust_identity: whether the carrier's identity headers (P-Asserted-Identity,
            Remote-Party-ID, Diversion...) pass to agents.
        register: the edge's registration to the carrier, or None (see :class:`Registration`).
        tls_ca: PEM file of the CAs that sign this carrier's ``tls`` gateways' certificates, instead
            of ``sip.tls.ca_list`` (verification stays on); empty = the node's list.
        allow_prefixes: termination destinations allowed (E.164 prefixes); empty = all not denied.
        deny_prefixes: termination destinations refused (premium, high-cost ranges).
        probe: whether the edge pings the gateways with SIP OPTIONS and skips the
            ones marked down (off for carriers that do not answer OPTIONS).
        dtmf: how the carrier sends and expects DTMF digits (:mod:`routing.call.dtmf`); None = node default.
        billing_increment: ``(first, next)`` seconds: the first ``first`` seconds of an answered
            call are billed whole, then blocks of ``next`` seconds (``(60, 60)``, ``(1, 1)``).
        max_rate: highest per-minute rate allowed for termination over this trunk; dearer
            route entries are skipped in LCR.  None = no ceiling.
        daily_spend_cap: highest spend per UTC day (currency units, both directions); once the
            day's spend reaches it, the trunk takes no new termination calls.  None = no cap.
        inbound_rate: per-minute price the carrier charges for origination calls on this trunk
            (DID minutes), the rate of their call records; None = inbound calls cost nothing.
        media: codecs, ptime, SRTP and RTP timeout of the carrier side (:class:`MediaPolicy`).
        transfer: how an agent's REFER on this trunk's calls is carried out (:class:`TransferMode`).
        refer_to: how a number target is written in the ``Refer-To`` relayed to the carrier
            (:class:`ReferToFormat`; docs/transfers.md lists what carriers accept).
        ringback_ms: on origination calls, when the agent has sent no 180/183 this long after the
            INVITE (ms), the edge sends the caller ``180 Ringing`` itself; None = never (docs/agents.md).
        caller_id_policy: ``pass`` (any caller ID) or ``owned`` (the trunk's DIDs and verified numbers
            only) on termination calls (:mod:`routing.call.callerid`, docs/identity.md).
        caller_id_action: what ``owned`` does with another caller ID: ``refuse`` the trunk, or
            ``replace`` it by the agent's default caller ID.
        verified_caller_ids: numbers (E.164) the carrier account verified, owned besides the DIDs.
        caller_shape: how the carrier wants the caller ID of termination calls written
            (:class:`CallerIdShape`: identity header, format, From user and host, ``user=phone``,
            display name); the default relays the From as the agent wrote it.
        stir_sign: termination calls over this trunk get a STIR/SHAKEN ``Identity`` header
            signed by the edge (settings ``stir``; docs/identity.md#stirshaken-signing).
        account: the account the trunk belongs to (docs/identity.md#accounts); "" = none.
        stir_verify: the edge checks the ``Identity`` header of inbound calls from this carrier with
            secsipid (settings ``stir.verify``) and tells the agent in ``X-Edge-Identity``.
        forwarded_caller_id: what this carrier receives as the caller of a leg the edge sends on for
            someone else (a DID's fallback to a number, the edge's transfer leg): the original caller
            with ``Diversion`` naming the DID, without it, or the DID (:class:`ForwardedCallerId`;
            redis falls back on the deprecated ``diversion`` and ``transfer_caller_id`` fields).
        session_timer_s: on termination calls whose agent offered no session timers (no ``timer`` in
            its ``Supported``, no ``Session-Expires``), the edge asks this carrier to refresh the
            session at this interval (s): ``Supported: timer`` and ``Session-Expires: N;refresher=uas``
            (RFC 4028 sections 7.1 and 9) added to the INVITE, the refreshes then answered for the
            agent; None = the INVITE goes as the agent wrote it (docs/agents.md).
    """

    name: str
    direction: Direction = Direction.BOTH
    max_calls: int | None = None
    cidrs: tuple[str, ...] = ()
    gateways: tuple[Gateway, ...] = ()
    number_format: NumberFormat = field(default_factory=NumberFormat)
    max_cps: float | None = None
    max_duration_s: int | None = None
    allow_prefixes: tuple[str, ...] = ()
    deny_prefixes: tuple[str, ...] = ()
    auth: AuthMode = AuthMode.IP
    x_headers: tuple[str, ...] = ()
    trust_identity: bool = True
    probe: bool = True
    register: Registration | None = None
    tls_ca: str = ""
    dtmf: DtmfMode | None = None
    billing_increment: tuple[int, int] = (1, 1)
    max_rate: Decimal | None = None
    daily_spend_cap: Decimal | None = None
    inbound_rate: Decimal | None = None
    media: MediaPolicy = field(default_factory=MediaPolicy)
    transfer: TransferMode = TransferMode.AUTO
    refer_to: ReferToFormat = ReferToFormat.SIP
    ringback_ms: int | None = None
    caller_id_policy: CallerIdPolicy = CallerIdPolicy.PASS
    caller_id_action: CallerIdAction = CallerIdAction.REFUSE
    verified_caller_ids: tuple[str, ...] = ()
    caller_shape: CallerIdShape = field(default_factory=CallerIdShape)
    stir_sign: bool = False
    account: str = ""
    forwarded_caller_id: ForwardedCallerId = ForwardedCallerId.DIVERSION
    stir_verify: bool = False
    session_timer_s: int | None = None

    def to_redis(self) -> dict[str, str]:
        """Fields of ``edge:trunk:{name}`` (``register`` only for a registration trunk, ``account``
        only when it has one)."""
        fields = {
            "direction": self.direction.value,
            "max_calls": "" if self.max_calls is None else str(self.max_calls),
            **number_format_fields(self.number_format),
            "max_cps": "" if self.max_cps is None else _num(self.max_cps),
            "max_duration_s": "" if self.max_duration_s is None else str(self.max_duration_s),
            "allow_prefixes": ",".join(self.allow_prefixes),
            "deny_prefixes": ",".join(self.deny_prefixes),
            "auth": self.auth.value,
            "x_headers": ",".join(self.x_headers),
            "trust_identity": "yes" if self.trust_identity else "no",
            "probe": "yes" if self.probe else "no",
            "dtmf": "" if self.dtmf is None else str(getattr(self.dtmf, "value", self.dtmf)),
            "billing_increment": format_increment(self.billing_increment),
            "max_rate": "" if self.max_rate is None else str(self.max_rate),
            "daily_spend_cap": "" if self.daily_spend_cap is None else str(self.daily_spend_cap),
            "inbound_rate": "" if self.inbound_rate is None else str(self.inbound_rate),
            **self.media.to_redis(),
            "transfer": self.transfer.value,
            "refer_to": self.refer_to.value,
            "ringback_ms": "" if self.ringback_ms is None else str(self.ringback_ms),
            "caller_id_policy": self.caller_id_policy.value,
            "caller_id_action": self.caller_id_action.value,
            "verified_caller_ids": ",".join(self.verified_caller_ids),
            **self.caller_shape.to_redis(),
            "stir_sign": "yes" if self.stir_sign else "no",
        }
        if self.register is not None:
            fields["register"] = self.register.to_redis()
        if self.tls_ca:
            fields["tls_ca"] = self.tls_ca
        if self.account:
            fields["account"] = self.account
        fields["forwarded_caller_id"] = self.forwarded_caller_id.value
        if self.stir_verify:
            fields["stir_verify"] = "yes"
        if self.session_timer_s is not None:
            fields["session_timer_s"] = str(self.session_timer_s)
        return fields

    @classmethod
    def from_redis(
        cls, name: str, fields: dict[str, str], cidrs: set[str] | list[str], gateways: dict[str, str]
    ) -> "Trunk":
        """Build a trunk from ``HGETALL``/``SMEMBERS``/``HGETALL`` of its three keys.

        Raises:
            DataError: any malformed field, naming the redis key.
        """
        where = keys.trunk(name)
        try:
            direction = Direction(fields.get("direction", "both") or "both")
        except ValueError:
            raise DataError(f"{where} direction: must be inbound, outbound or both") from None
        fmt = parse_number_format(fields, where)
        for cidr in cidrs:
            parse_cidr(cidr, keys.trunk_cidrs(name))
        gws = tuple(
            sorted(
                (Gateway.from_redis(a, v, f"{keys.trunk_gateways(name)} {a}") for a, v in gateways.items()),
                key=lambda g: (g.priority, -g.weight, g.address),
            )
        )
        return cls(
            name=name,
            direction=direction,
            max_calls=_int(fields.get("max_calls"), f"{where} max_calls"),
            cidrs=tuple(sorted(cidrs)),
            gateways=gws,
            number_format=fmt,
            max_cps=_float(fields.get("max_cps"), f"{where} max_cps"),
            max_duration_s=_int(fields.get("max_duration_s"), f"{where} max_duration_s", minimum=1),
            allow_prefixes=parse_prefixes(fields.get("allow_prefixes", ""), f"{where} allow_prefixes"),
            deny_prefixes=parse_prefixes(fields.get("deny_prefixes", ""), f"{where} deny_prefixes"),
            auth=_auth_mode(fields.get("auth", "ip"), where),
            x_headers=parse_header_names(fields.get("x_headers", ""), f"{where} x_headers"),
            trust_identity=_bool(fields.get("trust_identity"), f"{where} trust_identity", default=True),
            probe=_bool(fields.get("probe"), f"{where} probe", default=True),
            register=Registration.parse(fields.get("register", ""), f"{where} register"),
            tls_ca=_ca_path(fields.get("tls_ca", ""), f"{where} tls_ca"),
            dtmf=_dtmf(fields.get("dtmf"), where),
            billing_increment=parse_increment(fields.get("billing_increment", ""), f"{where} billing_increment"),
            max_rate=_decimal(fields.get("max_rate"), f"{where} max_rate"),
            daily_spend_cap=_decimal(fields.get("daily_spend_cap"), f"{where} daily_spend_cap"),
            inbound_rate=_decimal(fields.get("inbound_rate"), f"{where} inbound_rate"),
            media=MediaPolicy.from_redis(fields, where),
            transfer=_choice(TransferMode, fields.get("transfer"), f"{where} transfer", TransferMode.AUTO),  # type: ignore[arg-type]
            refer_to=_choice(ReferToFormat, fields.get("refer_to"), f"{where} refer_to", ReferToFormat.SIP),  # type: ignore[arg-type]
            ringback_ms=check_ringback(_int(fields.get("ringback_ms"), f"{where} ringback_ms"), f"{where} ringback_ms"),
            caller_id_policy=_choice(CallerIdPolicy, fields.get("caller_id_policy"), f"{where} caller_id_policy",  # type: ignore[arg-type]
                                     CallerIdPolicy.PASS),
            caller_id_action=_choice(CallerIdAction, fields.get("caller_id_action"), f"{where} caller_id_action",  # type: ignore[arg-type]
                                     CallerIdAction.REFUSE),
            verified_caller_ids=parse_prefixes(fields.get("verified_caller_ids", ""), f"{where} verified_caller_ids"),
            caller_shape=CallerIdShape.from_redis(fields, where),
            stir_sign=_bool(fields.get("stir_sign"), f"{where} stir_sign", default=False),
            account=parse_account_ref(fields.get("account"), f"{where} account"),
            forwarded_caller_id=_forwarded(fields, where),
            stir_verify=_bool(fields.get("stir_verify"), f"{where} stir_verify", default=False),
            session_timer_s=check_session_timer(_int(fields.get("session_timer_s"), f"{where} session_timer_s"),
                                                f"{where} session_timer_s"),
        )


def _forwarded(fields: dict[str, str], where: str) -> ForwardedCallerId:
    """``forwarded_caller_id``, else what the deprecated ``diversion``/``transfer_caller_id`` said."""
    if (fields.get("forwarded_caller_id") or "").strip():
        return _choice(ForwardedCallerId, fields["forwarded_caller_id"], f"{where} forwarded_caller_id",  # type: ignore[return-value]
                       ForwardedCallerId.DIVERSION)
    return legacy_forwarded(_bool(fields.get("diversion"), f"{where} diversion", default=True),
                            fields.get("transfer_caller_id"), where)


def upgrade_plain(entry: dict, where: str) -> dict:
    """A trunk entry of an ``edgectl export`` document (plain values) with the deprecated
    ``diversion`` (bool) and ``transfer_caller_id`` keys read as ``forwarded_caller_id``
    (:func:`legacy_forwarded`) when that one is absent, so documents exported before it still apply.

    Raises:
        DataError: a deprecated key of the wrong type or value, naming ``where``.
    """
    if "diversion" not in entry and "transfer_caller_id" not in entry:
        return entry
    entry = dict(entry)
    diversion, legacy = entry.pop("diversion", None), entry.pop("transfer_caller_id", None)
    if diversion is not None and not isinstance(diversion, bool):
        raise DataError(f"{where}.diversion: expected true or false, got {diversion!r}")
    if legacy is not None and not isinstance(legacy, str):
        raise DataError(f"{where}.transfer_caller_id: expected a string, got {legacy!r}")
    if "forwarded_caller_id" not in entry:
        entry["forwarded_caller_id"] = legacy_forwarded(diversion, legacy, where).value
    return entry


#: bounds of ``ringback_ms`` (ms): the edge's ringback timer ticks every 100 ms
RINGBACK_MS = (100, 60000)


def check_ringback(delay_ms: int | None, where: str) -> int | None:
    """``delay_ms`` when it is None or within :data:`RINGBACK_MS`.

    Raises:
        DataError: out of bounds, naming ``where``.
    """
    if delay_ms is not None and not RINGBACK_MS[0] <= delay_ms <= RINGBACK_MS[1]:
        raise DataError(f"{where}: must be between {RINGBACK_MS[0]} and {RINGBACK_MS[1]} ms, got {delay_ms}")
    return delay_ms


#: bounds of ``session_timer_s`` (s): RFC 4028 section 4's smallest interval (Min-SE default) to a day
SESSION_TIMER_S = (90, 86400)


def check_session_timer(interval_s: int | None, where: str) -> int | None:
    """``interval_s`` when it is None or within :data:`SESSION_TIMER_S`.

    Raises:
        DataError: out of bounds, naming ``where``.
    """
    if interval_s is not None and not SESSION_TIMER_S[0] <= interval_s <= SESSION_TIMER_S[1]:
        raise DataError(f"{where}: must be between {SESSION_TIMER_S[0]} and {SESSION_TIMER_S[1]} s, got {interval_s}")
    return interval_s
