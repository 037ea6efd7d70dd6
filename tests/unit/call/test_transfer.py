"""Transfer decisions (routing.call.transfer): Refer-To parsing, number or SIP URI target, the
carrier's Refer-To formats, embedded headers, sipfrag status."""

from __future__ import annotations

import pytest

from routing.call import transfer as xfer
from routing.call.decision import Reject
from routing.call.numbers import NumberFormat
from routing.tables.model import ReferToFormat

NANP = NumberFormat(country_code="1", national_length=10, international_prefix="011")


@pytest.mark.parametrize(("value", "scheme", "user", "host", "headers"), [
    ("<sip:+14155550123@edge.example.com>", "sip", "+14155550123", "edge.example.com", ()),
    ('"Human" <sips:queue@PBX.example.com:5061;transport=tls>', "sips", "queue", "pbx.example.com", ()),
    ("sip:alice@192.0.2.7", "sip", "alice", "192.0.2.7", ()),
    ("<tel:+1-415-555-0123>", "tel", "+1-415-555-0123", "", ()),
    ("tel:4155550123;phone-context=+1", "tel", "4155550123", "", ()),
    ("<sip:+14155550123@[2001:db8::1]:5060?X-Ctx=42&User-to-User=a1b2%3Bencoding%3Dhex>", "sip",
     "+14155550123", "[2001:db8::1]", (("X-Ctx", "42"), ("User-to-User", "a1b2;encoding=hex"))),
    ("<sip:192.0.2.5>", "sip", "", "192.0.2.5", ()),
])
def test_refer_to_forms_are_parsed(value: str, scheme: str, user: str, host: str, headers: tuple) -> None:
    parsed = xfer.parse_refer_to(value)
    assert (parsed.scheme, parsed.user, parsed.host, parsed.headers) == (scheme, user, host, headers)


@pytest.mark.parametrize("value", ["", "<mailto:a@b>", "<http://x>", "<sip:@>"])
def test_unreadable_refer_to_raises(value: str) -> None:
    with pytest.raises(xfer.TransferError):
        xfer.parse_refer_to(value)


def _classify(value: str, hosts: tuple[str, ...] = (), onnet: tuple[str, ...] = (),
              edge: tuple[str, ...] = ()) -> xfer.TransferTarget | Reject:
    return xfer.classify(xfer.parse_refer_to(value), NANP, hosts, onnet, edge)


@pytest.mark.parametrize(("value", "number"), [
    ("<tel:+1-415-555-0123>", "+14155550123"),
    ("<tel:4155550123;phone-context=+1>", "+14155550123"),
    ("<sip:+14155550123@anywhere.example>", "+14155550123"),  # a global number: the host is rewritten anyway
    ("<sip:%2B14155550123@anywhere.example>", "+14155550123"),  # RFC 3261 19.1.2 escape
    ("<sip:4155550123@pbx.example;user=phone>", "+14155550123"),  # the agent's national form (NANP)
    ("<sip:011442071838751@gw.example;user=phone>", "+442071838751"),
])
def test_numbers_are_read_in_the_agents_format(value: str, number: str) -> None:
    target = _classify(value)
    assert isinstance(target, xfer.TransferTarget) and (target.number, target.uri) == (number, "")


def test_any_user_at_the_edges_own_address_is_a_number() -> None:
    target = _classify("<sip:4155550123@203.0.113.1>", edge=("203.0.113.1",))
    assert isinstance(target, xfer.TransferTarget) and target.number == "+14155550123"


def test_sip_uri_on_a_listed_or_on_net_host_is_a_sip_target() -> None:
    listed = _classify("<sip:1001@PBX.example.com?X-Ctx=1>", hosts=("pbx.example.com",))
    onnet = _classify("<sip:queue@humans.example.com;transport=tcp>", onnet=("humans.example.com",))
    assert isinstance(listed, xfer.TransferTarget) and listed.uri == "sip:1001@PBX.example.com"
    assert listed.headers == (("X-Ctx", "1"),)
    assert isinstance(onnet, xfer.TransferTarget) and onnet.uri == "sip:queue@humans.example.com;transport=tcp"


@pytest.mark.parametrize("value", ["<sip:1001@pbx.example.com>", "<sip:alice@192.0.2.5>", "<sip:192.0.2.5>"])
def test_extension_on_an_unlisted_host_is_refused(value: str) -> None:
    assert _classify(value) == Reject(403, "Transfer Target Not Allowed", "transfer_host")


def test_unreadable_number_is_refused() -> None:
    assert _classify("<tel:12>") == Reject(403, "Transfer Not Allowed", "transfer_policy")


def test_number_policy_applies_agent_node_and_trunk_prefixes() -> None:
    assert xfer.check_number("+14155550123", ("+1",), ("+1900",)) is None
    assert xfer.check_number("+19005550123", ("+1",), ("+1900",)) is not None
    assert xfer.check_number("+442071838751", ("+1",), ()) is not None
    assert xfer.check_number("+14155550123", (), (), trunk_deny=("+1415",)) is not None


def test_embedded_headers_pass_under_the_agents_allow_list() -> None:
    headers = (("X-Ctx", "1"), ("X-Secret", "2"), ("X-Edge-Info", "3"), ("User-to-User", "a1"),
               ("Replaces", "c;to-tag=a;from-tag=b"), ("Route", "<sip:evil>"), ("P-Asserted-Identity", "<sip:+1>"))
    assert xfer.kept_headers(headers, ("x-ctx", "X-Edge-Info"), trust_identity=False) == (
        ("X-Ctx", "1"), ("User-to-User", "a1"), ("Replaces", "c;to-tag=a;from-tag=b"))
    assert ("P-Asserted-Identity", "<sip:+1>") in xfer.kept_headers(headers, (), trust_identity=True)


@pytest.mark.parametrize(("fmt", "expected"), [
    (ReferToFormat.SIP, "<sip:+442071838751@gw.carrier.example>"),
    (ReferToFormat.TEL, "<tel:+442071838751>"),
    (ReferToFormat.SIP_DIGITS, "<sip:442071838751@gw.carrier.example>"),
    (ReferToFormat.SIP_NATIONAL, "<sip:02071838751@gw.carrier.example>"),
])
def test_carrier_refer_to_formats(fmt: ReferToFormat, expected: str) -> None:
    uk = NumberFormat(country_code="44", national_prefix="0")
    target = xfer.TransferTarget(number="+442071838751")
    assert xfer.carrier_refer_to(target, fmt, "gw.carrier.example", uk) == expected


def test_national_form_of_a_foreign_number_uses_the_international_prefix() -> None:
    target = xfer.TransferTarget(number="+442071838751")
    assert xfer.carrier_refer_to(target, ReferToFormat.SIP_NATIONAL, "gw", NANP) == "<sip:011442071838751@gw>"
    assert xfer.carrier_refer_to(target, ReferToFormat.SIP_NATIONAL, "gw", NumberFormat()) == "<sip:442071838751@gw>"


def test_carrier_refer_to_keeps_headers_escaped_and_sip_targets_as_written() -> None:
    target = xfer.TransferTarget(uri="sip:queue@pbx.example.com", headers=(("X-Ctx", "a b;c"), ("User-to-User", "a1")))
    assert xfer.carrier_refer_to(target, ReferToFormat.TEL, "gw", NANP) == \
        "<sip:queue@pbx.example.com?X-Ctx=a%20b%3Bc&User-to-User=a1>"
    # and what the carrier reads back is what the agent meant
    assert xfer.parse_refer_to("<sip:queue@pbx.example.com?X-Ctx=a%20b%3Bc&User-to-User=a1>").headers == target.headers


@pytest.mark.parametrize(("body", "code"), [
    ("SIP/2.0 200 OK\r\n", 200), ("SIP/2.0 100 Trying", 100), ("  sip/2.0 486 Busy Here\r\nVia: x\r\n", 486),
    ("", None), ("INVITE sip:x SIP/2.0\r\n", None), ("SIP/2.0 99 Odd", None),
])
def test_sipfrag_status(body: str, code: int | None) -> None:
    assert xfer.sipfrag_status(body) == code


def test_refer_event_package() -> None:
    assert xfer.is_refer_event("refer") and xfer.is_refer_event("Refer;id=93809824")
    assert not xfer.is_refer_event("presence") and not xfer.is_refer_event("")
