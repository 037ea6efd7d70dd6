"""Machine facts and /proc accounting for the bench: CPU time, PSS, load, drops."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import time
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def loadavg() -> list[float]:
    return [float(x) for x in open("/proc/loadavg").read().split()[:3]]


def machine() -> dict:
    """CPU model, cores, kernel, memory, component versions (recorded with every result)."""
    lscpu = _run(["lscpu"])
    fields = {}
    for line in lscpu.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", open("/proc/meminfo").read()).group(1))
    versions = {
        "kamailio": _run(["kamailio", "-v"]).splitlines()[0].split(" ", 1)[-1] if shutil.which("kamailio") else None,
        "rtpengine": (_run(["rtpengine", "--version"]) or _run(["sh", "-c", "rtpengine --version 2>&1"])).strip(),
        "redis": _run(["redis-server", "--version"]).strip().split(" sha=")[0],
        "sipp": _run(["sipp", "-v"]).strip().splitlines()[0].strip() if shutil.which("sipp") else None,
        "python": platform.python_version(),
    }
    return {
        "cpu_model": fields.get("Model name"),
        "vendor": fields.get("Vendor ID"),
        "cores": os.cpu_count(),
        "threads_per_core": fields.get("Thread(s) per core"),
        "hypervisor": fields.get("Hypervisor vendor"),
        "bogomips": fields.get("BogoMIPS"),
        "kernel": platform.release(),
        "os": _os_release(),
        "mem_gib": round(mem_kb / 1048576, 1),
        "versions": versions,
        "lscpu": lscpu,
    }


def _os_release() -> str:
    try:
        text = open("/etc/os-release").read()
        return re.search(r'PRETTY_NAME="([^"]+)"', text).group(1)
    except (OSError, AttributeError):
        return platform.platform()


def cpu_stat() -> dict[str, int]:
    """Whole-machine jiffies from /proc/stat (user, system, softirq, steal, idle...)."""
    parts = open("/proc/stat").readline().split()[1:]
    names = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"]
    return {n: int(v) for n, v in zip(names, parts)}


def cpu_split(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """Percent of all cores per category between two cpu_stat() samples."""
    delta = {k: after[k] - before[k] for k in before}
    total = sum(delta.values()) or 1
    return {k: round(100.0 * v / total, 1) for k, v in delta.items()}


def udp_snmp() -> dict[str, int]:
    lines = [l.split() for l in open("/proc/net/snmp") if l.startswith("Udp:")]
    return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:])}


def session_pids(leader: int) -> list[int]:
    """Every live process whose session id is ``leader`` (Kamailio's forked workers)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = open(f"/proc/{name}/stat").read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == leader and fields[0] not in ("Z", "X"):
            pids.append(int(name))
    return sorted(pids)


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (s), including their threads."""
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def pss_kb(pids: list[int]) -> int:
    """Sum of proportional set sizes (kB): shared pages (Kamailio's shm) are counted once overall."""
    total = 0
    for pid in pids:
        try:
            text = open(f"/proc/{pid}/smaps_rollup").read()
        except OSError:
            continue
        match = re.search(r"^Pss:\s+(\d+)", text, re.M)
        if match:
            total += int(match.group(1))
    return total


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            text = open(f"/proc/{pid}/status").read()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+)", text, re.M)
        if match:
            total += int(match.group(1))
    return total


def socket_drops(port_lo: int, port_hi: int, ip_hex: str | None = None) -> int:
    """Sum of the per-socket receive-queue drops of UDP sockets bound in [port_lo, port_hi]."""
    total = 0
    for line in open("/proc/net/udp").readlines()[1:]:
        parts = line.split()
        local = parts[1]
        addr, port = local.split(":")
        port = int(port, 16)
        if port_lo <= port <= port_hi and (ip_hex is None or addr == ip_hex):
            total += int(parts[-1])
    return total


@dataclass
class Group:
    """A named set of processes to account: a session leader (Kamailio) or single pids."""

    name: str
    leader: int | None = None
    pids_fixed: tuple[int, ...] = ()

    def pids(self) -> list[int]:
        if self.leader:
            return session_pids(self.leader)
        return [p for p in self.pids_fixed if os.path.exists(f"/proc/{p}")]


class CpuMeter:
    """CPU seconds of several groups between start() and stop()."""

    def __init__(self, groups: list[Group]) -> None:
        self.groups = groups
        self.t0 = 0.0
        self.c0: dict[str, float] = {}
        self.s0: dict[str, int] = {}

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.c0 = {g.name: cpu_seconds(g.pids()) for g in self.groups}
        self.s0 = cpu_stat()

    def stop(self) -> dict:
        wall = time.monotonic() - self.t0
        used = {g.name: round(cpu_seconds(g.pids()) - self.c0[g.name], 3) for g in self.groups}
        return {"wall_s": round(wall, 2), "cpu_s": used, "machine_pct": cpu_split(self.s0, cpu_stat())}
