"""routing.kamailio.overload: the SIP receive backlog read on the process's own UDP listening
sockets (SO_MEMINFO) and the shed share published for route ADMISSION, against the fake KSR."""

from __future__ import annotations

import socket
import types
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from tests.unit.kamailio.fakeksr import RT, FakeKSR
from tests.helpers import wait_until


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A UDP 'SIP listener' of this process that nobody reads, as a stopped worker leaves it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def _flood(target: socket.socket, datagrams: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(datagrams):
            sender.sendto(b"INVITE sip:+14155550100@edge SIP/2.0\r\n" + b"x" * 900, target.getsockname())


def test_backlog_reads_the_bytes_queued_on_the_listeners_only(kemi: types.ModuleType, listener: socket.socket) -> None:
    from routing.kamailio.overload import Backlog

    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # not a listener of the settings
    other.bind(("127.0.0.1", 0))
    try:
        backlog = Backlog((listener.getsockname(),))
        assert backlog.measure() == 0
        _flood(listener, 10)
        _flood(other, 10)
        wait_until(lambda: backlog.measure() > 0, timeout=5, what="datagrams queued")
        queued = backlog.measure()
        # the kernel counts each ~950-byte datagram at its buffer size (2 KB or more), one socket only
        assert 10 * 950 < queued < 10 * 8192, queued
        assert len(backlog.sockets or []) == 1
    finally:
        backlog.close()
        other.close()


def _reset(overload: types.ModuleType) -> None:
    if overload._backlog is not None:
        overload._backlog.close()
    overload._backlog, overload._control, overload._ticks = None, None, 0
    overload._readings = overload.deque()


def test_a_tick_raises_the_share_on_a_backlog_held_for_a_whole_window_and_exports_it(
        kemi: types.ModuleType, ksr: FakeKSR, listener: socket.socket) -> None:
    from routing.kamailio import overload

    _reset(overload)
    router = kemi.Edge(replace(RT, shed_high_bytes=16384, shed_low_bytes=1024, shed_sockets=(listener.getsockname(),)))
    probe = overload.Backlog((listener.getsockname(),))
    _flood(listener, 20)
    try:
        wait_until(lambda: probe.measure() > 8192, timeout=5, what="backlog")
    finally:
        probe.close()
    window = overload.ShedControl(1, 0).window
    shares, backlogs = [], []
    for _ in range(window + 1):
        router.ksr_shed_tick(object(), "rtimer")
        shares.append(ksr.pv.get("$shv(edge_shed)") or 0)
        gauges = {args[0]: float(args[1]) for name, args in ksr.calls if name == "xhttp_prom.gauge_set_l0"}
        backlogs.append(gauges.get("byoc_edge_sip_backlog_bytes", -1.0))
    assert backlogs[window - 1] > 2 * 16384, backlogs  # nobody reads the listener: exported at the 5th tick
    assert backlogs[: window - 1] == [-1.0] * (window - 1)  # the gauges are set every 5th tick, not every tick
    # readings before the window is full: a burst, not yet an overload; then 10 % per whole multiple of the
    # threshold in the window's minimum, and the exported ratio follows the share
    step = 100 * int(backlogs[window - 1] // 16384)
    assert shares == [0] * (window - 1) + [step, min(1000, 2 * step)], (shares, backlogs)
    gauges = {args[0]: float(args[1]) for name, args in ksr.calls if name == "xhttp_prom.gauge_set_l0"}
    assert gauges["byoc_edge_shed_ratio"] == shares[-1] / 1000
    # drained: the share falls back by the step down per tick
    while True:
        try:
            listener.setblocking(False)
            listener.recv(65535)
        except BlockingIOError:
            break
    router.ksr_shed_tick(object(), "rtimer")
    assert ksr.pv.get("$shv(edge_shed)") == shares[-1] - 4
    _reset(overload)
