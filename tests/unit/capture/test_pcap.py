"""routing.capture.pcap: the ladder as a libpcap file, read back frame by frame with dpkt
(tshark reads the edge's own exports in tests/integration/test_sip_capture.py)."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import dpkt

from routing.capture.ladder import build
from routing.capture.pcap import frame, write
from tests.unit.capture.samples import CALL_ID, EDGE_SOCKETS, RESPONSE, answered_call


def test_every_message_is_one_udp_frame_with_its_addresses_time_and_masked_text() -> None:
    ladder = build(CALL_ID, answered_call(), EDGE_SOCKETS)
    out = io.BytesIO()
    assert write(ladder, out) == 11
    out.seek(0)
    reader = dpkt.pcap.Reader(out)
    assert reader.datalink() == dpkt.pcap.DLT_EN10MB
    frames = list(reader)
    assert len(frames) == 11
    for (ts, buf), entry in zip(frames, ladder.entries):
        ip = dpkt.ethernet.Ethernet(buf).data
        udp = ip.data
        assert abs(ts - entry.ts) < 1e-6
        assert f"{'.'.join(map(str, ip.src))}:{udp.sport}" == entry.src
        assert udp.data.decode() == entry.text and ip.len == len(ip) and udp.ulen == len(udp)
    assert RESPONSE.encode() not in out.getvalue()


def test_ipv6_frames() -> None:
    eth = dpkt.ethernet.Ethernet(frame("::1", 5060, "2001:db8::1", 5090, b"OPTIONS sip:x SIP/2.0\r\n\r\n"))
    assert eth.type == dpkt.ethernet.ETH_TYPE_IP6 and eth.data.data.dport == 5090


def test_a_file_export_is_the_operators_only(tmp_path: Path) -> None:
    path = tmp_path / "call.pcap"
    write(build(CALL_ID, answered_call(), EDGE_SOCKETS), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes()[:4] == b"\xd4\xc3\xb2\xa1"  # libpcap magic (little-endian, microseconds)
