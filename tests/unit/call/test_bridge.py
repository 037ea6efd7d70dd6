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


# -- digits seen in the media of a bridged call (the DTMF log) ------------------------------------

def _bridged(**changes: object) -> bx.Bridge:
    b = bx.Bridge("call-1", "xfer-call-1", "bot", "telnyx", "ct", "at", "+442071838751", True, phase="bridged",
                  leg_tag="lt", target_tag="tt", dtmf="info,rfc4733")
    return b.moved(**changes)


def test_a_targets_rfc4733_digit_toward_an_info_carrier_becomes_an_info_and_is_the_legs() -> None:
    found = bx.bridged_digit(_bridged(), "xfer-call-1", "tt", "7")
    assert found == bx.BridgedDigit(from_carrier=False, record_call="xfer-call-1", entry="callee:7:rfc4733", info=True)


def test_a_carriers_digit_is_recorded_in_its_own_call_as_its_side_there() -> None:
    origination = bx.bridged_digit(_bridged(dtmf="rfc4733,info"), "xfer-call-1", "lt", "4")
    assert origination == bx.BridgedDigit(True, "call-1", "caller:4:rfc4733", True)
    # a termination call: the carrier is the original call's callee
    termination = bx.bridged_digit(_bridged(dtmf="inband,info", carrier_is_caller=False), "xfer-call-1", "lt", "#")
    assert termination == bx.BridgedDigit(True, "call-1", "callee:#:inband", True)


@pytest.mark.parametrize(("modes", "tag", "info"), [
    ("rfc4733,rfc4733", "tt", False),  # events pass in the media
    ("inband,rfc4733", "lt", False),  # the receiver takes no INFO
    ("info,info", "tt", None),  # an info end's digits in the media are the edge's own plays
    ("rfc4733,info", "tt", None),
])
def test_no_info_unless_the_receiver_takes_info_and_the_sender_does_not(modes: str, tag: str, info: bool | None) -> None:
    found = bx.bridged_digit(_bridged(dtmf=modes), "xfer-call-1", tag, "1")
    assert found is not None
    if info is None:
        assert found.entry is None and not found.info  # nothing recorded, nothing sent
    else:
        assert found.entry is not None and found.info is info


def test_before_the_bridge_a_digit_is_recorded_and_sent_to_nobody() -> None:
    for phase in ("answering", "ended"):
        found = bx.bridged_digit(_bridged(phase=phase), "xfer-call-1", "tt", "2")
        assert found is not None and found.entry == "callee:2:rfc4733" and not found.info


@pytest.mark.parametrize(("call_id", "tag", "changes"), [
    ("call-1", "ct", {}),  # the original call's own media (before the bridge): the ordinary DTMF log
    ("xfer-call-1", "stranger", {}),
    ("xfer-call-1", "tt", {"dtmf": ""}),  # modes unknown
    ("xfer-call-1", "tt", {"consult": True}),  # an attended transfer's consult call keeps its own handling
    ("xfer-call-1", "", {"leg_tag": "", "target_tag": ""}),  # the leg not answered
])
def test_digits_the_bridge_does_not_decide(call_id: str, tag: str, changes: dict) -> None:
    assert bx.bridged_digit(_bridged(**changes), call_id, tag, "5") is None


def test_a_saved_state_never_gives_back_a_cseq_taken_meanwhile() -> None:
    stale = _bridged(agent_cseq=3, uac_cseq=2)
    stored = _bridged(agent_cseq=5, uac_cseq=1, phase="ended")
    kept = stale.keeping_cseqs(stored)
    assert (kept.agent_cseq, kept.uac_cseq, kept.phase) == (5, 2, "bridged")
    assert stale.keeping_cseqs(None) == stale
