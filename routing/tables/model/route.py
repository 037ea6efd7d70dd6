"""An outbound route entry (``edge:route:{prefix}``): one trunk offered for a destination prefix."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from routing.tables import keys
from routing.tables.model.fields import _int, format_params, parse_params, parse_rate

__all__ = ["RouteEntry"]


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One trunk offered for an outbound destination prefix (least-cost routing).

    Attributes:
        prefix: E.164 prefix with ``+`` (``"+1415"``; ``"+"`` matches everything).
        trunk: trunk name.
        rate: cost per minute, in the operator's currency (a Decimal, never a float).
        priority: tie-breaker among equal rates; lower is tried first.
    """

    prefix: str
    trunk: str
    rate: Decimal
    priority: int = 10

    def to_redis(self) -> tuple[str, str]:
        """The (field, value) pair stored in ``edge:route:{prefix}``."""
        return self.trunk, format_params({"rate": self.rate, "priority": self.priority})

    @classmethod
    def from_redis(cls, prefix: str, trunk: str, value: str) -> "RouteEntry":
        """Parse one field of ``edge:route:{prefix}``.

        Raises:
            DataError: missing or negative rate, non-integer priority.
        """
        where = f"{keys.route(prefix)} {trunk}"
        params = parse_params(value, where)
        rate = parse_rate(params.get("rate", ""), f"{where} rate")
        priority = _int(params.get("priority"), f"{where} priority", default=10)
        assert priority is not None
        return cls(prefix=prefix, trunk=trunk, rate=rate, priority=priority)
