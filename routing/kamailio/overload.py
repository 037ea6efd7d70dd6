"""Automatic load shedding, measured: every 20 ms (rtimer ``shed``, its own timer process)
the SIP receive backlog of the edge's UDP listening sockets is read and the share of new calls to
refuse (:class:`routing.call.overload.ShedControl`) is published in the shared variable
:data:`callstate.SHED_SHV`, which the native route ``ADMISSION`` applies (``$RANDOM``) before any
redis or Python work.

The backlog is read on the listening sockets themselves: Kamailio binds them before it forks, so
the timer process holds them too; each is duplicated once and asked for ``SO_MEMINFO`` (socket(7):
``rmem_alloc`` is the bytes of datagrams queued, in the kernel's accounting).  One system call per
socket and tick, no scan of ``/proc/net/udp`` (which lists rtpengine's media sockets too).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections import deque

import KSR  # type: ignore[import-not-found]

from ..call import metrics
from ..call.overload import FULL, ShedControl
from . import callstate as cs
from .worker import Worker, pv

__all__ = ["Backlog", "shed_tick"]

#: SO_MEMINFO (linux/socket.h; not in Python's socket module) and the index of rmem_alloc
SO_MEMINFO = 55
_MEMINFO = struct.Struct("9I")


def _endpoint(address: str, port: int) -> tuple[str, int]:
    return ipaddress.ip_address(address.strip("[]")).compressed, int(port)


class Backlog:
    """The SIP UDP listening sockets of this Kamailio, found among the process's open descriptors.

    Args:
        endpoints: ``(address, port)`` of each UDP listener (settings ``sip.listen``).
    """

    def __init__(self, endpoints: tuple[tuple[str, int], ...]) -> None:
        self.wanted = {_endpoint(a, p) for a, p in endpoints}
        self.sockets: list[socket.socket] | None = None

    def _find(self) -> list[socket.socket]:
        found, seen = [], set()
        for name in os.listdir("/proc/self/fd"):
            try:
                link = os.readlink(f"/proc/self/fd/{name}")
                if not link.startswith("socket:") or link in seen:
                    continue  # a socket open on several descriptors is counted once
                sock = socket.socket(fileno=os.dup(int(name)))
            except OSError:
                continue
            seen.add(link)
            keep = False
            try:
                if sock.type == socket.SOCK_DGRAM and sock.family in (socket.AF_INET, socket.AF_INET6):
                    keep = _endpoint(*sock.getsockname()[:2]) in self.wanted
            except OSError:
                pass
            if keep:
                found.append(sock)
            else:
                sock.close()
        return found

    def measure(self) -> int:
        """Bytes queued on the listeners now (0 when none was found: shedding stays off and
        :func:`shed_tick` logs it once)."""
        if self.sockets is None:
            self.sockets = self._find()
            if len(self.sockets) < len(self.wanted):
                KSR.warn(f"edge: load shedding reads {len(self.sockets)} of {len(self.wanted)} SIP UDP sockets\n")
        total = 0
        for sock in self.sockets:
            total += _MEMINFO.unpack(sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, _MEMINFO.size))[0]
        return total


    def close(self) -> None:
        """Close the duplicated descriptors (the listeners themselves stay open)."""
        for sock in self.sockets or []:
            sock.close()
        self.sockets = None


#: readings between two updates of the gauges (every 100 ms at the rtimer's 20 ms)
GAUGE_EVERY = 5

_backlog: Backlog | None = None
_control: ShedControl | None = None
_readings: deque[int] = deque()
_ticks = 0


def shed_tick(w: Worker) -> None:
    """One tick of the shedding law: measure, publish the share; every :data:`GAUGE_EVERY` ticks,
    export both as gauges."""
    global _backlog, _control, _readings, _ticks
    s = w.settings
    if _backlog is None or _control is None:
        _backlog = Backlog(tuple((a, p) for a, p in s.shed_sockets))
        _control = ShedControl(s.shed_high_bytes, s.shed_low_bytes)
        _readings = deque(maxlen=_control.window)
    backlog = _backlog.measure()
    _readings.append(backlog)
    share = int(pv(cs.SHED_SHV) or 0)
    new = _control.next_share(share, tuple(_readings))
    if new != share:
        KSR.pv.seti(cs.SHED_SHV, new)
        if (new == 0) != (share == 0):
            KSR.notice(f"edge: load shedding {'off' if new == 0 else 'on'}: backlog {backlog} bytes\n")
    _ticks += 1
    if _ticks % GAUGE_EVERY == 0 or new != share:
        KSR.xhttp_prom.gauge_set_l0(metrics.SIP_BACKLOG.name, str(backlog))
        KSR.xhttp_prom.gauge_set_l0(metrics.SHED_RATIO.name, f"{new / FULL:g}")
