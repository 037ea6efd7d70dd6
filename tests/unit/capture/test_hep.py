"""routing.capture.hep: HEP3 packets parsed and built (chunk format of the HEP3 specification)."""

from __future__ import annotations

import struct

import pytest

from routing.capture.hep import PROTO_TCP, HepError, HepPacket, build, parse, payload_of, split

SIP = b"INVITE sip:+1@127.0.0.1 SIP/2.0\r\nCall-ID: abc@host\r\n\r\n"


def test_round_trip_ipv4() -> None:
    packet = HepPacket("127.0.0.11", "127.0.0.1", 5070, 5060, 1796656114.832218, SIP, capture_id=7,
                       correlation_id="abc@host")
    assert parse(build(packet)) == packet


def test_round_trip_ipv6_tcp() -> None:
    packet = HepPacket("::1", "2001:db8::5", 5061, 5060, 10.5, SIP, ip_proto=PROTO_TCP)
    assert parse(build(packet)) == packet


def test_header_and_chunk_layout() -> None:
    data = build(HepPacket("127.0.0.11", "127.0.0.1", 5070, 5060, 1.0, SIP))
    assert data[:4] == b"HEP3"
    assert struct.unpack("!H", data[4:6])[0] == len(data)
    vendor, kind, length = struct.unpack("!HHH", data[6:12])
    assert (vendor, kind, length) == (0, 1, 7)  # IP family chunk: 6 header bytes + 1


def test_unknown_vendor_and_type_chunks_are_skipped() -> None:
    data = build(HepPacket("127.0.0.11", "127.0.0.1", 5070, 5060, 1.0, SIP))
    extra = struct.pack("!HHH", 0x1234, 1, 9) + b"xyz" + struct.pack("!HHH", 0, 99, 8) + b"ab"
    data = b"HEP3" + struct.pack("!H", len(data) + len(extra)) + data[6:] + extra
    assert parse(data).payload == SIP


@pytest.mark.parametrize("data, problem", [
    (b"HEP", "shorter"),
    (b"HEP2\x00\x06", "magic"),
    (b"HEP3\x00\x0aabc", "length"),
    (b"HEP3\x00\x0c\x00\x00\x00\x0f\x00\x09", "runs past"),
    (b"HEP3\x00\x09\x00\x00\x00", "truncated"),
])
def test_malformed_packets_are_refused(data: bytes, problem: str) -> None:
    with pytest.raises(HepError, match=problem):
        parse(data)


def test_packet_without_payload_or_addresses_is_refused() -> None:
    no_payload = b"HEP3" + struct.pack("!H", 6 + 7) + struct.pack("!HHHB", 0, 1, 7, 2)
    with pytest.raises(HepError, match="payload"):
        parse(no_payload)
    payload_only = b"HEP3" + struct.pack("!H", 6 + 6 + 3) + struct.pack("!HHH", 0, 15, 9) + b"abc"
    with pytest.raises(HepError, match="addresses"):
        parse(payload_only)


def test_split_cuts_a_capture_file_and_leaves_out_a_truncated_tail() -> None:
    a = build(HepPacket("127.0.0.11", "127.0.0.1", 5070, 5060, 1.0, SIP))
    b = build(HepPacket("127.0.0.1", "127.0.0.21", 5060, 5090, 2.0, SIP))
    assert split(a + b) == [a, b]
    assert split(a + b[:-3]) == [a]
    assert split(b"") == []
    with pytest.raises(HepError):
        split(a + b"garbage-garbage")


def test_payload_of_is_the_fast_path_of_parse() -> None:
    data = build(HepPacket("127.0.0.11", "127.0.0.1", 5070, 5060, 1.0, SIP, correlation_id="x"))
    assert payload_of(data) == parse(data).payload == SIP
    for bad in (b"HEP2" + data[4:], data[:-1], b"HEP3\x00\x0c\x00\x00\x00\x0f\x00\x09",
                b"HEP3" + struct.pack("!H", 13) + struct.pack("!HHHB", 0, 1, 7, 2)):
        with pytest.raises(HepError):
            payload_of(bad)
