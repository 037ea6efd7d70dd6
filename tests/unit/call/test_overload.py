"""The shedding law of routing/call/overload.py: share of new calls refused from the SIP backlog."""

from __future__ import annotations

import pytest

from routing.call.overload import FULL, ShedControl

LAW = ShedControl(high_bytes=64 * 1024, low_bytes=16 * 1024)


def test_share_rises_by_step_up_while_the_backlog_stays_above_high_for_the_window() -> None:
    shares, readings = [0], []
    for _ in range(16):
        readings.append(100 * 1024)
        shares.append(LAW.next_share(shares[-1], readings))
    assert shares[:8] == [0, 0, 0, 0, 0, 100, 200, 300]  # five readings (100 ms at 20 ms) before the first step
    assert shares[-1] == FULL  # capped at every new call


def test_a_window_with_one_drained_reading_is_a_burst_not_an_overload() -> None:
    high = 100 * 1024
    assert LAW.next_share(0, [high, high, high, high, 0]) == 0
    assert LAW.next_share(0, [high, 8 * 1024, high, high, high]) == 0
    assert LAW.next_share(0, [0, high, high, high, high, high]) == 100  # only the last five count
    assert LAW.next_share(0, [high] * 4) == 0  # not yet a whole window


def test_the_rise_grows_with_each_multiple_of_high_in_the_windows_minimum() -> None:
    k = 1024
    assert LAW.next_share(0, [200 * k] * 5) == 300  # three multiples of 64 KB: three steps
    assert LAW.next_share(0, [640 * k, 640 * k, 130 * k, 640 * k, 640 * k]) == 200  # the minimum decides
    assert LAW.next_share(900, [640 * k] * 5) == FULL


def test_share_holds_between_the_thresholds_and_falls_slowly_below_low() -> None:
    assert LAW.next_share(500, [32 * 1024] * 5) == 500
    assert LAW.next_share(500, [100 * 1024] * 4 + [1024]) == 496
    assert LAW.next_share(3, [0]) == 0
    assert LAW.next_share(300, []) == 300


def test_a_steady_overload_settles_near_the_excess_and_recovers() -> None:
    """A queue fed at twice what the workers drain, minus what is shed, in 20 ms ticks: the share
    settles near one half while the overload lasts, the backlog stays within a few ticks of excess
    above the threshold, and both are back to zero within 5 s of the overload's end."""
    capacity, per_call, tick_s = 400, 1500, 0.02  # calls/s drained, bytes queued per call
    share, backlog, peak, during, readings = 0, 0.0, 0.0, [], []
    for tick in range(2000):
        offered = 800 if tick < 1500 else 200
        admitted = offered * (1 - share / FULL)
        backlog = max(0.0, backlog + (admitted - capacity) * per_call * tick_s)
        readings = (readings + [int(backlog)])[-LAW.window:]
        share = LAW.next_share(share, readings)
        peak = max(peak, backlog)
        if 500 <= tick < 1500:
            during.append(share)
        if tick == 1750:
            assert (share, backlog) == (0, 0.0)
    assert 450 <= sum(during) / len(during) <= 650
    assert peak < LAW.high_bytes + 2 * LAW.window * (800 - capacity) * tick_s * per_call


def test_a_scheduling_stall_every_few_readings_never_sheds() -> None:
    """A loaded 2-core machine: the workers lose the CPU for 40 ms every 100 ms (the backlog jumps
    above the threshold and drains within the next readings): nothing is shed."""
    share, readings = 0, []
    for tick in range(500):
        backlog = 150 * 1024 if tick % 5 in (0, 1) else 4 * 1024
        readings = (readings + [backlog])[-LAW.window:]
        share = LAW.next_share(share, readings)
        assert share == 0


def test_off_and_bad_thresholds() -> None:
    assert ShedControl(0, 0).next_share(700, [10**9] * 5) == 0
    with pytest.raises(ValueError, match="below high_bytes"):
        ShedControl(high_bytes=1000, low_bytes=1000)
    with pytest.raises(ValueError, match="window"):
        ShedControl(high_bytes=1000, low_bytes=10, window=0)
