"""The two networks an edge faces, carriers and agents, and which one each leg of a call uses.

An edge can face carriers on one network (public, often behind a 1:1 NAT such as a cloud
elastic IP) and agents on another (a private VPC).  Then each side has its own SIP
sockets (settings ``sip.listen[].side``) and its own rtpengine interface
(``rtpengine.sides``), and every message and media stream must use the interface of
the side it goes to, so a side never sees the other side's addresses (docs/media.md).

Pure functions: :mod:`routing.kamailio` applies their results
(Kamailio ``$fs``, rtpengine ng ``direction``).
"""

from __future__ import annotations

from typing import Iterable, Mapping

__all__ = ["CARRIER", "AGENT", "caller_side", "sender_side", "other_side", "direction_flags",
           "uri_transport", "side_sockets", "send_socket"]

CARRIER = "carrier"
AGENT = "agent"


def caller_side(direction: str) -> str:
    """The side of a call's caller: carriers originate (``origination``), agents terminate."""
    return AGENT if direction == "termination" else CARRIER


def other_side(side: str) -> str:
    """The side that is not ``side``."""
    return AGENT if side == CARRIER else CARRIER


def sender_side(direction: str, from_caller: bool) -> str:
    """The side a message comes from: the caller's side when ``from_caller``, else the callee's."""
    side = caller_side(direction)
    return side if from_caller else other_side(side)


def direction_flags(direction: str, from_caller: bool, enabled: bool) -> tuple[str, ...]:
    """rtpengine flags naming the interfaces of an SDP's two legs: the interface facing the
    sender of the SDP first, then the one facing its receiver (rtpengine ng protocol,
    ``direction`` list of logical interface names; Kamailio rtpengine module ``direction=``).

    Args:
        direction: the call's direction (``origination`` or ``termination``).
        from_caller: the SDP (offer or answer) comes from the caller's side.
        enabled: rtpengine has one interface per side (``rtpengine.sides``); otherwise
            there is a single interface and no flag is needed.

    Only offers carry them: an answer without a direction keeps the interfaces its offer chose
    (rtpengine 10.5 ``__init_interface``), while a direction list in an answer is applied to the
    legs in the offer's roles and gives the offerer the answerer's interface (measured with the
    real daemon, tests/integration/test_nat.py).

        ``("direction=carrier", "direction=agent")`` or the reverse; ``()`` when not enabled.
    """
    if not enabled:
        return ()
    sender = sender_side(direction, from_caller)
    return (f"direction={sender}", f"direction={other_side(sender)}")


def uri_transport(uri: str) -> str:
    """The transport a SIP URI asks for: its ``transport`` parameter, ``tls`` for ``sips:``,
    else ``udp`` (RFC 3261 section 19.1.1; the edge never resolves NAPTR, ``dns=no``)."""
    head, _, params = uri.partition(";")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "transport" and value:
            return value.strip().lower().split(">")[0].split("?")[0]
    return "tls" if head.strip().lower().startswith("sips:") else "udp"


def side_sockets(listeners: Iterable[tuple[str, str, int, str]]) -> dict[str, dict[str, str]]:
    """The socket each side sends from, per transport.

    Args:
        listeners: ``(transport, address, port, side)`` of every SIP listener, in settings
            order; ``side`` is ``carrier``, ``agent`` or ``both``; IPv6 addresses in brackets.

    Returns:
        ``{side: {transport: "proto:address:port"}}``: the first listener of that side and
        transport, one of the side's own preferred to a ``both`` one; empty when no listener
        faces only one side (then Kamailio picks the socket, as for a single-network edge).
    """
    rows = list(listeners)
    if all(side == "both" for *_, side in rows):
        return {}
    out: dict[str, dict[str, str]] = {CARRIER: {}, AGENT: {}}
    for want_own in (True, False):
        for transport, address, port, side in rows:
            for target in (CARRIER, AGENT):
                if (side == target) if want_own else (side == "both"):
                    out[target].setdefault(transport, f"{transport}:{address}:{port}")
    return out


def send_socket(sockets: Mapping[str, Mapping[str, str]], side: str, uri: str) -> str | None:
    """The socket (Kamailio ``$fs`` form, ``proto:address:port``) a request to ``uri`` on
    ``side`` leaves from; None when the side has no socket of that transport (Kamailio chooses)."""
    return sockets.get(side, {}).get(uri_transport(uri))
