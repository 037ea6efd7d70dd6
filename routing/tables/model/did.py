"""A DID (``edge:did:{e164}``): the number a trunk delivers, the agent it is bound to, and what
to try when every URI of that agent has failed (its fallback steps)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from routing.call.numbers import is_e164
from routing.tables import keys
from routing.tables.model.fields import NAME_PATTERN, DataError, parse_sip_uri

__all__ = ["Did", "FallbackKind", "FallbackStep", "parse_fallback", "ANNOUNCEMENT_PATTERN"]

#: an announcement's name: the file ``{media.announcements_dir}/{name}.wav``, so no path separator
ANNOUNCEMENT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class FallbackKind(str, Enum):
    """What a fallback step reaches: another ``agent`` (its URIs, under its own limits), a ``uri``
    (a PBX queue, a voicemail: a SIP URI on a host the DID's agent may transfer to), a
    ``number`` (E.164, through least-cost routing, with ``Diversion`` naming the DID), or an
    ``announce``ment (a WAV file rtpengine plays to the caller as early media before the final
    refusal; always the last step)."""

    AGENT = "agent"
    URI = "uri"
    NUMBER = "number"
    ANNOUNCE = "announce"


@dataclass(frozen=True, slots=True)
class FallbackStep:
    """One fallback step: its kind and value (an agent name or a SIP URI)."""

    kind: FallbackKind
    value: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.value}"


def parse_fallback(text: str, where: str) -> tuple[FallbackStep, ...]:
    """Parse ``"agent:humans,uri:sip:queue@pbx.example.com,announce:closed"`` (steps in order,
    comma-separated).

    Raises:
        DataError: an unknown kind, a bad agent name, a value that is no SIP URI or E.164
            number, a bad announcement name, or an announcement that is not the last step.
    """
    steps = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        kind, sep, value = part.partition(":")
        try:
            step_kind = FallbackKind(kind.strip().lower())
        except ValueError:
            raise DataError(f"{where}: {part!r} is not agent:NAME, uri:SIP_URI, number:+E164 or announce:NAME") from None
        value = value.strip()
        if not sep or not value:
            raise DataError(f"{where}: {part!r} names nothing")
        if step_kind is FallbackKind.AGENT and not NAME_PATTERN.fullmatch(value):
            raise DataError(f"{where}: {value!r} is not an agent name")
        if step_kind is FallbackKind.URI:
            value = parse_sip_uri(value, where)
        if step_kind is FallbackKind.NUMBER and not is_e164(value):
            raise DataError(f"{where}: {value!r} is not an E.164 number")
        if step_kind is FallbackKind.ANNOUNCE and not ANNOUNCEMENT_PATTERN.fullmatch(value):
            raise DataError(f"{where}: {value!r} is not an announcement name (letters, digits, '_.-'; "
                            "the file {name}.wav in media.announcements_dir)")
        if steps and steps[-1].kind is FallbackKind.ANNOUNCE:
            raise DataError(f"{where}: announce:{steps[-1].value} must be the last step (the call ends after it)")
        steps.append(FallbackStep(step_kind, value))
    return tuple(steps)


@dataclass(frozen=True, slots=True)
class Did:
    """A DID (E.164) owned by a trunk and bound to an agent.

    Attributes:
        number, trunk, agent: the DID, its trunk, the agent that answers it.
        fallback: tried in order when every URI of the agent has failed (docs/agents.md).
    """

    number: str
    trunk: str
    agent: str
    fallback: tuple[FallbackStep, ...] = ()

    @property
    def announcement(self) -> str:
        """The name of the announcement ending the fallback steps, or empty."""
        last = self.fallback[-1] if self.fallback else None
        return last.value if last is not None and last.kind is FallbackKind.ANNOUNCE else ""

    def to_redis(self) -> dict[str, str]:
        """Fields of ``edge:did:{e164}`` (``fallback`` only when there is one)."""
        fields = {"trunk": self.trunk, "agent": self.agent}
        if self.fallback:
            fields["fallback"] = ",".join(str(s) for s in self.fallback)
        return fields

    @classmethod
    def from_redis(cls, number: str, fields: dict[str, str]) -> "Did":
        """Build a DID from ``HGETALL edge:did:{e164}``.

        Raises:
            DataError: missing trunk or agent field, a malformed fallback.
        """
        where = keys.did(number)
        if not is_e164(number):
            raise DataError(f"{where}: not an E.164 number")
        trunk, agent = fields.get("trunk", ""), fields.get("agent", "")
        if not trunk or not agent:
            raise DataError(f"{where}: needs both 'trunk' and 'agent' fields")
        return cls(number=number, trunk=trunk, agent=agent,
                   fallback=parse_fallback(fields.get("fallback", ""), f"{where} fallback"))
