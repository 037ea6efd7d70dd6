"""routing.call.numbers.to_e164 and from_uri_user: every accepted form, every rejection, and their invariants."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.call.numbers import E164_PATTERN, NumberError, NumberFormat, from_uri_user, is_e164, to_e164

UK = NumberFormat(country_code="44", national_prefix="0", international_prefix="00")
NANP = NumberFormat(country_code="1", national_prefix="", international_prefix="011", national_length=10)
#: A peer with a country code but no national prefix and no fixed national length.
NO_PREFIX_NO_LENGTH = NumberFormat(country_code="44", national_prefix="", international_prefix="00")


# -- accepted forms ---------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "+14155550100",
        "+1 (415) 555-0100",
        "+1.415.555.0100",
        "+1-415-555-0100",
        " +1 415 555 0100 ",
        "+1\t415\t5550100",
    ],
)
def test_plus_e164_with_visual_separators(raw: str) -> None:
    assert to_e164(raw) == "+14155550100"


def test_plus_form_ignores_the_peer_format() -> None:
    assert to_e164("+442079460000", NANP) == "+442079460000"
    assert to_e164("+14155550100", UK) == "+14155550100"


@pytest.mark.parametrize(
    ("raw", "fmt"),
    [
        ("00442079460000", NumberFormat()),
        ("0044 20 7946 0000", UK),
        ("011442079460000", NANP),
        ("011 44 20 7946 0000", NANP),
    ],
)
def test_international_prefix(raw: str, fmt: NumberFormat) -> None:
    assert to_e164(raw, fmt) == "+442079460000"


def test_international_prefix_is_the_peers_own() -> None:
    # "011" is not an international prefix for a peer that uses "00".
    fmt = NumberFormat(international_prefix="00")
    with pytest.raises(NumberError):
        to_e164("011442079460000", fmt)  # read as a full number starting with 0


@pytest.mark.parametrize("raw", ["02079460000", "020 7946 0000", "(020) 7946-0000", "0207 946 0000"])
def test_national_prefix_with_country_code(raw: str) -> None:
    assert to_e164(raw, UK) == "+442079460000"


@pytest.mark.parametrize("raw", ["4155550100", "(415) 555-0100", "415.555.0100"])
def test_nanp_ten_digit_national(raw: str) -> None:
    assert to_e164(raw, NANP) == "+14155550100"


@pytest.mark.parametrize("raw", ["14155550100", "1-415-555-0100", "1 (415) 555 0100"])
def test_nanp_eleven_digit_with_country_code(raw: str) -> None:
    assert to_e164(raw, NANP) == "+14155550100"


@pytest.mark.parametrize(
    "raw",
    [
        "415555010",  # 9 digits
        "24155550100",  # 11 digits not starting with the country code
        "141555501000",  # 12 digits
    ],
)
def test_nanp_rejects_wrong_lengths(raw: str) -> None:
    with pytest.raises(NumberError):
        to_e164(raw, NANP)


@pytest.mark.parametrize("raw", ["212345678", "61212345678", "61 2 1234 5678", "0061212345678"])
def test_fixed_length_with_two_digit_country_code(raw: str) -> None:
    australia = NumberFormat(country_code="61", international_prefix="0011", national_length=9)
    expected = "+61212345678"
    if raw.startswith("00") and not raw.startswith("0011"):
        with pytest.raises(NumberError):  # "00" is not Australia's international prefix
            to_e164(raw, australia)
    else:
        assert to_e164(raw, australia) == expected
    with pytest.raises(NumberError):
        to_e164("6121234567", australia)  # 10 digits: neither 9 nor 2 + 9


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("14155550100", "+14155550100"),
        ("442079460000", "+442079460000"),
        ("4915123456789", "+4915123456789"),
    ],
)
def test_bare_digits_without_country_code_are_e164_without_plus(raw: str, expected: str) -> None:
    assert to_e164(raw) == expected
    assert to_e164(raw, NumberFormat(country_code="", international_prefix="00")) == expected


# -- rejections -------------------------------------------------------------


@pytest.mark.parametrize("raw", ["", "   ", "-.()", "+"])
def test_rejects_empty(raw: str) -> None:
    with pytest.raises(NumberError):
        to_e164(raw)


def test_rejects_none_as_empty() -> None:
    with pytest.raises(NumberError, match="empty"):
        to_e164(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", ["abc", "+1415555O100", "4155550100x", "+1 415 555 0100;ext=1", "sip:+14155550100", "++14155550100"])
def test_rejects_letters_and_symbols(raw: str) -> None:
    with pytest.raises(NumberError):
        to_e164(raw)
    with pytest.raises(NumberError):
        to_e164(raw, NANP)


def test_rejects_more_than_fifteen_digits() -> None:
    assert to_e164("+123456789012345") == "+123456789012345"  # 15 digits: the maximum
    with pytest.raises(NumberError):
        to_e164("+1234567890123456")  # 16 digits
    with pytest.raises(NumberError):
        to_e164("1234567890123456")
    with pytest.raises(NumberError):
        to_e164("001234567890123456")


def test_rejects_too_short() -> None:
    assert to_e164("+1234") == "+1234"  # country code + 3 digits: the minimum
    for raw in ("+123", "+1", "123", "001"):
        with pytest.raises(NumberError):
            to_e164(raw)


@pytest.mark.parametrize("raw", ["+04155550100", "+0", "0004155550100", "04155550100"])
def test_rejects_country_code_starting_with_zero(raw: str) -> None:
    with pytest.raises(NumberError):
        to_e164(raw)


@pytest.mark.parametrize("raw", ["2079460000", "442079460000"])
def test_rejects_ambiguous_national_number_without_prefix(raw: str) -> None:
    with pytest.raises(NumberError, match="ambiguous"):
        to_e164(raw, NO_PREFIX_NO_LENGTH)


@pytest.mark.parametrize("value", ["+14155550100\n", "+14155550100 ", "14155550100", "+1415555010a", ""])
def test_is_e164_accepts_only_the_exact_form(value: str) -> None:
    assert is_e164("+14155550100")
    assert not is_e164(value)


def test_number_format_rejects_bad_fields() -> None:
    with pytest.raises(NumberError):
        NumberFormat(country_code="044")
    with pytest.raises(NumberError):
        NumberFormat(national_prefix="O")
    with pytest.raises(NumberError):
        NumberFormat(national_length=15)


# -- URI user parts and tel: URIs (RFC 3261 section 19.1, RFC 3966) ----------------


@pytest.mark.parametrize(
    "user",
    [
        "tel:+1-415-555-0100",  # RFC 3966 global number with visual separators
        "TEL:+1.415.555.0100",
        "tel:+1-415-555-0100;ext=12",  # other parameters are ignored
        "+1-415-555-0100",
        "tel:4155550100;phone-context=+1",  # local number, global context (RFC 3966 section 5.1.5)
        "415-555-0100;phone-context=+1",
        "5550100;phone-context=+1-415",  # the context carries the area code too
        "4155550100;Phone-Context=+1",
        "%2B14155550100",  # RFC 3261 section 19.1.2: an escaped + is the + of the number
        "%2b14155550100",
        "%2B1%20(415)%20555-0100",
        "4155550100;phone-context=%2B1",
        "+1%2D415%2D555%2D0100",
    ],
)
def test_uri_user_forms_of_one_number(user: str) -> None:
    assert from_uri_user(user) == "+14155550100"
    assert from_uri_user(user, NANP) == "+14155550100"


@pytest.mark.parametrize("user", ["(415)%20555-0100", "415.555.0100", "1-415-555-0100", "011%2044%2020%207946%200000"])
def test_uri_user_in_a_peers_national_format(user: str) -> None:
    expected = "+442079460000" if user.startswith("011") else "+14155550100"
    assert from_uri_user(user, NANP) == expected


@pytest.mark.parametrize(
    "user",
    [
        "4155550100;phone-context=example.com",  # a domain context does not name the country
        "04155550100;phone-context=+1",  # a trunk prefix inside a context is ambiguous
        "%2B1415555010%3B0",  # an escaped ; is a character, not a separator
        "%2G14155550100",  # not an escape: '%' is no digit
        "%2B",
        "%",
        "tel:",
        "",
    ],
)
def test_uri_user_that_is_not_a_number_is_refused(user: str) -> None:
    with pytest.raises(NumberError):
        from_uri_user(user)


def test_escaped_and_plain_forms_normalise_once() -> None:
    """The result of from_uri_user read again is itself: no form is normalised twice into another number."""
    for user in ("%2B14155550100", "tel:4155550100;phone-context=+1", "(415)%20555-0100"):
        once = from_uri_user(user, NANP)
        assert from_uri_user(once, NANP) == once == "+14155550100"


# -- properties -------------------------------------------------------------

formats = st.sampled_from([NumberFormat(), UK, NANP, NO_PREFIX_NO_LENGTH])
#: Strings that look like numbers a peer could send (some valid, some not).
raw_numbers = st.builds(
    lambda plus, digits: ("+" if plus else "") + digits,
    st.booleans(),
    st.text(alphabet="0123456789", min_size=1, max_size=18),
)
separators = st.text(alphabet=" -.()", min_size=1, max_size=3)


def _outcome(raw: str, fmt: NumberFormat) -> str | type[NumberError]:
    try:
        return to_e164(raw, fmt)
    except NumberError:
        return NumberError


@settings(max_examples=300, database=None)
@given(raw=raw_numbers, fmt=formats)
def test_to_e164_is_idempotent_on_its_output(raw: str, fmt: NumberFormat) -> None:
    result = _outcome(raw, fmt)
    if result is NumberError:
        return
    assert to_e164(result, fmt) == result
    assert to_e164(result) == result


@settings(max_examples=300, database=None)
@given(raw=raw_numbers, fmt=formats)
def test_every_output_matches_e164_pattern(raw: str, fmt: NumberFormat) -> None:
    result = _outcome(raw, fmt)
    if result is NumberError:
        return
    assert E164_PATTERN.match(result)
    assert is_e164(result)
    assert result.startswith("+") and result[1:].isdigit() and len(result) <= 16


@settings(max_examples=300, database=None)
@given(raw=raw_numbers, fmt=formats, data=st.data())
def test_visual_separators_never_change_the_result(raw: str, fmt: NumberFormat, data: st.DataObject) -> None:
    positions = data.draw(st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=6))
    decorated = raw
    for pos in sorted(positions, reverse=True):
        decorated = decorated[:pos] + data.draw(separators) + decorated[pos:]
    assert _outcome(decorated, fmt) == _outcome(raw, fmt)


@settings(max_examples=200, database=None)
@given(number=st.from_regex(r"\A\+[1-9][0-9]{3,14}\Z"))
def test_valid_e164_is_returned_unchanged(number: str) -> None:
    assert to_e164(number) == number
