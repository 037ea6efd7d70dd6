"""A read-only snapshot of the SIP request being routed.

Built once per request by :mod:`routing.kamailio` from Kamailio pseudo-variables;
every routing decision takes it instead of touching ``KSR``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SipRequest", "telephone_user"]


@dataclass(frozen=True, slots=True)
class SipRequest:
    """The parts of a SIP request that routing looks at.

    Attributes:
        method: request method (``INVITE``, ``BYE``...).
        call_id: Call-ID header value.
        src_ip: source IP address of the packet (not Via, not Contact).
        src_port: source port.
        proto: transport it arrived on (``udp``, ``tcp``, ``tls``).
        ruri_user: user part of the Request-URI, empty when absent; for a telephone URI
            with its user parameters (:func:`telephone_user`).
        to_user: user part of the To URI, the same way.
        from_user: user part of the From URI (the caller).
        from_name: display name of From, may be empty.
        auth_user: username of the request's digest credentials, empty when none.
        header_names: names of the request's header fields, as written.
        pai: the P-Asserted-Identity value(s) (RFC 3325), empty when the request has none.
        received_ms: when the edge received it (ms since epoch); 0 when unknown.
    """

    method: str
    call_id: str
    src_ip: str
    src_port: int
    proto: str
    ruri_user: str
    to_user: str
    from_user: str
    from_name: str = ""
    auth_user: str = ""
    header_names: tuple[str, ...] = ()
    received_ms: int = 0
    pai: str = ""


def telephone_user(user: str, uri: str) -> str:
    """The user part to read a telephone number from, with the parameters Kamailio drops.

    Kamailio 5.6 parses a ``tel:`` URI (RFC 3966), and a ``sip:`` URI with
    ``user=phone`` (RFC 3261 section 19.1.6), as a telephone URI: its ``$rU`` /
    ``$tU`` is the bare number without its parameters, so the ``phone-context``
    of a local number (RFC 3966 section 5.1.5) is lost.  Seen on 5.6:
    ``tel:4155550100;phone-context=+1`` gives ``$rU`` ``4155550100``;
    ``sip:4155550100;phone-context=+1@edge;user=phone`` gives the same.  Other
    URIs are returned as Kamailio gives them (escapes such as ``%2B`` are kept:
    :func:`routing.call.numbers.from_uri_user` decodes them).

    Args:
        user: ``$rU`` or ``$tU`` (may be empty).
        uri: the whole URI it came from, ``$ru`` or ``$tu``.

    Returns:
        ``"4155550100;phone-context=+1"`` for the URIs above, else ``user`` unchanged.
    """
    if not user or uri[:4].lower() not in ("tel:", "sip:", "sips"):
        return user
    scheme, _, rest = uri.partition(":")
    if scheme.lower() == "tel":
        return rest.strip()
    head = rest.split("@", 1)[0] if "@" in rest else ""
    return head if head.startswith(user + ";") else user
