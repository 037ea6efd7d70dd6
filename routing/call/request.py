"""A read-only snapshot of the SIP request being routed.

Built once per request by :mod:`routing.kemi` from Kamailio pseudo-variables;
every routing decision takes it instead of touching ``KSR``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SipRequest"]


@dataclass(frozen=True, slots=True)
class SipRequest:
    """The parts of a SIP request that routing looks at.

    Attributes:
        method: request method (``INVITE``, ``BYE``...).
        call_id: Call-ID header value.
        src_ip: source IP address of the packet (not Via, not Contact).
        src_port: source port.
        proto: transport it arrived on (``udp``, ``tcp``, ``tls``).
        ruri_user: user part of the Request-URI, empty when absent.
        to_user: user part of the To URI.
        from_user: user part of the From URI (the caller).
        from_name: display name of From, may be empty.
        auth_user: username of the request's digest credentials, empty when none.
        header_names: names of the request's header fields, as written.
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
