"""Several hosts on one machine for the tests: each host a Linux network namespace with its own
address on one bridge (``ip netns``, ``ip link ... type veth``, iproute2; root only).

A host ``NAME`` is the namespace ``{prefix}NAME`` with ``eth0`` = ``{subnet}.N/16`` (the other end,
``{prefix}v-NAME``, enslaved to the bridge ``{prefix}br0``) and its own loopback up; the machine
itself (the test process) has ``{subnet}.254`` on the bridge, so it reaches every host.  Everything
is named with the prefix, so :meth:`Hosts.close` (and :meth:`Hosts.sweep`, for a run that crashed)
removes exactly what a run made: the processes in its namespaces, the namespaces, the bridge.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["Hosts"]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and result.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


class Hosts:
    """The namespaces of one test run.

    Args:
        prefix: of every namespace and link name (``bx-``: one engineer's run never touches another's).
        subnet: the first three octets of the /16's addresses used (``10.66.0``).
    """

    def __init__(self, prefix: str, subnet: str) -> None:
        if shutil.which("ip") is None:
            raise AssertionError("iproute2's ip is not installed: the multi-host tests need it")
        self.prefix, self.subnet = prefix, subnet
        self.bridge = f"{prefix}br0"
        self.addresses: dict[str, str] = {}
        self.procs: list[subprocess.Popen] = []

    def sweep(self) -> None:
        """Remove what an earlier run with this prefix left (its processes, namespaces, bridge)."""
        for line in _ip("netns", "list", check=False).stdout.splitlines():
            name = line.split()[0] if line.strip() else ""
            if name.startswith(self.prefix):
                self._kill_in(name)
                _ip("netns", "del", name, check=False)
        _ip("link", "del", self.bridge, check=False)

    def start(self) -> None:
        """The bridge, with the machine's own address on it."""
        self.sweep()
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.subnet}.254/16", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add(self, name: str, octet: int) -> str:
        """Host ``name`` at ``{subnet}.{octet}``; returns its address."""
        ns, veth, address = self.prefix + name, f"{self.prefix}v-{name}"[:15], f"{self.subnet}.{octet}"
        _ip("netns", "add", ns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", veth, "master", self.bridge, "up")
        for args in (("addr", "add", f"{address}/16", "dev", "eth0"), ("link", "set", "eth0", "up"),
                     ("link", "set", "lo", "up")):
            _ip("-n", ns, *args)
        self.addresses[name] = address
        return address

    def argv(self, name: str, argv: list[str]) -> list[str]:
        """``argv`` run on host ``name``."""
        return ["ip", "netns", "exec", self.prefix + name, *argv]

    def run(self, name: str, argv: list[str], timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess:
        """Run ``argv`` on host ``name`` to its end (output captured as text)."""
        return subprocess.run(self.argv(name, argv), capture_output=True, text=True, timeout=timeout, **kwargs)

    def popen(self, name: str, argv: list[str], log: Path, cwd: Path | None = None) -> subprocess.Popen:
        """Start ``argv`` on host ``name`` in the background, its output to ``log``; stopped by :meth:`close`."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(self.argv(name, argv), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=cwd or log.parent)
        self.procs.append(proc)
        return proc

    def pids(self, name: str) -> list[int]:
        """Every process whose network namespace is host ``name``'s."""
        result = _ip("netns", "pids", self.prefix + name, check=False)
        return [int(p) for p in result.stdout.split() if p.isdigit()]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> list[int]:
        """Send ``sig`` to every process of host ``name`` (the host's death with SIGKILL); returns their pids."""
        pids = self.pids(name)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return pids

    def _kill_in(self, ns: str) -> None:
        result = _ip("netns", "pids", ns, check=False)
        for pid in (int(p) for p in result.stdout.split() if p.isdigit()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """Kill every process of every host, delete the namespaces and the bridge."""
        for name in self.addresses:
            self._kill_in(self.prefix + name)
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(self.pids(n) for n in self.addresses):
            time.sleep(0.05)
        for name in self.addresses:
            _ip("netns", "del", self.prefix + name, check=False)
        _ip("link", "del", self.bridge, check=False)
