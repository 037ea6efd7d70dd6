"""A call's ladder: its captured SIP messages in order, each placed between two lifelines.

Pure: captured packets (:class:`routing.capture.hep.HepPacket`) and the edge's own SIP sockets in,
a :class:`Ladder` out, which ``edgectl trace`` prints (rich), draws (``html.py``) or exports
(``pcap.py``).  Every value shown goes through :func:`routing.capture.sipmsg.mask`: digest
``response`` and ``nonce`` never leave the node's capture files.

The edge relays with the Call-ID it received (a proxy, RFC 3261 section 16.6; topoh keeps it,
``mask_callid 0``), so one Call-ID holds both legs of a call and every failover attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Sequence

from routing.capture import sipmsg
from routing.capture.hep import HepPacket

__all__ = ["Entry", "Ladder", "CallSummary", "build", "summarize", "EDGE", "endpoint"]

#: the edge's lifeline
EDGE = "edge"
#: header fields shown with a message (lower-case), in this order
SHOWN_HEADERS = (
    "x-edge-trunk", "x-edge-did", "x-edge-caller", "reason", "retry-after", "warning",
    "authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate", "refer-to",
)


def endpoint(ip: str, port: int) -> str:
    """``ip:port``, IPv6 in brackets (RFC 3986 section 3.2.2)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One message of the ladder.

    Attributes:
        ts: capture time (s since the epoch).
        direction: ``in`` (received by the edge), ``out`` (sent by it) or ``pass`` (neither end is the edge).
        src, dst: ``ip:port`` of the sender and receiver.
        src_lane, dst_lane: their lifelines (``edge`` for the edge's own sockets).
        label: ``INVITE`` or ``200 OK``.
        cseq: the CSeq header (``1 INVITE``).
        details: the header fields that matter, masked, and the SDP's media lines.
        text: the whole message, masked.
        transport: ``udp``, ``tcp`` or ``tls`` (a TLS message is captured decrypted).
        packet: the captured packet itself.
    """

    ts: float
    direction: str
    src: str
    dst: str
    src_lane: str
    dst_lane: str
    label: str
    cseq: str
    details: tuple[str, ...]
    text: str
    transport: str
    packet: HepPacket

    @property
    def time(self) -> str:
        """Wall-clock time (UTC) with milliseconds."""
        return datetime.fromtimestamp(self.ts, timezone.utc).strftime("%H:%M:%S.%f")[:-3]


@dataclass(frozen=True, slots=True)
class Ladder:
    """A call's messages in capture order, and its lifelines left to right (``edge`` among them)."""

    call_id: str
    lanes: tuple[str, ...]
    entries: tuple[Entry, ...]

    @property
    def start(self) -> float:
        return self.entries[0].ts if self.entries else 0.0


@dataclass(frozen=True, slots=True)
class CallSummary:
    """One line of ``edgectl trace --failed``: when, who called whom, the final answer to the caller."""

    call_id: str
    start: float
    caller: str
    callee: str
    source: str
    status: int
    reason: str
    attempts: int
    messages: int

    @property
    def failed(self) -> bool:
        return self.status >= 300


def build(call_id: str, packets: Iterable[HepPacket], edge_sockets: Sequence[tuple[str, int]],
          tls_sockets: Sequence[tuple[str, int]] = ()) -> Ladder:
    """The ladder of ``packets`` (one call's), in time order, each request before the responses to it.

    siptrace stamps a message when it hands it to the collector, which for a sent message is after
    the send: a fast answer, read by another Kamailio process, can be stamped first.  A request the
    edge sent is therefore moved before any response to it (same peer, same CSeq) stamped earlier.

    Args:
        edge_sockets: (address, port) of the edge's SIP listeners; an address ``0.0.0.0`` or ``::``
            matches any address on that port.
        tls_sockets: those of them that are TLS listeners: siptrace (Kamailio 5.6) marks TLS messages
            as UDP in HEP, the edge's socket tells them apart.
    """
    ordered = _causal(sorted(packets, key=lambda p: p.ts))
    mine = {(a, p) for a, p in edge_sockets}
    wild = {p for a, p in edge_sockets if a in ("0.0.0.0", "::")}
    tls = {(a, p) for a, p in tls_sockets}
    tls_wild = {p for a, p in tls_sockets if a in ("0.0.0.0", "::")}

    def is_edge(ip: str, port: int) -> bool:
        return (ip, port) in mine or port in wild

    def transport(p: HepPacket) -> str:
        for ip, port in ((p.src, p.src_port), (p.dst, p.dst_port)):
            if (ip, port) in tls or port in tls_wild:
                return "tls"
        return "tcp" if p.ip_proto == 6 else "udp"

    entries: list[Entry] = []
    peers: list[str] = []
    for p in ordered:
        src, dst = endpoint(p.src, p.src_port), endpoint(p.dst, p.dst_port)
        src_edge, dst_edge = is_edge(p.src, p.src_port), is_edge(p.dst, p.dst_port)
        direction = "out" if src_edge and not dst_edge else "in" if dst_edge and not src_edge else "pass"
        if src_edge and dst_edge:
            direction = "loop"
        src_lane = EDGE if src_edge else src
        dst_lane = EDGE if dst_edge else dst
        for lane in (src_lane, dst_lane):
            if lane != EDGE and lane not in peers:
                peers.append(lane)
        f = sipmsg.facts(p.payload)
        entries.append(Entry(
            ts=p.ts, direction=direction, src=src, dst=dst, src_lane=src_lane, dst_lane=dst_lane,
            label=f.label or "?", cseq=f.header("cseq"), details=_details(f),
            text=sipmsg.mask(p.payload.decode("utf-8", "replace")),
            transport=transport(p), packet=p,
        ))
    # the caller (first sender) left of the edge, everyone else right of it
    lanes = ([peers[0], EDGE] + peers[1:]) if peers else [EDGE]
    return Ladder(call_id, tuple(lanes), tuple(entries))


def _causal(ordered: list[HepPacket]) -> list[HepPacket]:
    """``ordered`` (by time) with each request moved before any response to it stamped earlier
    (a response from the request's destination with the request's CSeq)."""
    out = list(ordered)
    i = 0
    while i < len(out):
        p = out[i]
        f = sipmsg.facts(p.payload)
        if f.is_request and f.method != "ACK":
            for j in range(i):
                q = out[j]
                if (q.src, q.src_port) == (p.dst, p.dst_port):
                    g = sipmsg.facts(q.payload)
                    if not g.is_request and g.cseq == f.cseq:
                        out.insert(j, out.pop(i))
                        break
        i += 1
    return out


def summarize(ladder: Ladder) -> CallSummary | None:
    """The call's caller, callee, attempts and the final answer the edge gave its caller (status 0:
    none yet); None when the capture holds no initial INVITE received by the edge."""
    first = next((e for e in ladder.entries if e.direction == "in" and e.label == "INVITE"
                  and ";tag=" not in sipmsg.facts(e.packet.payload).header("to")), None)
    if first is None:
        return None
    invite = sipmsg.facts(first.packet.payload)
    number = invite.cseq[0]
    status, reason = 0, ""
    for e in ladder.entries:
        if e.direction != "out" or e.dst != first.src:
            continue
        f = sipmsg.facts(e.packet.payload)
        if not f.is_request and f.status >= 200 and f.cseq == (number, "INVITE"):
            status, reason = f.status, f.reason
            if f.status < 300:
                break
    attempts = sum(1 for e in ladder.entries if e.direction == "out" and e.label == "INVITE"
                   and ";tag=" not in sipmsg.facts(e.packet.payload).header("to"))
    return CallSummary(
        call_id=ladder.call_id, start=first.ts, caller=_user(invite.header("from")), callee=_user(invite.reason),
        source=first.src, status=status, reason=reason, attempts=attempts, messages=len(ladder.entries),
    )


def _user(uri: str) -> str:
    """The user part of a URI or name-addr (``sip:+1415@host`` -> ``+1415``), else the URI."""
    text = uri.split("<", 1)[-1].split(">", 1)[0]
    text = text.split(":", 1)[-1] if ":" in text else text
    return text.split("@", 1)[0].split(";", 1)[0]


def _details(f: sipmsg.SipFacts) -> tuple[str, ...]:
    out = []
    if f.is_request and f.reason:
        out.append(f"R-URI: {f.reason}")
    for name in SHOWN_HEADERS:
        for value in f.all(name):
            out.append(sipmsg.mask(f"{_title(name)}: {value}"))
    if f.body and "application/sdp" in f.header("content-type").lower():
        conn = next((l[2:].strip() for l in f.body.splitlines() if l.startswith("c=")), "")
        for line in f.body.splitlines():
            if line.startswith("m="):
                out.append(f"SDP: {conn.split()[-1] if conn else '?'} {line[2:].strip()}")
    return tuple(out)


def _title(name: str) -> str:
    special = {"www-authenticate": "WWW-Authenticate", "x-edge-did": "X-Edge-DID"}
    return special.get(name) or "-".join(part.capitalize() for part in name.split("-"))
