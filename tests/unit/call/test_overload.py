"""The shedding law of routing/call/overload.py: share of new calls refused from the SIP backlog."""

from __future__ import annotations

import pytest

from routing.call.overload import FULL, ShedControl

LAW = ShedControl(high_bytes=64 * 1024, low_bytes=16 * 1024)


def test_share_rises_by_step_up_while_the_backlog_is_above_high() -> None:
    shares = [0]
    for _ in range(12):
        shares.append(LAW.next_share(shares[-1], 100 * 1024, 100 * 1024))
    assert shares[:4] == [0, 200, 400, 600]
    assert shares[-1] == FULL  # capped at every new call


def test_one_reading_above_high_is_a_stall_not_an_overload() -> None:
    assert LAW.next_share(0, 100 * 1024, 0) == 0
    assert LAW.next_share(0, 100 * 1024, 70 * 1024) == 200


def test_the_rise_grows_with_each_multiple_of_high_queued() -> None:
    assert LAW.next_share(0, 200 * 1024, 200 * 1024) == 600  # three multiples of 64 KB: three steps
    assert LAW.next_share(900, 640 * 1024, 640 * 1024) == FULL


def test_share_holds_between_the_thresholds_and_falls_slowly_below_low() -> None:
    assert LAW.next_share(500, 32 * 1024, 32 * 1024) == 500
    assert LAW.next_share(500, 1024, 1024) == 480
    assert LAW.next_share(10, 0, 0) == 0


def test_a_steady_overload_settles_near_the_excess_and_recovers() -> None:
    """A queue fed at twice what the workers drain, minus what is shed, in 100 ms ticks: the share
    settles near one half while the overload lasts, the backlog stays within a few ticks of excess
    above the threshold, and both are back to zero within 5 s of the overload's end."""
    capacity, per_call = 400, 1500  # calls/s drained, bytes queued per call
    share, backlog, peak, during = 0, 0.0, 0.0, []
    for tick in range(400):
        offered = 800 if tick < 300 else 200
        admitted = offered * (1 - share / FULL)
        previous, backlog = backlog, max(0.0, backlog + (admitted - capacity) * per_call / 10)
        share = LAW.next_share(share, int(backlog), int(previous))
        peak = max(peak, backlog)
        if 100 <= tick < 300:
            during.append(share)
        if tick == 350:
            assert (share, backlog) == (0, 0.0)
    assert 450 <= sum(during) / len(during) <= 650
    assert peak < LAW.high_bytes + 4 * (800 - capacity) / 10 * per_call


def test_off_and_bad_thresholds() -> None:
    assert ShedControl(0, 0).next_share(700, 10**9, 10**9) == 0
    with pytest.raises(ValueError, match="below high_bytes"):
        ShedControl(high_bytes=1000, low_bytes=1000)
