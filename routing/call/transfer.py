"""Blind transfer (RFC 3515 REFER) decisions, sans I/O: what a ``Refer-To`` names, whether the
agent may transfer there, how the target is written for the carrier, and what a NOTIFY's
``message/sipfrag`` body says about the outcome.

A ``Refer-To`` (RFC 3515 section 2.1) is a name-addr or addr-spec.  Its target is either a
**number** (a ``tel:`` URI, a ``sip:`` URI with ``user=phone`` or a ``+``-prefixed user, or any
user at the edge's own address) that the destination policy checks, or a **SIP URI** on a host
the operator lists for the agent (``transfer_hosts``) or that the edge knows as an agent's host
(on-net: a human queue, a PBX).  A ``sip:1001@pbx.example.com`` on a host nobody listed is
refused: its user is an extension, not a number, and the host was never vetted.

Headers embedded in the URI (``?X-Ctx=42&User-to-User=...``, RFC 3261 section 19.1.1) become
headers of the INVITE the transferee sends; they pass under the referring agent's allow-list
(:func:`kept_headers`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import quote, unquote

from routing.call.decision import Reason, Reject
from routing.call.headers import IDENTITY_HEADERS, canonical
from routing.call.numbers import E164, NumberError, NumberFormat, from_uri_user
from routing.call.policy import destination_allowed
from routing.errors import EdgeError
from routing.tables.model.fields import ReferToFormat, TransferMode

__all__ = [
    "TransferMode", "ReferToFormat", "ReferTo", "TransferTarget", "TransferError",
    "parse_refer_to", "classify", "check_number", "kept_headers", "carrier_refer_to", "sipfrag_status",
    "is_refer_event", "onnet_hosts", "sip_target_allowed",
]


class TransferError(EdgeError, ValueError):
    """A ``Refer-To`` that cannot be read (no ``sip:``, ``sips:`` or ``tel:`` URI)."""


@dataclass(frozen=True, slots=True)
class ReferTo:
    """A parsed ``Refer-To`` URI.

    Attributes:
        scheme: ``sip``, ``sips`` or ``tel`` (lower case).
        user: the user part with its user parameters, as written (``+14155550100``,
            ``4155550100;phone-context=+1``); the number of a ``tel:`` URI.
        host: the host, lower case, without port (empty for ``tel:``).
        hostport: host and port as written (empty for ``tel:``).
        params: URI parameters as written, each with its leading ``;``.
        headers: embedded headers, unescaped ``(name, value)`` in order.
    """

    scheme: str
    user: str
    host: str
    hostport: str
    params: str
    headers: tuple[tuple[str, str], ...]

    @property
    def user_phone(self) -> bool:
        """Whether the URI carries ``user=phone`` (RFC 3261 section 19.1.1)."""
        return any(p.strip().lower() == "user=phone" for p in self.params.split(";"))

    @property
    def uri(self) -> str:
        """The URI without its embedded headers."""
        if self.scheme == "tel":
            return f"tel:{self.user}{self.params}"
        user = f"{self.user}@" if self.user else ""
        return f"{self.scheme}:{user}{self.hostport}{self.params}"


@dataclass(frozen=True, slots=True)
class TransferTarget:
    """Where a REFER sends the transferee.

    Attributes:
        number: the E.164 number of a number target, else empty.
        uri: the SIP URI of a SIP URI target (no embedded headers), else empty.
        headers: the embedded headers that pass (:func:`kept_headers`).
    """

    number: E164 = ""
    uri: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        """The number or URI (records, logs)."""
        return self.number or self.uri


_ADDR = re.compile(r"<([^>]*)>")
_URI = re.compile(r"^(sips?|tel):(.*)$", re.I | re.S)


def parse_refer_to(value: str) -> ReferTo:
    """Parse a ``Refer-To`` header value (RFC 3515 section 2.1; URI grammar RFC 3261 section 25.1,
    RFC 3966 for ``tel:``).

    Args:
        value: the header value, e.g. ``"Human" <sip:+14155550100@edge;user=phone?X-Ctx=7>``.

    Returns:
        The URI's parts; embedded header names and values are ``%HH``-unescaped.

    Raises:
        TransferError: no ``sip:``, ``sips:`` or ``tel:`` URI, or a SIP URI without host.
    """
    text = (value or "").strip()
    bracketed = _ADDR.search(text)
    if bracketed:
        text = bracketed.group(1).strip()
    else:
        text = text.split(";", 1)[0] if text[:4].lower() == "tel:" else text
    match = _URI.match(text)
    if not match:
        raise TransferError(f"not a sip:, sips: or tel: URI: {value!r}")
    scheme, rest = match.group(1).lower(), match.group(2)
    rest, _, query = rest.partition("?")
    headers = tuple(
        (unquote(name).strip(), unquote(val))
        for name, _, val in (part.partition("=") for part in query.split("&") if part)
        if name.strip()
    )
    if scheme == "tel":
        number, sep, params = rest.partition(";")
        return ReferTo("tel", number, "", "", sep + params if sep else "", headers)
    user, at, hostpart = rest.rpartition("@")
    if not at:
        user, hostpart = "", rest
    hostport, sep, params = hostpart.partition(";")
    host = hostport.strip().lower()
    if host.startswith("["):
        host = host.split("]", 1)[0] + "]"
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if not host:
        raise TransferError(f"a SIP URI without host: {value!r}")
    return ReferTo(scheme, user, host, hostport.strip(), sep + params if sep else "", headers)


def classify(refer: ReferTo, number_format: NumberFormat, transfer_hosts: Iterable[str],
             onnet_hosts: Iterable[str], edge_hosts: Iterable[str]) -> TransferTarget | Reject:
    """Tell a number target from a SIP URI target (module docstring), before any policy.

    Args:
        refer: the parsed ``Refer-To``.
        number_format: how the referring agent writes numbers (``Agent.number_format``).
        transfer_hosts: hosts the agent may transfer to by SIP URI (any case).
        onnet_hosts: hosts of every agent's URIs (the edge's own on-net targets).
        edge_hosts: the edge's own addresses (a number written at the edge's address).

    Returns:
        The target (headers not yet filtered), or ``403 Transfer Target Not Allowed`` for a SIP URI
        on a host neither listed nor on-net, ``403 Transfer Not Allowed`` for a number that
        cannot be read.
    """
    listed = {h.lower() for h in (*transfer_hosts, *onnet_hosts)}
    if refer.scheme != "tel" and refer.host in listed:
        return TransferTarget(uri=refer.uri, headers=refer.headers)
    global_number = refer.user.startswith("+") or refer.user.upper().startswith("%2B")
    if refer.scheme == "tel" or refer.user_phone or global_number or refer.host in {h.lower() for h in edge_hosts}:
        try:
            user = refer.user + (refer.params if refer.scheme == "tel" else "")
            return TransferTarget(number=from_uri_user(user, number_format), headers=refer.headers)
        except NumberError:
            return Reject.of(Reason.TRANSFER_NOT_ALLOWED)
    return Reject.of(Reason.TRANSFER_HOST_NOT_ALLOWED)


def onnet_hosts(agent_uris: Iterable[str]) -> frozenset[str]:
    """The hosts of agents' URIs (lower case): the on-net targets a transfer or a fallback may
    reach without being listed; URIs that cannot be read are left out."""
    hosts = set()
    for uri in agent_uris:
        try:
            hosts.add(parse_refer_to(uri).host)
        except TransferError:
            continue
    return frozenset(hosts)


def sip_target_allowed(uri: str, transfer_hosts: Iterable[str], agent_uris: Iterable[str]) -> bool:
    """Whether a SIP URI target (a transfer's or a fallback's) is on a host the agent lists
    (``transfer_hosts``) or on an agent's own host."""
    try:
        host = parse_refer_to(uri).host
    except TransferError:
        return False
    return host in {h.lower() for h in transfer_hosts} or host in onnet_hosts(agent_uris)


def check_number(number: E164, allow: Iterable[str], deny: Iterable[str], trunk_deny: Iterable[str] = ()) -> Reject | None:
    """Destination policy of a transfer to a number (toll fraud through transfers): the agent's
    allow/deny prefixes with the node's blocked prefixes (``deny``), and the call's trunk's deny
    prefixes.  None when allowed, else ``403 Transfer Not Allowed``."""
    if not destination_allowed(number, allow, deny) or not destination_allowed(number, (), trunk_deny):
        return Reject.of(Reason.TRANSFER_NOT_ALLOWED)
    return None


#: embedded headers that always pass: the attended transfer's dialog (RFC 3891) and call context (RFC 7433)
_ALWAYS = frozenset({"replaces", "user-to-user"})


def kept_headers(headers: Iterable[tuple[str, str]], allowed_x: Iterable[str], trust_identity: bool
                 ) -> tuple[tuple[str, str], ...]:
    """The embedded headers of a ``Refer-To`` that may pass: ``Replaces`` and ``User-to-User``,
    ``X-`` headers on the agent's allow-list (never ``X-Edge-*``), identity headers only from
    an agent whose identity is trusted; every other header (``Route``, ``From``, ``Contact``...)
    is removed, as none of them is the agent's to set on the carrier's new call."""
    allowed = {canonical(n) for n in allowed_x}
    out = []
    for name, value in headers:
        key = canonical(name)
        if key in _ALWAYS or (key.startswith("x-") and not key.startswith("x-edge-") and key in allowed) \
                or (key in IDENTITY_HEADERS and trust_identity):
            out.append((name, value))
    return tuple(out)


#: characters an embedded header value keeps unescaped (RFC 3261 section 25.1 hnv-unreserved and unreserved)
_HVALUE_SAFE = "[]/?:+$-_.!~*'()"


def carrier_refer_to(target: TransferTarget, fmt: ReferToFormat, host: str, number_format: NumberFormat) -> str:
    """The ``Refer-To`` value relayed to a carrier: a number in the trunk's format, a SIP URI
    as the agent wrote it, then the headers that pass, escaped (RFC 3261 section 19.1.1).

    Args:
        target: the classified target.
        fmt: the trunk's ``refer_to`` format.
        host: the carrier's host (its first gateway, else the address the REFER is relayed to).
        number_format: the trunk's number format (``sip-national``).

    Returns:
        A name-addr, e.g. ``<sip:+442071838751@carrier.example.com>``.
    """
    if target.number:
        digits = target.number[1:]
        if fmt is ReferToFormat.TEL:
            uri = f"tel:{target.number}"
        elif fmt is ReferToFormat.SIP_DIGITS:
            uri = f"sip:{digits}@{host}"
        elif fmt is ReferToFormat.SIP_NATIONAL:
            uri = f"sip:{_national(digits, number_format)}@{host}"
        else:
            uri = f"sip:{target.number}@{host}"
    else:
        uri = target.uri
    if target.headers:
        uri += "?" + "&".join(f"{quote(n, safe='-')}={quote(v, safe=_HVALUE_SAFE)}" for n, v in target.headers)
    return f"<{uri}>"


def _national(digits: str, fmt: NumberFormat) -> str:
    cc = fmt.country_code
    if not cc:
        return digits
    if digits.startswith(cc):
        return fmt.national_prefix + digits[len(cc):]
    return fmt.international_prefix + digits


_SIPFRAG = re.compile(r"^\s*SIP/2\.0\s+([1-6][0-9]{2})\b", re.I)


def sipfrag_status(body: str) -> int | None:
    """The status code of a NOTIFY's ``message/sipfrag`` body (RFC 3515 section 2.4.5, RFC 3420):
    its first line is a status line, ``SIP/2.0 200 OK``.  None when the body holds none."""
    match = _SIPFRAG.match(body or "")
    return int(match.group(1)) if match else None


def is_refer_event(event: str) -> bool:
    """Whether an ``Event`` header value is the ``refer`` package (RFC 3515 section 2.4.4; an
    ``;id=`` parameter names which REFER)."""
    return (event or "").split(";", 1)[0].strip().lower() == "refer"
