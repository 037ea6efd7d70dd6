"""routing.call.bridge: when the edge bridges a transfer itself, the sipfrag and subscription
state of its NOTIFYs, the transfer leg's caller ID and Diversion, the bridge state's text form."""

from __future__ import annotations

import pytest

from routing.call import bridge as bx
from routing.tables.model import TransferMode


@pytest.mark.parametrize("code", [403, 405, 501, 603])
def test_auto_falls_back_on_a_refusal_of_refer(code: int) -> None:
    assert bx.falls_back(TransferMode.AUTO, "origination", code)


@pytest.mark.parametrize(("mode", "direction", "code"), [
    (TransferMode.AUTO, "origination", 486),  # a busy carrier is no refusal of REFER itself
    (TransferMode.AUTO, "origination", 202),
    (TransferMode.REFER, "origination", 501),  # refer mode: the agent gets the carrier's answer
    (TransferMode.AUTO, "transfer", 501),  # no such direction
])
def test_no_fallback(mode: TransferMode, direction: str, code: int) -> None:
    assert not bx.falls_back(mode, direction, code)


def test_bridge_mode_bridges_at_once() -> None:
    assert bx.bridges(TransferMode.BRIDGE, "origination") and bx.bridges(TransferMode.BRIDGE, "termination")
    assert not bx.bridges(TransferMode.AUTO, "origination") and not bx.bridges(TransferMode.REFER, "termination")
    assert bx.falls_back(TransferMode.AUTO, "termination", 501)


def test_sipfrag_and_subscription_state() -> None:
    assert bx.sipfrag(100) == "SIP/2.0 100 Trying\r\n"
    assert bx.sipfrag(486, "Busy Here") == "SIP/2.0 486 Busy Here\r\n"
    assert bx.sipfrag(499) == "SIP/2.0 499 Unknown\r\n"
    assert bx.subscription_state(100) == "active;expires=60"
    assert bx.subscription_state(200) == "terminated;reason=noresource"
    assert bx.subscription_state(486) == "terminated;reason=noresource"


def test_the_legs_from_is_the_original_caller_or_the_did() -> None:
    assert bx.leg_from("+14155550123", "+14155550100") == "+14155550123"
    # an anonymous or unknown caller cannot be presented: the DID is
    assert bx.leg_from("anonymous", "+14155550100") == "+14155550100"
    assert bx.leg_from("", "+14155550100") == "+14155550100"


def test_bridge_state_keeps_what_the_leg_forwards() -> None:
    b = bx.Bridge("c1", "xfer-c1", "bot", "carrier-a", "ft", "tt", "+442071838751", True, caller="+1212", did="+1415")
    assert (bx.Bridge.decode(b.encode()).caller, bx.Bridge.decode(b.encode()).did) == ("+1212", "+1415")
    # a state written before these fields existed still reads
    assert bx.Bridge.decode(b.encode().replace(',"caller":"+1212","did":"+1415"', "")).caller == ""


def test_leg_call_id() -> None:
    assert bx.leg_call_id("abc@host") == "xfer-abc@host"


def test_bridge_state_round_trip() -> None:
    b = bx.Bridge("c1", "xfer-c1", "bot", "carrier-a", "ft", "tt", "+442071838751", True, [["X-Ctx", "42"]], refer_cseq=3)
    assert bx.Bridge.decode(b.encode()) == b
    moved = b.moved(phase="bridged", leg_tag="lt")
    assert (moved.phase, moved.leg_tag, b.phase) == ("bridged", "lt", "dialling")
    assert bx.Bridge.decode("") is None and bx.Bridge.decode("{bad") is None and bx.Bridge.decode('{"x": 1}') is None


def test_parse_replaces() -> None:
    """RFC 3891 section 6.1: the Call-ID, then to-tag and from-tag in any order and case."""
    assert bx.parse_replaces("consult-1@h;to-tag=H1;from-tag=A1") == ("consult-1@h", "H1", "A1")
    assert bx.parse_replaces(" c ; From-Tag=A ; early-only ; TO-TAG=H ") == ("c", "H", "A")
    assert bx.parse_replaces("c;to-tag=H") is None
    assert bx.parse_replaces(";to-tag=H;from-tag=A") is None
    assert bx.parse_replaces("") is None
