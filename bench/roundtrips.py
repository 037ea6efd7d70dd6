"""Per-call counts of one rung's Kamailio: Python entries, redis round trips, rtpengine round trips.

A :class:`Window` counts, between ``open()`` and ``close()``, what the Kamailio processes of one
rung (every process of its session, ``sysinfo.session_pids``) did:

- **Python entries**: calls of app_python3's ``apy_exec`` (the C function behind every
  ``python_exec`` of a native cfg and every KEMI callback of ``cfgengine "python"``), by the name
  of the Python function entered (its second argument), recorded by a perf uprobe
  (:class:`PythonProbe`) with ``perf record -p <pids>``, enabled and disabled through perf's
  control fifos (``--control fifo:ctl,ack``, ``-D -1``), so the window is exact.  A rung without
  app_python3 (the peer) counts 0.  When uprobes cannot be used (no perf, no root, a kernel
  without ``CONFIG_UPROBE_EVENTS``) the count is ``None`` with the reason.
- **redis round trips**: TCP segments carrying payload from a Kamailio socket to redis's port
  (tcpdump on ``lo``): one per request a client writes (a pipeline or a Lua script is one);
  and the **redis commands** of those clients, from ``redis-cli MONITOR`` (Lua-internal calls
  not counted), by command name.
- **rtpengine round trips**: UDP datagrams from a Kamailio socket to rtpengine's ng port, by ng
  ``command`` (offer, answer, query, delete, ...), from the same capture.

Packets and commands are attributed by source port: the local ports of every socket the rung's
processes hold (``/proc/<pid>/fd`` → ``/proc/net/{tcp,udp}``) at ``open()`` and at ``close()``.
An ng request from a socket that no process holds any more at ``close()`` is counted too (the
edge's Python ng client opens a socket per request; nothing else on the machine sends ng requests
to the bench's rtpengine, and the idle interval would show it if it did).  Traffic of other
processes (the bench's own redis client, the edge's monitor, another rung) is reported apart as
``unattributed``.  The capture and MONITOR windows are delimited by markers
(a UDP datagram to an address where nothing listens, a redis ``ECHO``) that the window waits for
in their output, so nothing sent inside the window is lost to buffering.

Used by ``ladder.py`` (phase ``counts``).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

APP_PYTHON3 = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules/app_python3.so")
MARKER_IP = "127.0.2.250"  # nothing listens here: the capture's start and end markers go to it
_NG_COMMAND = re.compile(rb"7:command(\d+):")


def wait_until(cond, timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll ``cond()`` until it is true; RuntimeError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------ Python entries (perf uprobe)


class PythonProbe:
    """A perf uprobe on ``apy_exec`` of app_python3.so, under an event name of this process's own
    (``byocbench:apy_exec_<pid>``), so that probes of other runs are neither reused nor removed.

    ``add()`` returns None when the probe is in place, else the reason it is not (the bench then
    reports "not measured" with it); ``remove()`` deletes it (``perf probe -d``)."""

    def __init__(self, library: Path = APP_PYTHON3) -> None:
        self.library = library
        self.event = f"byocbench:apy_exec_{os.getpid()}"
        self.added = False

    def add(self) -> str | None:
        if not shutil.which("perf"):
            return "perf is not installed"
        if not self.library.exists():
            return f"{self.library} not found"
        # apy_exec(sip_msg_t *msg, char *fname, char *fparam, int emode): the second argument (%si on
        # x86-64) names the Python function entered; without argument fetching, the count alone
        for spec in (f"{self.event}=apy_exec fname=+0(%si):string", f"{self.event}=apy_exec"):
            out = subprocess.run(["perf", "probe", "-q", "-x", str(self.library), spec],
                                 capture_output=True, text=True, timeout=60)
            if out.returncode == 0:
                self.added = True
                return None
        return "perf probe failed: " + " ".join(out.stderr.split())[:300]

    def remove(self) -> None:
        if self.added:
            subprocess.run(["perf", "probe", "-q", "-d", self.event], capture_output=True, timeout=60)
            self.added = False


class _PerfRecord:
    """``perf record -e <event> -p <pids>``, started disabled and switched through its control fifos;
    ``finish()`` returns the entries by Python function name (``perf script``)."""

    def __init__(self, workdir: Path, event: str, pids: list[int]) -> None:
        self.ctl, self.ack, self.data = workdir / "perf.ctl", workdir / "perf.ack", workdir / "perf.data"
        for fifo in (self.ctl, self.ack):
            fifo.unlink(missing_ok=True)
            os.mkfifo(fifo)
        self.proc = subprocess.Popen(
            ["perf", "record", "-q", "-e", event, "-p", ",".join(map(str, pids)), "-D", "-1",
             "--control", f"fifo:{self.ctl},{self.ack}", "-o", str(self.data)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        # O_RDWR: opening a fifo this way never blocks, whether perf has opened its end yet or not
        self.ctl_fd = os.open(self.ctl, os.O_RDWR)
        self.ack_fd = os.open(self.ack, os.O_RDWR | os.O_NONBLOCK)

    def command(self, cmd: str, timeout: float = 10.0) -> None:
        os.write(self.ctl_fd, (cmd + "\n").encode())
        deadline = time.monotonic() + timeout
        buf = b""
        while b"ack" not in buf:
            if self.proc.poll() is not None:
                raise RuntimeError(f"perf record exited: {self.proc.stderr.read().decode(errors='replace')[-300:]}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"perf record did not acknowledge {cmd!r}")
            if select.select([self.ack_fd], [], [], min(left, 0.2))[0]:
                buf += os.read(self.ack_fd, 64)

    def finish(self) -> dict[str, int]:
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self._close()
        if b"lost" in err.lower():
            raise RuntimeError(f"perf record lost events: {err.decode(errors='replace')[-300:]}")
        out = subprocess.run(["perf", "script", "-i", str(self.data), "-F", "trace"], capture_output=True,
                             text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"perf script failed: {out.stderr[-300:]}")
        entries: dict[str, int] = {}
        for line in out.stdout.splitlines():
            m = re.search(r'fname="([^"]*)"', line)
            name = m.group(1) if m else "apy_exec"
            entries[name] = entries.get(name, 0) + 1
        self.data.unlink(missing_ok=True)
        return entries

    def _close(self) -> None:
        for fd in (self.ctl_fd, self.ack_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()


# ------------------------------------------------------------------ sockets of a process group


def socket_ports(pids: list[int] | None) -> dict[str, set[int]]:
    """Local ports of the TCP and UDP (IPv4) sockets that ``pids`` hold (None: any process of this
    network namespace): {"tcp": {...}, "udp": {...}}."""
    inodes: set[int] = set()
    for pid in pids or ():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    ports: dict[str, set[int]] = {"tcp": set(), "udp": set()}
    for proto in ports:
        with open(f"/proc/net/{proto}") as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                if pids is None or int(fields[9]) in inodes:
                    ports[proto].add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


# ------------------------------------------------------------------ capture


def ipv4_segments(path: Path):
    """(proto, src_ip, src_port, dst_ip, dst_port, payload) of each TCP or UDP packet over IPv4
    in a pcap file (link types EN10MB, the ``lo`` of Linux, and Linux cooked)."""
    data = path.read_bytes()
    if len(data) < 24:
        return
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if linktype == 1:
            if frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
        elif linktype == 113:
            ip = frame[16:]
        else:
            ip = frame
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] not in (6, 17):
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        l4 = ip[ihl:total]
        sport, dport = struct.unpack("!HH", l4[:4])
        src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
        if ip[9] == 6:
            yield "tcp", src, sport, dst, dport, l4[(l4[12] >> 4) * 4:]
        else:
            yield "udp", src, sport, dst, dport, l4[8:]


_NG_JSON_COMMAND = re.compile(rb'"command"\s*:\s*"([^"]*)"')


def ng_command(payload: bytes) -> str:
    """The ``command`` of an ng request (``<cookie> <bencoded dict>`` or ``<cookie> <JSON>``), or "?"."""
    j = _NG_JSON_COMMAND.search(payload)
    if j:
        return j.group(1).decode(errors="replace")
    m = _NG_COMMAND.search(payload)
    if not m:
        return "?"
    start = m.end()
    return payload[start:start + int(m.group(1))].decode(errors="replace")


# ------------------------------------------------------------------ one window


@dataclass
class Window:
    """Counts of one rung's Kamailio between ``open()`` and ``close()``; see the module docstring.

    ``pids``: every process of the rung's Kamailio; ``probe``: the uprobe (None, or one whose
    ``add()`` failed, with ``probe_error`` the reason: Python entries are then not measured)."""

    workdir: Path
    pids: list[int]
    redis_port: int
    ng_port: int
    probe: PythonProbe | None = None
    probe_error: str | None = None

    def open(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports = socket_ports(self.pids)
        self.pcap = self.workdir / "roundtrips.pcap"
        self.monitor_path = self.workdir / "redis-monitor.txt"
        self.marker = f"byocbench-{os.getpid()}-{time.monotonic_ns()}"
        self.tcpdump = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-n", "-U", "--immediate-mode", "-s", "0", "-B", "16384", "-w", str(self.pcap),
             f"(tcp dst port {self.redis_port}) or (udp dst port {self.ng_port})"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        self.monitor_file = open(self.monitor_path, "wb")
        self.monitor = subprocess.Popen(["redis-cli", "-p", str(self.redis_port), "monitor"], stdout=self.monitor_file,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.perf = None
        try:
            self._marker_seen("start")
            wait_until(lambda: self.monitor_path.read_bytes().startswith(b"OK"), 10, "redis-cli MONITOR")
            if self.probe is not None and self.probe_error is None:
                try:
                    self.perf = _PerfRecord(self.workdir, self.probe.event, self.pids)
                    self.perf.command("enable")
                except (OSError, RuntimeError) as exc:
                    self.probe_error = f"perf record failed: {exc}"
                    if self.perf:
                        self.perf.abort()
                    self.perf = None
        except BaseException:
            self._stop_tools()
            raise
        self.t0 = time.monotonic()

    def _marker_seen(self, tag: str) -> None:
        """Send a marker datagram into the capture and wait until tcpdump has written it."""
        payload = f"{self.marker}-{tag}".encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            def seen() -> bool:
                sock.sendto(payload, (MARKER_IP, self.ng_port))
                if self.tcpdump.poll() is not None:
                    raise RuntimeError(f"tcpdump exited: {self.tcpdump.stderr.read().decode(errors='replace')[-300:]}")
                return self.pcap.exists() and payload in self.pcap.read_bytes()

            wait_until(seen, 10, f"tcpdump to capture its {tag} marker", interval=0.1)

    def close(self, redis_client) -> dict:
        """Stop counting; ``redis_client`` (a redis.Redis) sends the MONITOR end marker."""
        wall = time.monotonic() - self.t0
        entries = None
        try:
            if self.perf is not None:
                try:
                    self.perf.command("disable")
                    entries = self.perf.finish()
                except (OSError, RuntimeError) as exc:
                    self.probe_error = f"perf record failed: {exc}"
                    self.perf.abort()
            self._marker_seen("end")
            redis_client.echo(self.marker)
            wait_until(lambda: self.marker.encode() in self.monitor_path.read_bytes(), 10, "the MONITOR end marker")
            more = socket_ports(self.pids)
            for proto in self.ports:
                self.ports[proto] |= more[proto]
            self.held_udp = socket_ports(None)["udp"]
        finally:
            self._stop_tools()
        return self._count(wall, entries)

    def _stop_tools(self) -> None:
        for proc in (self.tcpdump, self.monitor):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.monitor_file.close()

    def _count(self, wall: float, entries: dict[str, int] | None) -> dict:
        tcp, udp = self.ports["tcp"], self.ports["udp"]
        redis_req = redis_other = 0
        ng: dict[str, int] = {}
        ng_other = ng_short = 0
        started = False
        for proto, _src, sport, dst, dport, payload in ipv4_segments(self.pcap):
            if dst == MARKER_IP:
                started = started or payload.endswith(b"-start")
                if payload.endswith(b"-end"):
                    break
                continue
            if not started:
                continue
            if proto == "tcp" and dport == self.redis_port and payload:
                if sport in tcp:
                    redis_req += 1
                else:
                    redis_other += 1
            elif proto == "udp" and dport == self.ng_port:
                # the rung's own sockets, and sockets gone by the end (a socket per request, as the
                # edge's Python ng client opens); a socket another process still holds is not the rung's
                if sport in udp or sport not in self.held_udp:
                    cmd = ng_command(payload)
                    ng[cmd] = ng.get(cmd, 0) + 1
                    ng_short += sport not in udp
                else:
                    ng_other += 1
        commands: dict[str, int] = {}
        commands_other = 0
        for line in self.monitor_path.read_text(errors="replace").splitlines():
            m = re.match(r'^[0-9.]+ \[\d+ ([^\]]+)\] "([^"]+)"', line)
            if not m or m.group(1) == "lua" or self.marker in line:
                continue
            port = m.group(1).rsplit(":", 1)[-1]
            if port.isdigit() and int(port) in tcp:
                name = m.group(2).upper()
                commands[name] = commands.get(name, 0) + 1
            else:
                commands_other += 1
        for path in (self.pcap, self.monitor_path):
            if path.exists() and path.stat().st_size > 100_000:
                import gzip

                with open(path, "rb") as src, gzip.open(str(path) + ".gz", "wb", compresslevel=6) as dst:
                    shutil.copyfileobj(src, dst)
                path.unlink()
        return {
            "seconds": round(wall, 3),
            "python_entries": None if entries is None else sum(entries.values()),
            "python_by_function": entries,
            "python_error": self.probe_error,
            "redis_requests": redis_req,
            "redis_commands": commands,
            "rtpengine_requests": ng,
            "rtpengine_from_short_lived_sockets": ng_short,
            "unattributed": {"redis_requests": redis_other, "redis_commands": commands_other, "rtpengine_requests": ng_other},
            "kamailio_processes": len(self.pids),
        }


def per_call(busy: dict, idle: dict, calls: int) -> dict:
    """Per-call figures of a step window ``busy`` with ``calls`` completed calls, less the background
    of an idle window of the same rung scaled to the step's length (timer routes, keepalives)."""
    scale = busy["seconds"] / idle["seconds"] if idle.get("seconds") else 0.0

    def net(b, i):
        return None if b is None or i is None else round((b - i * scale) / max(1, calls), 2)

    def rate(n):
        return None if n is None or not idle.get("seconds") else round(n / idle["seconds"], 2)

    def net_dict(b: dict, i: dict) -> dict:
        return {k: net(b.get(k, 0), i.get(k, 0)) for k in sorted(set(b) | set(i))}

    rtp = net_dict(busy["rtpengine_requests"], idle["rtpengine_requests"])
    py = (None if busy.get("python_by_function") is None or idle.get("python_by_function") is None
          else net_dict(busy["python_by_function"], idle["python_by_function"]))
    cmds = net_dict(busy["redis_commands"], idle["redis_commands"])
    return {
        "python_entries": net(busy["python_entries"], idle["python_entries"]),
        "python_by_function": py,
        "python_error": busy.get("python_error") or idle.get("python_error"),
        "redis_round_trips": net(busy["redis_requests"], idle["redis_requests"]),
        "redis_commands": round(sum(v for v in cmds.values() if v), 2),
        "redis_commands_by_name": cmds,
        "rtpengine_round_trips": round(sum(v for v in rtp.values() if v), 2),
        "rtpengine_by_command": rtp,
        "rtpengine_from_short_lived_sockets": net(busy["rtpengine_from_short_lived_sockets"],
                                                  idle["rtpengine_from_short_lived_sockets"]),
        "background_per_s": {
            "python_entries": rate(idle["python_entries"]),
            "redis_round_trips": rate(idle["redis_requests"]),
            "rtpengine_round_trips": rate(sum(idle["rtpengine_requests"].values())),
        },
    }
