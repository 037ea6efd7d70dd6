"""Automatic load shedding: the control law that turns the edge's own backlog into the share of
new calls it refuses.  No I/O: :mod:`routing.kamailio.overload` measures the backlog ten times a
second and publishes the share that the native route ``ADMISSION`` applies.

The measure is the SIP receive backlog: bytes of datagrams waiting in the kernel queues of the
edge's UDP listening sockets (``SO_MEMINFO``'s ``rmem_alloc``, socket(7)).  It is the edge's own
load, not the machine's (Kamailio's ``ratelimit`` FEEDBACK mode reads the whole machine's CPU),
and it leads every other measure: a message waits there before any worker has read it, so a
growing backlog is the time every request (a 503 included) will wait before an answer.

The law is additive-increase, additive-decrease with hysteresis.  The share rises only when the
backlog was above ``high_bytes`` at two ticks in a row (a worker stalled for a few ms under a
burst is not an overload; a real one keeps the backlog up), by ``step_up`` for each whole
multiple of ``high_bytes`` queued (a backlog far above the threshold brings the share up at once:
the socket's buffer, 208 KB by default, overflows within tens of ms at twice the knee, and a
datagram dropped there is answered only after the caller's retransmission 500 ms later).  Below
``low_bytes`` it falls by ``step_down`` per tick (slower, so that it does not fall back into the
backlog at once); in between it holds.  Shares are in permille (0-1000) because Kamailio's
configuration language compares integers.
"""

from __future__ import annotations

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
        step_up: permille added per tick while the backlog is above ``high_bytes``.
        step_down: permille taken off per tick while it is below ``low_bytes``.
    """

    high_bytes: int
    low_bytes: int
    step_up: int = 200
    step_down: int = 20

    def __post_init__(self) -> None:
        if self.high_bytes and not 0 <= self.low_bytes < self.high_bytes:
            raise ValueError(f"low_bytes ({self.low_bytes}) must be below high_bytes ({self.high_bytes})")
        if not (0 < self.step_up <= FULL and 0 < self.step_down <= FULL):
            raise ValueError("steps are permille in 1..1000")

    @property
    def enabled(self) -> bool:
        """Whether shedding on the backlog is on."""
        return self.high_bytes > 0

    def next_share(self, share: int, backlog: int, previous: int) -> int:
        """The share (permille of new calls refused, 0-1000) for the next tick, from the current
        ``share``, the ``backlog`` measured now and the one measured at the tick before (bytes)."""
        if not self.enabled:
            return 0
        if backlog > self.high_bytes and previous > self.high_bytes:
            return min(FULL, share + self.step_up * (backlog // self.high_bytes))
        if backlog < self.low_bytes:
            return max(0, share - self.step_down)
        return max(0, min(FULL, share))
