"""What a call asks of the admission script (:class:`Lease`, one concurrency slot and CPS bucket)
and what it answers (:class:`Admission`): the types :meth:`routing.tables.store.RedisStore.acquire`
takes and returns (``routing/tables/lua/lease.lua``).  Re-exported by :mod:`routing.tables.store`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Lease", "Admission"]


@dataclass(frozen=True, slots=True)
class Lease:
    """One concurrency slot a call asks for.

    Attributes:
        key: the lease ZSET (``keys.trunk_lease`` or ``keys.agent_lease``).
        limit: maximum concurrent calls; None = unlimited (still counted).
        label: what the limit is, for the reason phrase (``"trunk telnyx"``).
        cps: new calls per second allowed (token bucket); None = unlimited.
        bucket: HASH key of the token bucket when ``cps`` is set.
    """

    key: str
    limit: int | None
    label: str
    cps: float | None = None
    bucket: str | None = None


@dataclass(frozen=True, slots=True)
class Admission:
    """Result of a lease request.

    Attributes:
        admitted: True when every lease was granted.
        full: the lease that refused the call.
        count: calls already holding that lease (calls); -1 when its CPS bucket was empty.
        wait_ms: until the bucket holds a token again (ms), when CPS refused the call.
    """

    admitted: bool
    full: Lease | None = None
    count: int = 0
    wait_ms: int = 0

    @property
    def paced(self) -> bool:
        """True when the refusal came from CPS pacing, not from the concurrency limit."""
        return self.count < 0

    @property
    def tag(self) -> str:
        """Reason code for logs and metrics: ``trunk_limit``, ``trunk_cps``, ``agent_limit``."""
        assert self.full is not None
        return f"{self.full.label.partition(' ')[0]}_{'cps' if self.paced else 'limit'}"

    def retry_after_s(self, default_s: int) -> int:
        """Retry-After (s): until the next CPS token when paced, else ``default_s``."""
        return max(1, -(-self.wait_ms // 1000)) if self.paced else default_s

    @property
    def reason(self) -> str:
        """Reason phrase of the 503: ``"Trunk Limit Reached: x"`` or ``"Trunk CPS Limit Reached: x"``."""
        assert self.full is not None
        kind, _, name = self.full.label.partition(" ")
        what = "CPS Limit" if self.paced else "Limit"
        return f"{kind.capitalize()} {what} Reached: {name}"
