"""An outbound route entry (``edge:route:{prefix}``): one trunk offered for a destination prefix."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from routing.tables import keys
from routing.tables.model.fields import _bool, _int, format_params, parse_params, parse_rate

__all__ = ["RouteEntry"]


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One trunk offered for an outbound destination prefix (least-cost routing).

    Attributes:
        prefix: E.164 prefix with ``+`` (``"+1415"``; ``"+"`` matches everything).
        trunk: trunk name.
        rate: cost per minute, in the operator's currency (a Decimal, never a float).
        priority: tie-breaker among equal rates; lower is tried first.
        shared: agents of every account may use this entry, not only those of its trunk's
            account (docs/identity.md#accounts); written ``shared=yes`` only when set.
    """

    prefix: str
    trunk: str
    rate: Decimal
    priority: int = 10
    shared: bool = False

    def to_redis(self) -> tuple[str, str]:
        """The (field, value) pair stored in ``edge:route:{prefix}``."""
        params: dict[str, object] = {"rate": self.rate, "priority": self.priority}
        if self.shared:
            params["shared"] = "yes"
        return self.trunk, format_params(params)

    @classmethod
    def from_redis(cls, prefix: str, trunk: str, value: str) -> "RouteEntry":
        """Parse one field of ``edge:route:{prefix}``.

        Raises:
            DataError: missing or negative rate, non-integer priority, ``shared`` not yes/no.
        """
        where = f"{keys.route(prefix)} {trunk}"
        params = parse_params(value, where)
        rate = parse_rate(params.get("rate", ""), f"{where} rate")
        priority = _int(params.get("priority"), f"{where} priority", default=10)
        assert priority is not None
        shared = _bool(params.get("shared"), f"{where} shared", default=False)
        return cls(prefix=prefix, trunk=trunk, rate=rate, priority=priority, shared=shared)
