"""routing.call.presentation and the trunk's CallerIdShape: what the carrier receives as the caller."""

from __future__ import annotations

import pytest

from routing.call.numbers import NumberFormat
from routing.call.presentation import plan_presentation, render, written
from routing.tables.model import CallerIdFormat, CallerIdShape, DataError

NANP = NumberFormat("1", "", "011", 10)
UK = NumberFormat("44", "0", "00", 0)


@pytest.mark.parametrize(("fmt", "trunk", "number", "expected"), [
    (CallerIdFormat.E164, NANP, "+14155550123", "+14155550123"),
    (CallerIdFormat.E164_NOPLUS, NANP, "+14155550123", "14155550123"),
    (CallerIdFormat.NATIONAL, NANP, "+14155550123", "4155550123"),
    (CallerIdFormat.NATIONAL, UK, "+442071838750", "02071838750"),
    (CallerIdFormat.NATIONAL, UK, "+14155550123", "0014155550123"),  # another country: international prefix
    (CallerIdFormat.NATIONAL, NumberFormat(), "+14155550123", "14155550123"),  # no country code known
])
def test_the_number_is_written_as_the_trunk_wants(fmt, trunk, number, expected) -> None:
    assert written(number, fmt, trunk) == expected


def test_a_trunk_that_shapes_nothing_has_no_presentation() -> None:
    assert plan_presentation("+14155550123", CallerIdShape(), NANP, "") is None


def test_pai_with_user_phone_and_the_number_as_display() -> None:
    shape = CallerIdShape.build("pai", "e164-noplus", user_phone=True, display="number")
    shown = render(plan_presentation("+14155550123", shape, NANP, ""), "edge.example", privacy=False)
    assert shown.display == '"14155550123"' and shown.from_uri == "sip:14155550123@edge.example;user=phone"
    assert shown.headers == ("P-Asserted-Identity: <sip:14155550123@edge.example;user=phone>",)


def test_the_auth_user_goes_in_the_from_and_the_number_in_ppi_on_the_trunks_host() -> None:
    shape = CallerIdShape.build("ppi", from_user="auth", from_host="sip.carrier.example", display="none")
    shown = render(plan_presentation("+14155550123", shape, NANP, "acct-1"), "edge.example", privacy=False)
    assert shown.display == "" and shown.from_uri == "sip:acct-1@sip.carrier.example"
    assert shown.headers == ("P-Preferred-Identity: <sip:+14155550123@sip.carrier.example>",)


def test_privacy_makes_the_from_anonymous_and_keeps_the_number_for_the_carrier() -> None:
    shown = render(plan_presentation("+14155550123", CallerIdShape.build("rpid"), NANP, ""), "h", privacy=True)
    assert (shown.display, shown.from_uri) == ('"Anonymous"', "sip:anonymous@anonymous.invalid")
    assert shown.headers == ("Remote-Party-ID: <sip:+14155550123@h>;party=calling;screen=yes;privacy=full",)
    plain = render(plan_presentation("+14155550123", CallerIdShape.build(user_phone=True), NANP, ""), "h", True)
    assert plain.headers == ("P-Asserted-Identity: <sip:+14155550123@h;user=phone>",)


def test_a_privacy_only_presentation_changes_nothing_without_a_privacy_request() -> None:
    shown = {**plan_presentation("+14155550123", CallerIdShape.build("pai"), NANP, ""), "privacy_only": True}
    assert render(shown, "h", privacy=False) is None
    assert render(shown, "h", privacy=True).from_uri == "sip:anonymous@anonymous.invalid"


@pytest.mark.parametrize(("fields", "message"), [
    ({"caller_id_header": "x-caller"}, "caller_id_header"),
    ({"caller_id_format": "e.164"}, "caller_id_format"),
    ({"from_user": "agent"}, "from_user"),
    ({"from_host": "bad host!"}, "from_host"),
    ({"user_phone": "maybe"}, "user_phone"),
    ({"caller_display": "shout"}, "caller_display"),
])
def test_a_bad_shaping_field_is_named(fields: dict, message: str) -> None:
    with pytest.raises(DataError, match=f"edge:trunk:t {message}"):
        CallerIdShape.from_redis(fields, "edge:trunk:t")


def test_the_shaping_round_trips_through_redis_fields() -> None:
    shape = CallerIdShape.build("rpid", "national", "auth", "sip.carrier.example", True, "none")
    assert CallerIdShape.from_redis(shape.to_redis(), "t") == shape
    assert CallerIdShape.from_redis({}, "t").is_default
