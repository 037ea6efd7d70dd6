"""Automatic load shedding: the control law that turns the edge's own backlog into the share of
new calls it refuses.  No I/O: :mod:`routing.kamailio.overload` measures the backlog ten times a
second and publishes the share that the native route ``ADMISSION`` applies.

The measure is the SIP receive backlog: bytes of datagrams waiting in the kernel queues of the
edge's UDP listening sockets (``SO_MEMINFO``'s ``rmem_alloc``, socket(7)).  It is the edge's own
load, not the machine's (Kamailio's ``ratelimit`` FEEDBACK mode reads the whole machine's CPU),
and it leads every other measure: a message waits there before any worker has read it, so a
growing backlog is the time every request (a 503 included) will wait before an answer.

The law is additive-increase, additive-decrease with hysteresis, read over a window of the
latest readings (:attr:`ShedControl.window`, 5 readings 20 ms apart: 100 ms).  The share rises only
when the backlog stayed above ``high_bytes`` at every reading of the window: a queue that never
drained in 100 ms is a standing queue, an overload; one that drained at least once was a burst or a
stall (a worker descheduled by another process on a busy machine), which the workers absorb.  This
is CoDel's test (RFC 8289 section 3.2: the minimum queue over an interval, not its peak), applied to
the bytes queued because the kernel has no datagram age to give.  It rises by ``step_up`` for each
whole multiple of ``high_bytes`` in that minimum (a backlog far above the threshold brings the
share up within a few readings: the socket's buffer, 208 KB by default, overflows within tens of ms
at twice the knee, and a datagram dropped there is answered only after the caller's retransmission
500 ms later).  Below ``low_bytes`` it falls by ``step_down`` per reading (slower, so that it does
not fall back into the backlog at once); in between it holds.  Shares are in permille (0-1000)
because Kamailio's configuration language compares integers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ShedControl", "FULL"]

#: the whole of the new calls (permille)
FULL = 1000


@dataclass(frozen=True, slots=True)
class ShedControl:
    """Thresholds and steps of the shedding law.

    Attributes:
        high_bytes: backlog (bytes queued on the SIP UDP sockets, kernel accounting, so about
            1-2 KB per datagram) above which the share of new calls refused rises; 0 = shedding off.
        low_bytes: backlog below which the share falls again (< ``high_bytes``).
        window: readings the backlog must stay above ``high_bytes`` for before the share rises
            (at the adapter's 20 ms: 100 ms).
        step_up: permille added per reading, per whole multiple of ``high_bytes`` in the window's minimum.
        step_down: permille taken off per reading while the backlog is below ``low_bytes``.
    """

    high_bytes: int
    low_bytes: int
    window: int = 5
    step_up: int = 100
    step_down: int = 4

    def __post_init__(self) -> None:
        if self.high_bytes and not 0 <= self.low_bytes < self.high_bytes:
            raise ValueError(f"low_bytes ({self.low_bytes}) must be below high_bytes ({self.high_bytes})")
        if not (0 < self.step_up <= FULL and 0 < self.step_down <= FULL):
            raise ValueError("steps are permille in 1..1000")
        if self.window < 1:
            raise ValueError("window is at least one reading")

    @property
    def enabled(self) -> bool:
        """Whether shedding on the backlog is on."""
        return self.high_bytes > 0

    def next_share(self, share: int, readings: Sequence[int]) -> int:
        """The share (permille of new calls refused, 0-1000) after the latest reading, from the current
        ``share`` and the latest backlog ``readings`` (bytes, oldest first; fewer than ``window``
        readings never raise the share)."""
        if not self.enabled or not readings:
            return 0 if not self.enabled else share
        floor = min(readings[-self.window:]) if len(readings) >= self.window else 0
        if floor > self.high_bytes:
            return min(FULL, share + self.step_up * (floor // self.high_bytes))
        if readings[-1] < self.low_bytes:
            return max(0, share - self.step_down)
        return max(0, min(FULL, share))
