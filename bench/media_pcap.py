"""Write the G.711 mu-law (PCMU) RTP pcap that SIPp plays in the media rungs.

A two-tone signal (so that a transcoder really encodes audio, not silence),
20 ms packets (160 samples), payload type 0, Ethernet/IPv4/UDP framing as
SIPp's play_pcap_audio expects (it rewrites the addresses and ports).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path


def _ulaw(sample: int) -> int:
    """ITU-T G.711 mu-law encoding of one 16-bit linear sample."""
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    if sample < 0:
        sample = -sample
    sample = min(sample, clip) + bias
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def write(path: Path, seconds: float = 15.0, ssrc: int = 0x0BE5C0DE) -> int:
    """Write ``seconds`` of audio; returns the number of RTP packets."""
    packets = int(seconds * 50)
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # pcap header, DLT_EN10MB
    t0 = 1_700_000_000.0
    n = 0
    for i in range(packets):
        payload = bytes(
            _ulaw(int(8000 * math.sin(2 * math.pi * 440 * (i * 160 + k) / 8000)
                      + 4000 * math.sin(2 * math.pi * 1270 * (i * 160 + k) / 8000)))
            for k in range(160)
        )
        rtp = struct.pack("!BBHII", 0x80, 0, i & 0xFFFF, (i * 160) & 0xFFFFFFFF, ssrc) + payload
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + udp
        frame = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + b"\x08\x00" + ip
        ts = t0 + i * 0.02
        sec = int(ts)
        out += struct.pack("<IIII", sec, int(round((ts - sec) * 1e6)), len(frame), len(frame)) + frame
        n += 1
    path.write_bytes(bytes(out))
    return n


if __name__ == "__main__":
    import sys

    print(write(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 15.0))
