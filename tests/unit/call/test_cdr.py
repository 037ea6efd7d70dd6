"""Call records as pure functions: billing increments, cost, codecs from SDP, the record, totals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.tables.calls import call_view
from routing.call.cdr import (
    FIELDS,
    CallFacts,
    billable_seconds,
    build_record,
    call_cost,
    cost_micros,
    media_fields,
    parse_tried,
    sdp_codecs,
    totals,
    utc_day,
)
from routing.tables.model import DataError, Trunk, format_increment, parse_increment

increments = st.tuples(st.integers(0, 120), st.integers(1, 120))


@pytest.mark.parametrize(
    ("talk_ms", "increment", "billable"),
    [
        (0, (60, 60), 0),
        (-5, (1, 1), 0),
        (1, (60, 60), 60),
        (60_000, (60, 60), 60),
        (60_001, (60, 60), 120),
        (1_200, (1, 1), 2),
        (1_000, (1, 1), 1),
        (31_000, (30, 6), 36),
        (29_000, (30, 6), 30),
        (500, (0, 6), 6),
    ],
)
def test_billable_seconds_examples(talk_ms: int, increment: tuple[int, int], billable: int) -> None:
    assert billable_seconds(talk_ms, increment) == billable


@given(st.integers(1, 10_000_000), increments)
def test_billable_covers_talk_time_by_less_than_one_block(talk_ms: int, increment: tuple[int, int]) -> None:
    first, nxt = increment
    billable = billable_seconds(talk_ms, increment)
    assert billable * 1000 >= talk_ms
    assert billable >= first
    if billable > first:
        assert (billable - first) % nxt == 0
        assert billable * 1000 - talk_ms < nxt * 1000


@given(st.integers(0, 5_000_000), st.integers(0, 5_000_000), increments)
def test_billable_is_monotonic(a: int, b: int, increment: tuple[int, int]) -> None:
    low, high = sorted((a, b))
    assert billable_seconds(low, increment) <= billable_seconds(high, increment)


@given(st.decimals(min_value=0, max_value=100, places=5), st.integers(0, 100_000))
def test_cost_is_rate_per_minute_times_billable_rounded_to_micro_units(rate: Decimal, billable: int) -> None:
    cost = call_cost(rate, billable)
    assert cost.as_tuple().exponent == -6
    assert abs(cost - rate * billable / 60) <= Decimal("0.0000005")
    assert cost_micros(cost) == int(cost * 1_000_000)


def test_cost_examples() -> None:
    assert call_cost(Decimal("0.0200"), 60) == Decimal("0.020000")
    assert call_cost(Decimal("0.0045"), 61) == Decimal("0.004575")
    assert call_cost(Decimal("0.01"), 1) == Decimal("0.000167")  # 0.0001666.. rounds half up


def test_billable_rejects_a_bad_increment() -> None:
    with pytest.raises(ValueError):
        billable_seconds(1000, (1, 0))


def test_increment_text_round_trip_and_errors() -> None:
    assert parse_increment("60/60") == (60, 60)
    assert parse_increment("") == (1, 1)
    assert format_increment((30, 6)) == "30/6"
    for bad in ("60", "60/0", "a/b", "1/1/1", "9999/1"):
        with pytest.raises(DataError, match="billing_increment"):
            parse_increment(bad)
    with pytest.raises(DataError, match="edge:trunk:t billing_increment"):
        Trunk.from_redis("t", {"billing_increment": "60/"}, [], {})
    with pytest.raises(DataError, match="edge:trunk:t daily_spend_cap"):
        Trunk.from_redis("t", {"daily_spend_cap": "-1"}, [], {})


def test_sdp_codecs_in_offer_order_with_static_types() -> None:
    sdp = "v=0\r\nm=audio 4000 RTP/AVP 8 0 18 101\r\na=rtpmap:101 telephone-event/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    assert sdp_codecs(sdp) == ["PCMA/8000", "PCMU/8000", "G729/8000", "telephone-event/8000"]
    assert sdp_codecs("m=audio 4000 RTP/SAVP 111 96\na=rtpmap:111 opus/48000/2\n") == ["opus/48000", "96"]
    assert sdp_codecs("") == [] and sdp_codecs("m=video 5000 RTP/AVP 96\n") == []


def test_tried_strings_become_gateways_in_order() -> None:
    assert parse_tried(["carrier-a 192.0.2.1:5060=503", "carrier-b [2001:db8::1]:5060=timeout"]) == [
        {"gateway": "carrier-a 192.0.2.1:5060", "result": "503"},
        {"gateway": "carrier-b [2001:db8::1]:5060", "result": "timeout"},
    ]


def facts(**extra: object) -> CallFacts:
    values: dict = dict(node="n1", call_id="c1", cseq="1", start_ms=1_000_000, end_ms=1_065_500, sip_code=200,
                        sip_reason="OK")
    values.update(extra)
    return CallFacts(**values)


def test_answered_record_bills_from_the_answer() -> None:
    rec = build_record(facts(answer_ms=1_004_000, direction="termination", trunk="b", rate=Decimal("0.02"),
                             increment=(60, 60), tried=["b 192.0.2.2:5060=200"], hangup="callee"))
    assert list(rec) == list(FIELDS)
    assert rec["id"] == "n1:c1:1" and rec["status"] == "answered"
    assert (rec["duration_ms"], rec["talk_ms"], rec["billable_s"], rec["cost"]) == (65_500, 61_500, 120, "0.040000")
    assert rec["hangup"] == "callee"


def test_unanswered_records_bill_nothing_and_say_why() -> None:
    rejected = build_record(facts(sip_code=403, sip_reason="Source Not Allowed", reject_tag="acl_source", hangup="x"))
    assert (rejected["status"], rejected["billable_s"], rejected["cost"], rejected["hangup"]) == ("rejected", 0, "0.000000", "")
    failed = build_record(facts(sip_code=503, sip_reason="All Carriers Failed", reject_tag="carriers_failed",
                                tried=["a 192.0.2.1:5060=timeout"]))
    assert failed["status"] == "failed"
    assert build_record(facts(sip_code=487, sip_reason="Request Terminated", cancelled=True))["status"] == "cancelled"


@given(st.integers(0, 10**13), st.integers(-10**6, 10**7), st.integers(-10**6, 10**7))
def test_record_times_are_ordered_whatever_the_clocks_said(start: int, answer_off: int, end_off: int) -> None:
    rec = build_record(facts(start_ms=start, answer_ms=start + answer_off, end_ms=start + end_off))
    assert rec["start_ms"] <= rec["answer_ms"] <= rec["end_ms"]
    assert rec["talk_ms"] >= 0 and rec["duration_ms"] >= 0


def test_media_fields_keep_what_media_work_wrote() -> None:
    fields = {"lease:edge:lease:trunk:a": "3", "trunk": "a", "answer_ms": "1", "mos": "4.3", "loss_pct": "0.1"}
    assert media_fields(fields) == {"mos": "4.3", "loss_pct": "0.1"}


def test_totals_per_trunk() -> None:
    rows = totals([
        {"trunk": "b", "status": "answered", "billable_s": 60, "talk_ms": 30_000, "cost": "0.020000"},
        {"trunk": "b", "status": "answered", "billable_s": 120, "talk_ms": 90_000, "cost": "0.040000"},
        {"trunk": "a", "status": "failed", "billable_s": 0, "talk_ms": 0, "cost": "0.000000"},
        {"trunk": "", "status": "rejected"},
    ])
    assert rows == [
        {"trunk": "", "calls": 1, "answered": 0, "billable_minutes": "0.00", "talk_minutes": "0.00", "cost": "0.000000"},
        {"trunk": "a", "calls": 1, "answered": 0, "billable_minutes": "0.00", "talk_minutes": "0.00", "cost": "0.000000"},
        {"trunk": "b", "calls": 2, "answered": 2, "billable_minutes": "3.00", "talk_minutes": "2.00", "cost": "0.060000"},
    ]


def test_utc_day() -> None:
    assert utc_day(0) == "19700101"
    assert utc_day(86_400_000 - 1) == "19700101"


def test_live_view_of_a_call() -> None:
    ringing = call_view({"start_ms": "1000"}, 4_500)
    assert ringing == {"state": "ringing", "age_s": 3, "duration_s": 0, "codecs": ""}
    answered = call_view({"start_ms": "1000", "answer_ms": "2000", "codecs_caller": "PCMU/8000",
                          "codecs_callee": "PCMU/8000"}, 12_999)
    assert answered == {"state": "answered", "age_s": 11, "duration_s": 10, "codecs": "PCMU/8000 / PCMU/8000"}
    assert call_view({}, 5)["age_s"] is None
