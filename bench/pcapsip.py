"""Transit time of SIP messages through the edge, from a tcpdump capture of its SIP port.

Each INVITE, 180 and 200 (to the INVITE) is seen twice: arriving at the edge and
leaving it.  Transit = kernel timestamp out - timestamp in, per call.  Added
post-dial delay = INVITE transit + 180 transit; added setup = INVITE transit +
200 transit.  No generator scheduling noise, microsecond resolution.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import sippx


def start_capture(path: Path, bpf: str) -> subprocess.Popen:
    proc = subprocess.Popen(["tcpdump", "-i", "lo", "-n", "-s", "700", "-B", "65536", "-w", str(path), bpf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.05)
    time.sleep(0.3)
    return proc


def stop_capture(proc: subprocess.Popen) -> str:
    time.sleep(0.3)
    try:
        os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    return (err or b"").decode(errors="replace")


def compress(path: Path) -> None:
    with open(path, "rb") as src, gzip.open(str(path) + ".gz", "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()


def packets(path: Path):
    """(ts, src_ip, src_port, dst_ip, dst_port, payload) of each UDP/IPv4 packet (linktype EN10MB)."""
    data = path.read_bytes()
    if len(data) < 24:
        return
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        frame = data[off:off + incl]
        off += incl
        ts = sec + frac / (1e9 if nano else 1e6)
        if linktype == 1:
            if len(frame) < 14 or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
        elif linktype == 113:  # Linux cooked
            ip = frame[16:]
        else:
            ip = frame
        if len(ip) < 28 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        src = ".".join(map(str, ip[12:16]))
        dst = ".".join(map(str, ip[16:20]))
        sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
        yield ts, src, sport, dst, dport, ip[ihl + 8:]


_CALLID = re.compile(rb"^(?:Call-ID|i)\s*:\s*(\S+)", re.M | re.I)
_CSEQ = re.compile(rb"^CSeq\s*:\s*(\d+)\s+(\w+)", re.M | re.I)


def transit(path: Path, edge_ip: str, edge_port: int) -> dict:
    """Per-call transit times (ms) through the edge: INVITE, 180, 200, and their PDD/setup sums."""
    seen: dict[tuple, dict[str, float]] = {}
    for ts, src, sport, dst, dport, payload in packets(path):
        first = payload.split(b"\r\n", 1)[0]
        if first.startswith(b"INVITE "):
            kind = "INVITE"
        elif first.startswith(b"SIP/2.0 180") or first.startswith(b"SIP/2.0 200"):
            kind = first[8:11].decode()
        else:
            continue
        cseq = _CSEQ.search(payload)
        cid = _CALLID.search(payload)
        if not cid or not cseq or cseq.group(2).upper() != b"INVITE" or cseq.group(1) != b"1":
            continue
        inbound = dst == edge_ip and dport == edge_port
        outbound = src == edge_ip and sport == edge_port
        if inbound == outbound:
            continue
        key = (cid.group(1), kind)
        rec = seen.setdefault(key, {})
        rec.setdefault("in" if inbound else "out", ts)  # first copy only (ignore retransmissions)
    per: dict[str, list[float]] = {"INVITE": [], "180": [], "200": [], "pdd": [], "setup": []}
    calls: dict[bytes, dict[str, float]] = {}
    for (cid, kind), rec in seen.items():
        if "in" in rec and "out" in rec and rec["out"] >= rec["in"]:
            ms = (rec["out"] - rec["in"]) * 1000
            per[kind].append(ms)
            calls.setdefault(cid, {})[kind] = ms
    for c in calls.values():
        if "INVITE" in c and "180" in c:
            per["pdd"].append(c["INVITE"] + c["180"])
        if "INVITE" in c and "200" in c:
            per["setup"].append(c["INVITE"] + c["200"])
    out = {}
    for kind, values in per.items():
        if values:
            out[kind] = {"n": len(values), "p50": round(sippx.percentile(values, 0.5), 3),
                         "p99": round(sippx.percentile(values, 0.99), 3), "max": round(max(values), 3)}
    return out
