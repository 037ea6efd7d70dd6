"""A captured origination call (carrier 192.0.2.11:5070 -> edge 192.0.2.1:5060 -> agent 192.0.2.21:5090)
as HEP packets, with a digest-authenticated INVITE, a 407 challenge, and a refused call."""

from __future__ import annotations

from routing.capture.hep import HepPacket

EDGE = ("192.0.2.1", 5060)
CARRIER = ("192.0.2.11", 5070)
AGENT = ("192.0.2.21", 5090)
EDGE_SOCKETS = [EDGE]
CALL_ID = "1-42@192.0.2.11"
RESPONSE = "6629fae49393a05397450978507c4ef1"
NONCE = "5f3a0d1e2c"


def sip(first: str, cseq: str, *headers: str, call_id: str = CALL_ID, to_tag: str = "", sdp: bool = False) -> bytes:
    body = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 20000 RTP/AVP 0 101\r\n" if sdp else ""
    lines = [first, "Via: SIP/2.0/UDP 192.0.2.11:5070;branch=z9hG4bK-1", "From: <sip:+14155550123@192.0.2.11>;tag=a",
             f"To: <sip:+14155550100@192.0.2.1>{to_tag}", f"Call-ID: {call_id}", f"CSeq: {cseq}", *headers]
    if sdp:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def pkt(src: tuple[str, int], dst: tuple[str, int], ts: float, payload: bytes) -> HepPacket:
    return HepPacket(src[0], dst[0], src[1], dst[1], ts, payload)


AUTH = (f'Proxy-Authorization: Digest username="pbx", realm="edge", nonce="{NONCE}", '
        f'uri="sip:+14155550100@192.0.2.1", response="{RESPONSE}"')


def answered_call() -> list[HepPacket]:
    """INVITE (with credentials) in, out to the agent, 200 back, ACK and BYE on both legs."""
    tag = ";tag=b"
    return [
        pkt(CARRIER, EDGE, 100.000, sip("INVITE sip:+14155550100@192.0.2.1 SIP/2.0", "2 INVITE", AUTH, sdp=True)),
        pkt(EDGE, CARRIER, 100.001, sip("SIP/2.0 100 Trying", "2 INVITE")),
        pkt(EDGE, AGENT, 100.010, sip("INVITE sip:+14155550100@192.0.2.21:5090 SIP/2.0", "2 INVITE",
                                      "X-Edge-Trunk: pbx", "X-Edge-DID: +14155550100", sdp=True)),
        pkt(AGENT, EDGE, 100.200, sip("SIP/2.0 200 OK", "2 INVITE", to_tag=tag, sdp=True)),
        pkt(EDGE, CARRIER, 100.201, sip("SIP/2.0 200 OK", "2 INVITE", to_tag=tag, sdp=True)),
        pkt(CARRIER, EDGE, 100.300, sip("ACK sip:edge SIP/2.0", "2 ACK", to_tag=tag)),
        pkt(EDGE, AGENT, 100.301, sip("ACK sip:agent SIP/2.0", "2 ACK", to_tag=tag)),
        pkt(CARRIER, EDGE, 101.000, sip("BYE sip:edge SIP/2.0", "3 BYE", to_tag=tag)),
        pkt(EDGE, AGENT, 101.001, sip("BYE sip:agent SIP/2.0", "3 BYE", to_tag=tag)),
        pkt(AGENT, EDGE, 101.010, sip("SIP/2.0 200 OK", "3 BYE", to_tag=tag)),
        pkt(EDGE, CARRIER, 101.011, sip("SIP/2.0 200 OK", "3 BYE", to_tag=tag)),
    ]


def refused_call(call_id: str = "refused@192.0.2.99", ts: float = 200.0) -> list[HepPacket]:
    stranger = ("192.0.2.99", 5070)
    return [
        pkt(stranger, EDGE, ts, sip("INVITE sip:+14155550100@192.0.2.1 SIP/2.0", "1 INVITE", call_id=call_id)),
        pkt(EDGE, stranger, ts + 0.01, sip("SIP/2.0 403 Source Not Allowed", "1 INVITE", call_id=call_id, to_tag=";tag=x")),
        pkt(stranger, EDGE, ts + 0.02, sip("ACK sip:+14155550100@192.0.2.1 SIP/2.0", "1 ACK", call_id=call_id,
                                           to_tag=";tag=x")),
    ]
