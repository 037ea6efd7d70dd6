"""A DID (``edge:did:{e164}``): the number a trunk delivers and the agent it is bound to."""

from __future__ import annotations

from dataclasses import dataclass

from routing.call.numbers import is_e164
from routing.tables import keys
from routing.tables.model.fields import DataError

__all__ = ["Did"]


@dataclass(frozen=True, slots=True)
class Did:
    """A DID (E.164) owned by a trunk and bound to an agent."""

    number: str
    trunk: str
    agent: str

    def to_redis(self) -> dict[str, str]:
        """Fields of ``edge:did:{e164}``."""
        return {"trunk": self.trunk, "agent": self.agent}

    @classmethod
    def from_redis(cls, number: str, fields: dict[str, str]) -> "Did":
        """Build a DID from ``HGETALL edge:did:{e164}``.

        Raises:
            DataError: missing trunk or agent field.
        """
        where = keys.did(number)
        if not is_e164(number):
            raise DataError(f"{where}: not an E.164 number")
        trunk, agent = fields.get("trunk", ""), fields.get("agent", "")
        if not trunk or not agent:
            raise DataError(f"{where}: needs both 'trunk' and 'agent' fields")
        return cls(number=number, trunk=trunk, agent=agent)
