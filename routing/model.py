"""The routing tables as typed values, and their exact text form in redis.

Each class parses itself from the strings redis returns (``from_redis``) and
renders itself back (``to_redis``), so ``edgectl`` writes and the call path
reads through one definition.  Invalid data raises :class:`DataError` naming
the key and field, whether it came from the CLI or from a hand edit.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import Enum

from . import keys
from .dtmf import DtmfError, DtmfMode, parse_mode
from .numbers import NumberError, NumberFormat, is_e164

__all__ = [
    "DataError",
    "Direction",
    "AuthMode",
    "Transport",
    "SrtpMode",
    "MediaPolicy",
    "CODECS",
    "Gateway",
    "Registration",
    "Trunk",
    "Agent",
    "Did",
    "RouteEntry",
    "NAME_PATTERN",
    "PREFIX_PATTERN",
    "parse_params",
    "format_params",
    "parse_cidr",
    "parse_sip_uri",
    "parse_prefixes",
    "parse_header_names",
    "parse_increment",
    "format_increment",
    "parse_rate",
]

#: Trunk and agent names: short, safe inside redis keys, SIP headers and metric labels.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
#: Outbound route prefixes: ``+`` then up to 15 digits (``+`` alone is the default route).
PREFIX_PATTERN = re.compile(r"^\+[0-9]{0,15}$")
_SIP_URI = re.compile(r"^sips?:(?:[^@\s]+@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?(;[^\s]*)?$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*$")


class DataError(ValueError):
    """A routing-table value is malformed; the message names the key and field."""


class Direction(str, Enum):
    """Which way calls may flow over a trunk."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"
    BOTH = "both"

    @property
    def allows_inbound(self) -> bool:
        """True when carriers may originate calls (carrier -> agent) on the trunk."""
        return self in (Direction.INBOUND, Direction.BOTH)

    @property
    def allows_outbound(self) -> bool:
        """True when agents may terminate calls (agent -> carrier) over the trunk."""
        return self in (Direction.OUTBOUND, Direction.BOTH)


class AuthMode(str, Enum):
    """How a trunk's inbound traffic is recognised: source IP, digest credentials, or both."""

    IP = "ip"
    DIGEST = "digest"
    BOTH = "both"


class Transport(str, Enum):
    """SIP transport toward a gateway (RFC 3261 section 18)."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


#: audio codecs a trunk or agent may allow, as rtpengine and SDP name them (case as in ``a=rtpmap``)
CODECS = ("PCMU", "PCMA", "G722", "opus")


class SrtpMode(str, Enum):
    """Media encryption a side requires: plain RTP (RTP/AVP), SDES-SRTP (RFC 4568, RTP/SAVP) or
    DTLS-SRTP (RFC 5764, UDP/TLS/RTP/SAVP)."""

    NONE = "none"
    SDES = "sdes"
    DTLS = "dtls"


def parse_codecs(text: str, where: str) -> tuple[str, ...]:
    """Parse a comma-separated codec preference order (``"opus,PCMU"``) into canonical names.

    Raises:
        DataError: an unknown codec, a duplicate, or an empty list.
    """
    out: list[str] = []
    canonical = {c.lower(): c for c in CODECS}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name = canonical.get(part.lower())
        if name is None:
            raise DataError(f"{where}: unknown codec {part!r} (use {', '.join(CODECS)})")
        if name in out:
            raise DataError(f"{where}: codec {name} listed twice")
        out.append(name)
    if not out:
        raise DataError(f"{where}: at least one codec is needed")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class MediaPolicy:
    """Media policy of one side of a call (a trunk's carrier side or an agent's side).

    Every attribute may be None: the node's default for that kind of side applies
    (settings ``media.trunk`` / ``media.agent``, see :func:`MediaPolicy.over`).

    Attributes:
        codecs: audio codecs allowed on this side, in preference order (names from :data:`CODECS`);
            telephone-event (RFC 4733) is always kept when offered.
        ptime_ms: packetisation interval of this side (ms), 10-60 by 10.
        srtp: encryption this side requires (a call that cannot provide it is refused with 488).
        rtp_timeout_s: no RTP from this side for this long ends the call with BYE to both sides (s, >= 5).
    """

    codecs: tuple[str, ...] | None = None
    ptime_ms: int | None = None
    srtp: SrtpMode | None = None
    rtp_timeout_s: int | None = None

    def over(self, default: "MediaPolicy") -> "MediaPolicy":
        """This policy with every unset attribute taken from ``default``."""
        return MediaPolicy(
            codecs=self.codecs if self.codecs is not None else default.codecs,
            ptime_ms=self.ptime_ms if self.ptime_ms is not None else default.ptime_ms,
            srtp=self.srtp if self.srtp is not None else default.srtp,
            rtp_timeout_s=self.rtp_timeout_s if self.rtp_timeout_s is not None else default.rtp_timeout_s,
        )

    def to_redis(self) -> dict[str, str]:
        """Fields added to ``edge:trunk:{name}`` / ``edge:agent:{name}`` (empty = node default)."""
        return {
            "codecs": ",".join(self.codecs or ()),
            "ptime_ms": "" if self.ptime_ms is None else str(self.ptime_ms),
            "srtp": "" if self.srtp is None else self.srtp.value,
            "rtp_timeout_s": "" if self.rtp_timeout_s is None else str(self.rtp_timeout_s),
        }

    def to_json(self) -> dict[str, object]:
        """A plain dict (call plan, ``routing.json``); inverse of :meth:`from_json`."""
        return {"codecs": list(self.codecs) if self.codecs is not None else None, "ptime_ms": self.ptime_ms,
                "srtp": self.srtp.value if self.srtp else None, "rtp_timeout_s": self.rtp_timeout_s}

    @classmethod
    def from_json(cls, data: dict | None) -> "MediaPolicy":
        """Inverse of :meth:`to_json` (None gives an empty policy)."""
        data = data or {}
        codecs = data.get("codecs")
        return cls(codecs=tuple(codecs) if codecs is not None else None, ptime_ms=data.get("ptime_ms"),
                   srtp=SrtpMode(data["srtp"]) if data.get("srtp") else None,
                   rtp_timeout_s=data.get("rtp_timeout_s"))

    @classmethod
    def parse(cls, codecs: str | None, ptime_ms: str | int | None, srtp: str | None,
              rtp_timeout_s: str | int | None, where: str) -> "MediaPolicy":
        """Validate media fields from redis or the CLI (None or ``""`` = node default).

        Raises:
            DataError: unknown codec, ptime not 10-60 in steps of 10, unknown srtp mode,
                timeout below 10 s; the message names ``where`` and the field.
        """
        ptime = _int(None if ptime_ms is None else str(ptime_ms), f"{where} ptime_ms", minimum=10)
        if ptime is not None and (ptime > 60 or ptime % 10):
            raise DataError(f"{where} ptime_ms: must be 10, 20, 30, 40, 50 or 60, got {ptime}")
        try:
            mode = SrtpMode(srtp.strip().lower()) if srtp else None
        except ValueError:
            raise DataError(f"{where} srtp: must be none, sdes or dtls, got {srtp!r}") from None
        timeout = _int(None if rtp_timeout_s is None else str(rtp_timeout_s), f"{where} rtp_timeout_s", minimum=5)
        return cls(
            codecs=parse_codecs(codecs, f"{where} codecs") if codecs else None,
            ptime_ms=ptime,
            srtp=mode,
            rtp_timeout_s=timeout,
        )

    @classmethod
    def from_redis(cls, fields: dict[str, str], where: str) -> "MediaPolicy":
        """The media fields of a trunk or agent hash.

        Raises:
            DataError: as :meth:`parse`.
        """
        return cls.parse(fields.get("codecs"), fields.get("ptime_ms"), fields.get("srtp"),
                         fields.get("rtp_timeout_s"), where)


def parse_params(text: str, where: str) -> dict[str, str]:
    """Parse ``"k=v;k=v"`` (the SIP-parameter style used in gateway and route values)."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise DataError(f"{where}: expected name=value, got {part!r}")
        out[name.strip().lower()] = value.strip()
    return out


def format_params(params: dict[str, object]) -> str:
    """Render a parameter dict as ``"k=v;k=v"`` in the given order."""
    return ";".join(f"{k}={v}" for k, v in params.items())


def parse_cidr(text: str, where: str = "cidr") -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse an IP-CIDR (a bare address is a /32 or /128).

    Raises:
        DataError: not an address or network, or host bits set.
    """
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise DataError(f"{where}: {exc}") from None


def parse_sip_uri(text: str, where: str = "uri") -> str:
    """Check that ``text`` is a ``sip:`` or ``sips:`` URI with a host; return it stripped.

    Raises:
        DataError: anything else (RFC 3261 section 19.1 syntax, simplified).
    """
    value = text.strip()
    match = _SIP_URI.fullmatch(value)
    if not match:
        raise DataError(f"{where}: not a SIP URI: {text!r}")
    if match.group(2) and not 0 < int(match.group(2)) < 65536:
        raise DataError(f"{where}: port out of range in {text!r}")
    return value


def _int(value: str | None, where: str, *, minimum: int = 0, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise DataError(f"{where}: expected an integer, got {value!r}") from None
    if number < minimum:
        raise DataError(f"{where}: must be >= {minimum}, got {number}")
    return number


def _float(value: str | None, where: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise DataError(f"{where}: expected a number, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise DataError(f"{where}: must be a positive number, got {value!r}")
    return number


_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]{1,64}")  # RFC 3261 section 25.1 token


def parse_header_names(text: str, where: str) -> tuple[str, ...]:
    """Parse a comma-separated list of X- header names (``"X-Call-Reason,X-Tenant"``).

    Raises:
        DataError: a name that is not an RFC 3261 token starting with ``X-``, or an ``X-Edge-`` name.
    """
    out = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        if not _TOKEN.fullmatch(part) or not part.lower().startswith("x-") or part.lower().startswith("x-edge-"):
            raise DataError(f"{where}: {part!r} is not an X- header name the edge may pass")
        out.append(part)
    return tuple(out)


def _bool(value: str | None, where: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("yes", "true", "1", "on"):
        return True
    if lowered in ("no", "false", "0", "off"):
        return False
    raise DataError(f"{where}: expected yes or no, got {value!r}")


def _auth_mode(value: str, where: str) -> AuthMode:
    try:
        return AuthMode(value or "ip")
    except ValueError:
        raise DataError(f"{where} auth: must be ip, digest or both, got {value!r}") from None


def _dtmf(value: str | None, where: str) -> DtmfMode | None:
    try:
        return parse_mode(value, where)
    except DtmfError as exc:
        raise DataError(str(exc)) from None


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def parse_prefixes(text: str, where: str) -> tuple[str, ...]:
    """Parse a comma-separated list of E.164 prefixes (``"+1,+44"``).

    Raises:
        DataError: an element is not ``+`` followed by digits.
    """
    out = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        if not PREFIX_PATTERN.fullmatch(part):
            raise DataError(f"{where}: {part!r} is not an E.164 prefix (use + and digits, e.g. +1900)")
        out.append(part)
    return tuple(out)


def _host(value: str, where: str) -> str:
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise DataError(f"{where}: bad IPv6 address {host!r}") from None
        return host
    try:
        ipaddress.IPv4Address(host)
        return host
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(host) or len(host) > 253:
        raise DataError(f"{where}: bad host {host!r}")
    return host


def _ca_path(value: str, where: str) -> str:
    path = (value or "").strip()
    if path and (not path.startswith("/") or any(c in path for c in '"\n\r\t') or "]" in path):
        raise DataError(f"{where}: expected an absolute path to a PEM file, got {value!r}")
    return path


def check_name(name: str, what: str) -> str:
    """Validate a trunk or agent name.

    Raises:
        DataError: empty, too long, or characters outside ``[A-Za-z0-9_.-]``.
    """
    if not NAME_PATTERN.fullmatch(name or ""):
        raise DataError(f"{what} name {name!r}: use 1-63 letters, digits, '_', '.', '-'")
    return name


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
    """

    registrar: str
    contact_user: str
    transport: Transport = Transport.UDP
    expires_s: int = 3600
    user: str = ""

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
        return format_params(params)

    @classmethod
    def parse(cls, text: str, where: str) -> "Registration | None":
        """Parse ``registrar=host:port;transport=udp;expires=3600;contact=TOKEN[;user=ACCOUNT]``;
        an empty value means no registration.

        Raises:
            DataError: missing registrar or contact, bad host, transport, expires or user.
        """
        if not (text or "").strip():
            return None
        params = parse_params(text, where)
        unknown = set(params) - {"registrar", "transport", "expires", "contact", "user"}
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
        return cls(registrar=f"{host}:{port}", contact_user=contact, transport=transport, expires_s=expires, user=user)


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
        dtmf: how the carrier sends and expects DTMF digits (:mod:`routing.dtmf`); None = node default.
        billing_increment: ``(first, next)`` seconds: the first ``first`` seconds of an answered
            call are billed whole, then blocks of ``next`` seconds (``(60, 60)``, ``(1, 1)``).
        max_rate: highest per-minute rate allowed for termination over this trunk; dearer
            route entries are skipped in LCR.  None = no ceiling.
        daily_spend_cap: highest spend per UTC day (currency units, both directions); once the
            day's spend reaches it, the trunk takes no new termination calls.  None = no cap.
        inbound_rate: per-minute price the carrier charges for origination calls on this trunk
            (DID minutes), the rate of their call records; None = inbound calls cost nothing.
        media: codecs, ptime, SRTP and RTP timeout of the carrier side (:class:`MediaPolicy`).
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

    def to_redis(self) -> dict[str, str]:
        """Fields of ``edge:trunk:{name}`` (``register`` only for a registration trunk)."""
        fmt = self.number_format
        fields = {
            "direction": self.direction.value,
            "max_calls": "" if self.max_calls is None else str(self.max_calls),
            "country_code": fmt.country_code,
            "national_prefix": fmt.national_prefix,
            "international_prefix": fmt.international_prefix,
            "national_length": str(fmt.national_length),
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
        }
        if self.register is not None:
            fields["register"] = self.register.to_redis()
        if self.tls_ca:
            fields["tls_ca"] = self.tls_ca
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
        try:
            fmt = NumberFormat(
                country_code=fields.get("country_code", ""),
                national_prefix=fields.get("national_prefix", ""),
                international_prefix=fields.get("international_prefix", "00"),
                national_length=_int(fields.get("national_length"), f"{where} national_length", default=0) or 0,
            )
        except NumberError as exc:
            raise DataError(f"{where}: {exc}") from None
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
        )


@dataclass(frozen=True, slots=True)
class Agent:
    """An AI voice agent reachable over SIP (LiveKit SIP, Pipecat, jambonz, Vapi, Retell).

    Attributes:
        name: unique agent name.
        uris: SIP URI targets for origination, tried in order with the same
            failover rules as termination gateways (see :mod:`routing.plan`).
        cidrs: source networks allowed to place termination calls as this agent.
        max_calls: concurrent calls allowed; None = unlimited.
        allow_prefixes: destinations the agent may call, transfer or be redirected to; empty = all not denied.
        deny_prefixes: destinations the agent may never reach.
        x_headers: X- headers the agent may pass to carriers (others are removed).
        trust_identity: whether the agent's identity headers (P-Asserted-Identity...)
            pass to carriers; off by default, so an agent cannot spoof a caller ID that way.
        dtmf: how the agent sends and expects DTMF digits (:mod:`routing.dtmf`); None = node default.
        media: codecs, ptime, SRTP and RTP timeout of the agent side (:class:`MediaPolicy`).
    """

    name: str
    uris: tuple[str, ...] = ()
    cidrs: tuple[str, ...] = ()
    max_calls: int | None = None
    allow_prefixes: tuple[str, ...] = ()
    deny_prefixes: tuple[str, ...] = ()
    x_headers: tuple[str, ...] = ()
    trust_identity: bool = False
    dtmf: DtmfMode | None = None
    media: MediaPolicy = field(default_factory=MediaPolicy)

    def to_redis(self) -> dict[str, str]:
        """Fields of ``edge:agent:{name}``."""
        return {
            "max_calls": "" if self.max_calls is None else str(self.max_calls),
            "allow_prefixes": ",".join(self.allow_prefixes),
            "deny_prefixes": ",".join(self.deny_prefixes),
            "x_headers": ",".join(self.x_headers),
            "trust_identity": "yes" if self.trust_identity else "no",
            "dtmf": "" if self.dtmf is None else str(getattr(self.dtmf, "value", self.dtmf)),
            **self.media.to_redis(),
        }

    @classmethod
    def from_redis(
        cls, name: str, fields: dict[str, str], uris: list[str], cidrs: set[str] | list[str]
    ) -> "Agent":
        """Build an agent from its three keys.

        Raises:
            DataError: any malformed field, naming the redis key.
        """
        for cidr in cidrs:
            parse_cidr(cidr, keys.agent_cidrs(name))
        checked = tuple(parse_sip_uri(u, keys.agent_uris(name)) for u in uris)
        return cls(
            name=name,
            uris=checked,
            cidrs=tuple(sorted(cidrs)),
            max_calls=_int(fields.get("max_calls"), f"{keys.agent(name)} max_calls"),
            allow_prefixes=parse_prefixes(fields.get("allow_prefixes", ""), f"{keys.agent(name)} allow_prefixes"),
            deny_prefixes=parse_prefixes(fields.get("deny_prefixes", ""), f"{keys.agent(name)} deny_prefixes"),
            x_headers=parse_header_names(fields.get("x_headers", ""), f"{keys.agent(name)} x_headers"),
            trust_identity=_bool(fields.get("trust_identity"), f"{keys.agent(name)} trust_identity", default=False),
            dtmf=_dtmf(fields.get("dtmf"), keys.agent(name)),
            media=MediaPolicy.from_redis(fields, keys.agent(name)),
        )


@dataclass(frozen=True, slots=True)
class Did:
    """A DID (E.164) owned by a trunk and bound to an agent."""

    number: str
    trunk: str
    agent: str

    def to_redis(self) -> dict[str, str]:
        """Fields of ``edge:did:{e164}``."""
        return {"trunk": self.trunk, "agent": self.agent}

    @classmethod
    def from_redis(cls, number: str, fields: dict[str, str]) -> "Did":
        """Build a DID from ``HGETALL edge:did:{e164}``.

        Raises:
            DataError: missing trunk or agent field.
        """
        where = keys.did(number)
        if not is_e164(number):
            raise DataError(f"{where}: not an E.164 number")
        trunk, agent = fields.get("trunk", ""), fields.get("agent", "")
        if not trunk or not agent:
            raise DataError(f"{where}: needs both 'trunk' and 'agent' fields")
        return cls(number=number, trunk=trunk, agent=agent)


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One trunk offered for an outbound destination prefix (least-cost routing).

    Attributes:
        prefix: E.164 prefix with ``+`` (``"+1415"``; ``"+"`` matches everything).
        trunk: trunk name.
        rate: cost per minute, in the operator's currency (a Decimal, never a float).
        priority: tie-breaker among equal rates; lower is tried first.
    """

    prefix: str
    trunk: str
    rate: Decimal
    priority: int = 10

    def to_redis(self) -> tuple[str, str]:
        """The (field, value) pair stored in ``edge:route:{prefix}``."""
        return self.trunk, format_params({"rate": self.rate, "priority": self.priority})

    @classmethod
    def from_redis(cls, prefix: str, trunk: str, value: str) -> "RouteEntry":
        """Parse one field of ``edge:route:{prefix}``.

        Raises:
            DataError: missing or negative rate, non-integer priority.
        """
        where = f"{keys.route(prefix)} {trunk}"
        params = parse_params(value, where)
        rate = parse_rate(params.get("rate", ""), f"{where} rate")
        priority = _int(params.get("priority"), f"{where} priority", default=10)
        assert priority is not None
        return cls(prefix=prefix, trunk=trunk, rate=rate, priority=priority)


def parse_rate(text: str, where: str = "rate") -> Decimal:
    """Parse a per-minute rate such as ``"0.0045"``.

    Raises:
        DataError: not a finite non-negative decimal.
    """
    try:
        rate = Decimal(text)
    except (InvalidOperation, TypeError):
        raise DataError(f"{where}: expected a decimal rate per minute, got {text!r}") from None
    if not rate.is_finite() or rate < 0:
        raise DataError(f"{where}: must be a non-negative number, got {text!r}")
    return rate


def _decimal(value: str | None, where: str) -> Decimal | None:
    if value is None or value == "":
        return None
    return parse_rate(value, where)


_INCREMENT = re.compile(r"^([0-9]{1,5})/([0-9]{1,5})$")


def parse_increment(text: str, where: str = "billing_increment") -> tuple[int, int]:
    """Parse a billing increment ``"first/next"`` in seconds (``"60/60"``, ``"30/6"``, ``"1/1"``);
    empty means ``1/1`` (per-second billing).

    Raises:
        DataError: not two integers ``first`` >= 0 and ``next`` >= 1, at most 3600 each.
    """
    if not text:
        return (1, 1)
    match = _INCREMENT.fullmatch(text.strip())
    if not match:
        raise DataError(f"{where}: expected first/next seconds such as 60/60 or 1/1, got {text!r}")
    first, nxt = int(match.group(1)), int(match.group(2))
    if nxt < 1 or first > 3600 or nxt > 3600:
        raise DataError(f"{where}: first must be 0-3600 and next 1-3600 seconds, got {text!r}")
    return (first, nxt)


def format_increment(increment: tuple[int, int]) -> str:
    """Inverse of :func:`parse_increment`: ``(60, 60)`` -> ``"60/60"``."""
    return f"{increment[0]}/{increment[1]}"


def check_prefix(prefix: str) -> str:
    """Validate an outbound route prefix (``+`` followed by 0-15 digits).

    Raises:
        DataError: anything else.
    """
    if not PREFIX_PATTERN.fullmatch(prefix or ""):
        raise DataError(f"route prefix {prefix!r}: use '+' followed by up to 15 digits, e.g. +1415")
    return prefix
