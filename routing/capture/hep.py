"""HEP version 3 packets (the Homer Encapsulation Protocol): parse and build.

Kamailio's ``siptrace`` module (``hep_mode_on=1``, ``hep_version=3``, ``trace_mode=1``) sends one
HEP3 datagram per SIP message it receives or sends.  The format (HEP3 draft, sipcapture.org
``HEP3_Network_Protocol_Specification_REV_36``; Kamailio ``src/modules/sipcapture/hep.h``):

* a header: the 4 bytes ``HEP3`` and the total length of the packet (uint16, network order, bytes);
* chunks: vendor id (uint16), type id (uint16), chunk length (uint16, bytes, the 6 header bytes
  included), then the value.  Vendor 0 is the generic set read here; others are skipped.

No maintained HEP parser is published on PyPI (checked 2026-12), so this is a small one of the
documented chunk format; unknown chunks and vendors are skipped, as the specification asks.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from routing.errors import EdgeError

__all__ = ["HepError", "HepPacket", "parse", "payload_of", "split", "build", "PROTO_UDP", "PROTO_TCP", "PROTO_TYPE_SIP"]

MAGIC = b"HEP3"
_HEADER = struct.Struct("!4sH")
_CHUNK = struct.Struct("!HHH")

#: IP protocol ids (chunk 0x0002): IANA protocol numbers
PROTO_UDP = 17
PROTO_TCP = 6
#: application protocol type (chunk 0x000b): 1 = SIP
PROTO_TYPE_SIP = 1

# generic chunk types (vendor 0x0000)
_FAMILY, _IP_PROTO, _SRC4, _DST4, _SRC6, _DST6 = 1, 2, 3, 4, 5, 6
_SRC_PORT, _DST_PORT, _TS_SEC, _TS_USEC, _PROTO_TYPE, _CAPTURE_ID = 7, 8, 9, 10, 11, 12
_PAYLOAD, _CORRELATION = 15, 17


class HepError(EdgeError, ValueError):
    """Bytes that are not a well-formed HEP3 packet."""


@dataclass(frozen=True, slots=True)
class HepPacket:
    """One captured message.

    Attributes:
        src, dst: source and destination IP addresses (text, IPv4 or IPv6).
        src_port, dst_port: UDP/TCP ports.
        ts: capture time, seconds since the epoch (microsecond resolution).
        ip_proto: IP protocol of the captured message (17 UDP, 6 TCP; TLS is TCP).
        proto_type: the payload's protocol (1 = SIP).
        capture_id: the capture agent's id (siptrace ``hep_capture_id``).
        payload: the captured message, as it was on the wire.
        correlation_id: the correlation id chunk, empty when absent.
    """

    src: str
    dst: str
    src_port: int
    dst_port: int
    ts: float
    payload: bytes
    ip_proto: int = PROTO_UDP
    proto_type: int = PROTO_TYPE_SIP
    capture_id: int = 0
    correlation_id: str = ""


def split(data: bytes) -> list[bytes]:
    """Cut a concatenation of HEP3 packets (a capture file) into packets.

    A truncated last packet (a file cut while being written) is left out.

    Raises:
        HepError: bytes that do not start with ``HEP3`` where a packet should begin.
    """
    out: list[bytes] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        magic, length = _HEADER.unpack_from(data, offset)
        if magic != MAGIC or length < _HEADER.size:
            raise HepError(f"no HEP3 packet at byte {offset}")
        if offset + length > len(data):
            break
        out.append(data[offset:offset + length])
        offset += length
    return out


def payload_of(data: bytes) -> bytes:
    """Only the payload chunk of a HEP3 packet: the collector's fast path (no address decoding).

    Raises:
        HepError: as :func:`parse`.
    """
    if data[:4] != MAGIC or len(data) < _HEADER.size:
        raise HepError("not a HEP3 packet (magic)")
    length = _HEADER.unpack_from(data, 0)[1]
    if length != len(data):
        raise HepError(f"HEP3 length {length} but {len(data)} bytes")
    offset = _HEADER.size
    while offset + _CHUNK.size <= length:
        vendor, kind, size = _CHUNK.unpack_from(data, offset)
        if size < _CHUNK.size or offset + size > length:
            raise HepError(f"chunk {vendor}:{kind} of length {size} at byte {offset} runs past the packet")
        if vendor == 0 and kind == _PAYLOAD:
            return data[offset + _CHUNK.size:offset + size]
        offset += size
    raise HepError("HEP3 packet without payload chunk")


def parse(data: bytes) -> HepPacket:
    """Parse one HEP3 packet.

    Raises:
        HepError: wrong magic, a length that does not match, a chunk running past the end, or no payload.
    """
    if len(data) < _HEADER.size:
        raise HepError("shorter than a HEP3 header")
    magic, length = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise HepError("not a HEP3 packet (magic)")
    if length != len(data):
        raise HepError(f"HEP3 length {length} but {len(data)} bytes")
    fields: dict[int, bytes] = {}
    offset = _HEADER.size
    while offset < length:
        if offset + _CHUNK.size > length:
            raise HepError(f"truncated chunk header at byte {offset}")
        vendor, kind, size = _CHUNK.unpack_from(data, offset)
        if size < _CHUNK.size or offset + size > length:
            raise HepError(f"chunk {vendor}:{kind} of length {size} at byte {offset} runs past the packet")
        if vendor == 0:
            fields[kind] = data[offset + _CHUNK.size:offset + size]
        offset += size
    if _PAYLOAD not in fields:
        raise HepError("HEP3 packet without payload chunk")
    if _SRC4 in fields and _DST4 in fields:
        src, dst = (str(ipaddress.IPv4Address(fields[k])) for k in (_SRC4, _DST4))
    elif _SRC6 in fields and _DST6 in fields:
        src, dst = (str(ipaddress.IPv6Address(fields[k])) for k in (_SRC6, _DST6))
    else:
        raise HepError("HEP3 packet without source and destination addresses")
    return HepPacket(
        src=src, dst=dst,
        src_port=_uint(fields, _SRC_PORT), dst_port=_uint(fields, _DST_PORT),
        ts=_uint(fields, _TS_SEC) + _uint(fields, _TS_USEC) / 1e6,
        payload=fields[_PAYLOAD],
        ip_proto=_uint(fields, _IP_PROTO, PROTO_UDP),
        proto_type=_uint(fields, _PROTO_TYPE, PROTO_TYPE_SIP),
        capture_id=_uint(fields, _CAPTURE_ID),
        correlation_id=fields.get(_CORRELATION, b"").decode("utf-8", "replace"),
    )


def build(packet: HepPacket) -> bytes:
    """The HEP3 bytes of ``packet`` (the generic chunks siptrace sends)."""
    v6 = ":" in packet.src
    sec = int(packet.ts)
    chunks = [
        _chunk(_FAMILY, struct.pack("!B", 10 if v6 else 2)),
        _chunk(_IP_PROTO, struct.pack("!B", packet.ip_proto)),
        _chunk(_SRC6 if v6 else _SRC4, ipaddress.ip_address(packet.src).packed),
        _chunk(_DST6 if v6 else _DST4, ipaddress.ip_address(packet.dst).packed),
        _chunk(_SRC_PORT, struct.pack("!H", packet.src_port)),
        _chunk(_DST_PORT, struct.pack("!H", packet.dst_port)),
        _chunk(_TS_SEC, struct.pack("!I", sec)),
        _chunk(_TS_USEC, struct.pack("!I", round((packet.ts - sec) * 1e6) % 1_000_000)),
        _chunk(_PROTO_TYPE, struct.pack("!B", packet.proto_type)),
        _chunk(_CAPTURE_ID, struct.pack("!I", packet.capture_id)),
        _chunk(_PAYLOAD, packet.payload),
    ]
    if packet.correlation_id:
        chunks.append(_chunk(_CORRELATION, packet.correlation_id.encode()))
    body = b"".join(chunks)
    return _HEADER.pack(MAGIC, _HEADER.size + len(body)) + body


def _chunk(kind: int, value: bytes) -> bytes:
    return _CHUNK.pack(0, kind, _CHUNK.size + len(value)) + value


def _uint(fields: dict[int, bytes], kind: int, default: int = 0) -> int:
    value = fields.get(kind)
    return int.from_bytes(value, "big") if value else default
