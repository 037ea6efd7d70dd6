"""rtpengine flags of the current message's SDP (routing.kamailio.mediaflags)."""

from __future__ import annotations

import importlib
import json
import types
from dataclasses import replace

import pytest

from routing.call import dtmf, media
from routing.call.decision import Reject
from routing.tables.model import MediaPolicy, SilenceFill, SrtpMode
from tests.unit.kamailio.fakeksr import FakeKSR, RT, SDP_OFFER


@pytest.fixture
def mediaflags(kemi: types.ModuleType) -> types.ModuleType:
    """The module as imported against the fake KSR."""
    return importlib.import_module("routing.kamailio.mediaflags")


@pytest.fixture
def worker(kemi: types.ModuleType) -> object:
    return importlib.import_module("routing.kamailio.worker").Worker(RT)


def _sides(caller: MediaPolicy, callee: MediaPolicy) -> str:
    return json.dumps({"caller": caller.to_json(), "callee": callee.to_json()})


def test_flags_start_with_the_base_flags_then_the_extra_ones(mediaflags: types.ModuleType) -> None:
    assert mediaflags.flags(()) == media.BASE_FLAGS
    assert mediaflags.flags(("one", "two")) == f"{media.BASE_FLAGS} one two"


@pytest.mark.parametrize(("text", "expected"), [
    ("info,rfc4733", ("info", "rfc4733")),
    ("inband,inband", ("inband", "inband")),
    ("info,", None),
    ("", None),
    ("pulse,info", None),
])
def test_modes_reads_caller_and_callee_and_refuses_an_unknown_one(mediaflags: types.ModuleType, text: str,
                                                                  expected: tuple[str, str] | None) -> None:
    assert mediaflags.modes(text) == expected


def test_sdp_flags_of_the_callee_swap_sender_and_receiver(mediaflags: types.ModuleType) -> None:
    pair = ("rfc4733", "info")
    from_caller = mediaflags.sdp_flags(pair, True, True)
    from_callee = mediaflags.sdp_flags(pair, False, True)
    assert from_caller == dtmf.sdp_flags("rfc4733", "info", True)
    assert from_callee == dtmf.sdp_flags("info", "rfc4733", True)
    assert from_caller != from_callee
    assert mediaflags.sdp_flags(None, True, True) == ()


def test_sides_reads_both_policies_and_none_without_text(mediaflags: types.ModuleType) -> None:
    caller, callee = MediaPolicy(codecs=("PCMA",)), MediaPolicy(srtp=SrtpMode.SDES, ptime_ms=30)
    assert mediaflags.sides(_sides(caller, callee)) == (caller, callee)
    assert mediaflags.sides("") is None


def test_offer_flags_without_an_offer_are_the_base_and_dtmf_flags(mediaflags: types.ModuleType, worker: object) -> None:
    result = mediaflags.offer_flags(worker, None, MediaPolicy(srtp=SrtpMode.SDES), MediaPolicy(), ("detect-DTMF",))
    assert result == f"{media.BASE_FLAGS} detect-DTMF"


def test_offer_flags_refuse_a_plain_offer_from_a_side_requiring_srtp(mediaflags: types.ModuleType,
                                                                     worker: object) -> None:
    result = mediaflags.offer_flags(worker, media.parse_sdp(SDP_OFFER), MediaPolicy(srtp=SrtpMode.SDES),
                                    MediaPolicy(), ())
    assert isinstance(result, Reject) and (result.code, result.tag) == (488, "srtp_required")


def test_offer_flags_leave_telephone_event_to_dtmf_flags_that_name_it(mediaflags: types.ModuleType,
                                                                      worker: object) -> None:
    offer = media.parse_sdp(SDP_OFFER)
    kept = mediaflags.offer_flags(worker, offer, MediaPolicy(), MediaPolicy(), ()).split()
    assert "codec-offer-telephone-event" in kept
    dtmf_flags = ("codec-strip=telephone-event", "codec-transcode=telephone-event")
    left = mediaflags.offer_flags(worker, offer, MediaPolicy(), MediaPolicy(), dtmf_flags).split()
    assert "codec-offer-telephone-event" not in left
    assert left[-2:] == list(dtmf_flags)


@pytest.mark.parametrize(("source", "nat"), [("203.0.113.9", True), ("10.0.0.5", False), ("10.0.0.7", False)])
def test_offer_flags_add_sip_source_address_only_for_a_private_sdp_from_a_public_source(
        mediaflags: types.ModuleType, worker: object, ksr: FakeKSR, source: str, nat: bool) -> None:
    ksr.pv["$si"] = source
    offer = media.parse_sdp(SDP_OFFER.replace("192.0.2.5", "10.0.0.5"))
    result = mediaflags.offer_flags(worker, offer, MediaPolicy(), MediaPolicy(), ())
    assert ("SIP-source-address" in result.split()) is nat


def test_answer_fill_follows_the_answering_sides_policy_when_the_node_fills(kemi: types.ModuleType,
                                                                            mediaflags: types.ModuleType) -> None:
    workers = importlib.import_module("routing.kamailio.worker")
    filling, not_filling = workers.Worker(replace(RT, media_fill=True)), workers.Worker(RT)
    text = _sides(MediaPolicy(fill_silence=SilenceFill.AUDIO), MediaPolicy())
    assert mediaflags.answer_fill(filling, text, True) == (media.FILL_FLAG,)
    assert mediaflags.answer_fill(filling, text, False) == ()
    assert mediaflags.answer_fill(not_filling, text, True) == ()
    assert mediaflags.answer_fill(filling, "", True) == ()
