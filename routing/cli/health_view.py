"""How ``edgectl trunk show`` and ``edgectl agent show`` print a gateway's or an agent URI's health
(:class:`routing.monitor.health.GatewayHealth`)."""

from __future__ import annotations

import time

from routing.monitor.health import GatewayHealth

__all__ = ["health_dict", "health_text"]


def health_dict(h: GatewayHealth) -> dict[str, object]:
    """JSON shape: state, fails, oks, code, reason, rtt_ms, checked_at, changed_at (epoch s, null = never)."""
    return {"state": h.state, "fails": h.fails, "oks": h.oks, "code": h.code, "reason": h.reason,
            "rtt_ms": h.rtt_ms, "checked_at": h.at, "changed_at": h.changed or None}


def health_text(h: GatewayHealth | None) -> str:
    """One line: the state, the last OPTIONS answer and how long ago, the runs of failures/successes."""
    if h is None:
        return "unknown (not probed yet: routed as up)"
    last = f"{h.code} {h.reason}" if h.code else h.reason
    rtt = f", {h.rtt_ms:.1f} ms" if h.rtt_ms is not None else ""
    ago = max(0.0, time.time() - h.at)
    return f"{h.state} (last OPTIONS: {last}{rtt}, {ago:.0f} s ago; {h.fails} failed / {h.oks} ok in a row)"
