"""Gateway health: the OPTIONS state machine and its redis text form."""

from __future__ import annotations

import pytest

from routing.monitor.health import DOWN, UP, GatewayHealth, observe, probe_ok
from routing.tables.model import DataError


@pytest.mark.parametrize("code,ok", [(200, True), (404, True), (405, True), (486, True), (408, False),
                                     (500, False), (503, False), (603, False), (0, False)])
def test_probe_ok(code: int, ok: bool) -> None:
    assert probe_ok(code) is ok


def run(codes: list[int], down_after: int = 3, up_after: int = 2) -> list[str]:
    h = GatewayHealth()
    states = []
    for i, code in enumerate(codes):
        h = observe(h, code, "x", 1.0 if code else None, float(i), down_after, up_after)
        states.append(h.state)
    return states


def test_down_after_n_failures_in_a_row_up_after_m_successes() -> None:
    assert run([0, 0, 200, 0, 0, 0, 200, 503, 200, 200, 200]) == [
        UP, UP, UP, UP, UP, DOWN, DOWN, DOWN, DOWN, UP, UP]


def test_thresholds_of_one_switch_at_once() -> None:
    assert run([0, 200, 503, 404], down_after=1, up_after=1) == [DOWN, UP, DOWN, UP]


def test_changed_time_moves_only_on_a_state_change() -> None:
    h = GatewayHealth()
    for t in (10.0, 11.0):
        h = observe(h, 0, "timeout", None, t, 2, 1)
    assert (h.state, h.changed, h.at, h.fails) == (DOWN, 11.0, 11.0, 2)
    h = observe(h, 0, "timeout", None, 12.0, 2, 1)
    assert h.changed == 11.0


def test_redis_text_round_trip() -> None:
    h = GatewayHealth(DOWN, 4, 0, 503, "Service; Unavailable", None, 1700000000.5, 1699999990.25)
    back = GatewayHealth.from_redis(h.to_redis())
    assert back == GatewayHealth(DOWN, 4, 0, 503, "Service, Unavailable", None, 1700000000.5, 1699999990.25)
    up = GatewayHealth(UP, 0, 3, 200, "OK", 1.25, 5.0, 0.0)
    assert GatewayHealth.from_redis(up.to_redis()) == up


def test_malformed_health_names_the_problem() -> None:
    with pytest.raises(DataError, match="state must be up or down"):
        GatewayHealth.from_redis("state=sideways")
    with pytest.raises(DataError, match="gateway health"):
        GatewayHealth.from_redis("state=up;fails=many")
