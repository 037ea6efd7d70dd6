"""Gateway health as a small state machine over SIP OPTIONS probe results (pure, no I/O).

A gateway starts **up** (an unprobed gateway is never skipped).  ``down_after``
failed probes in a row mark it down; once down, ``up_after`` successful probes
in a row mark it up again.  One success resets the failure run and one failure
resets the success run, so a flapping gateway does not change state on every
probe (the hysteresis of Kamailio's dispatcher ``ds_probing_threshold`` /
``ds_inactive_threshold``).

A probe **succeeds** when the gateway sends any final response except 408 or a
5xx: a 404 or 405 to OPTIONS still proves the gateway is alive (RFC 3261
section 11.2 lets a server answer OPTIONS as it would an INVITE), while a 503
says it is overloaded or out of service (section 21.5.4).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from routing.tables.model import DataError, parse_params

__all__ = ["GatewayHealth", "UP", "DOWN", "probe_ok", "observe"]

UP = "up"
DOWN = "down"


def probe_ok(code: int) -> bool:
    """True when a final response ``code`` (0 = no answer) shows the gateway can take calls."""
    return 200 <= code < 500 and code != 408


@dataclass(frozen=True, slots=True)
class GatewayHealth:
    """Health of one gateway of one trunk, as stored in ``edge:health:trunk:{name}``.

    Attributes:
        state: ``up`` or ``down``.
        fails: failed probes in a row (0 after a success).
        oks: successful probes in a row (0 after a failure).
        code: status code of the last probe (0 = no answer).
        reason: reason phrase of the last answer, or why none came (``timeout``).
        rtt_ms: round-trip time of the last answered probe (ms), None when unanswered.
        at: when the last probe ended (epoch s).
        changed: when ``state`` last changed (epoch s), 0 when never.
    """

    state: str = UP
    fails: int = 0
    oks: int = 0
    code: int = 0
    reason: str = ""
    rtt_ms: float | None = None
    at: float = 0.0
    changed: float = 0.0

    @property
    def up(self) -> bool:
        """True unless the gateway is marked down."""
        return self.state != DOWN

    def to_redis(self) -> str:
        """The hash value: ``state=up;fails=0;oks=3;code=200;rtt_ms=1.25;at=...;changed=...;reason=OK``
        (reason last: it may hold any text but ``;``)."""
        rtt = "" if self.rtt_ms is None else f"{self.rtt_ms:.3f}"
        reason = self.reason.replace(";", ",").replace("=", " ")
        return (f"state={self.state};fails={self.fails};oks={self.oks};code={self.code};rtt_ms={rtt};"
                f"at={self.at:.3f};changed={self.changed:.3f};reason={reason}")

    @classmethod
    def from_redis(cls, text: str, where: str = "gateway health") -> "GatewayHealth":
        """Parse :meth:`to_redis` output.

        Raises:
            DataError: unknown state or a non-numeric field.
        """
        params = parse_params(text, where)
        state = params.get("state", UP)
        if state not in (UP, DOWN):
            raise DataError(f"{where}: state must be up or down, got {state!r}")
        try:
            return cls(
                state=state,
                fails=int(params.get("fails") or 0),
                oks=int(params.get("oks") or 0),
                code=int(params.get("code") or 0),
                reason=params.get("reason", ""),
                rtt_ms=float(params["rtt_ms"]) if params.get("rtt_ms") else None,
                at=float(params.get("at") or 0),
                changed=float(params.get("changed") or 0),
            )
        except ValueError as exc:
            raise DataError(f"{where}: {exc}") from None


def observe(previous: GatewayHealth, code: int, reason: str, rtt_ms: float | None, now: float,
            down_after: int, up_after: int) -> GatewayHealth:
    """The health after one probe.

    Args:
        previous: health before the probe (``GatewayHealth()`` for a new gateway).
        code: final status code of the probe, 0 when none came.
        reason: its reason phrase, or why no answer came.
        rtt_ms: round-trip time (ms) when answered.
        now: when the probe ended (epoch s).
        down_after: failures in a row that mark an up gateway down (>= 1).
        up_after: successes in a row that mark a down gateway up (>= 1).
    """
    ok = probe_ok(code)
    fails = 0 if ok else previous.fails + 1
    oks = previous.oks + 1 if ok else 0
    state = previous.state
    if state == UP and fails >= down_after:
        state = DOWN
    elif state == DOWN and oks >= up_after:
        state = UP
    changed = now if state != previous.state else previous.changed
    return replace(previous, state=state, fails=fails, oks=oks, code=code, reason=reason, rtt_ms=rtt_ms,
                   at=now, changed=changed)
