"""A call's captured messages as a pcap file (libpcap format) that Wireshark and tshark open.

Each message becomes one Ethernet/IPv4 (or IPv6)/UDP frame with the captured addresses, ports
and time, built and written with dpkt (its ``pcap.Writer``: the classic libpcap file format,
link type 1 Ethernet, snap length 65535).  Messages captured over TCP or TLS (HEP carries TLS
decrypted) are written as UDP datagrams of the same ports: each SIP message stays one packet that
Wireshark's SIP dissector reads (its UDP heuristic; port 5060 by default).  The payloads are the
masked texts of the ladder (``Entry.text``): no digest ``response``/``nonce`` is exported.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import BinaryIO

import dpkt

from routing.capture.ladder import Ladder

__all__ = ["write", "frame"]

_MAC_EDGE = b"\x02\x00\x00\x00\x00\x01"
_MAC_PEER = b"\x02\x00\x00\x00\x00\x02"


def frame(src: str, src_port: int, dst: str, dst_port: int, payload: bytes) -> bytes:
    """One Ethernet frame carrying ``payload`` in a UDP datagram (IPv4 or IPv6, by the addresses)."""
    udp = dpkt.udp.UDP(sport=src_port, dport=dst_port, data=payload)
    udp.ulen = len(udp)
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if a.version == 6:
        ip: dpkt.Packet = dpkt.ip6.IP6(src=a.packed, dst=b.packed, nxt=dpkt.ip.IP_PROTO_UDP, hlim=64, data=udp,
                                       plen=len(udp))
        eth_type = dpkt.ethernet.ETH_TYPE_IP6
    else:
        ip = dpkt.ip.IP(src=a.packed, dst=b.packed, p=dpkt.ip.IP_PROTO_UDP, ttl=64, data=udp)
        ip.len = len(ip)
        eth_type = dpkt.ethernet.ETH_TYPE_IP
    return bytes(dpkt.ethernet.Ethernet(src=_MAC_PEER, dst=_MAC_EDGE, type=eth_type, data=ip))


def write(ladder: Ladder, out: Path | BinaryIO) -> int:
    """Write the ladder's messages to ``out`` (a path, created 0600, or a binary file); returns the count."""
    if isinstance(out, Path):
        import os

        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            return write(ladder, f)
    writer = dpkt.pcap.Writer(out, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
    for entry in ladder.entries:
        p = entry.packet
        writer.writepkt(frame(p.src, p.src_port, p.dst, p.dst_port, entry.text.encode("utf-8")), ts=entry.ts)
    return len(ladder.entries)
