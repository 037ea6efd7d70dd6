"""rtpengine flags of the SDP in the current message: the media policy (:mod:`routing.media`), the
DTMF flags (:mod:`routing.dtmf`) and the NAT flags, shared by the initial INVITE, its replies and
in-dialog requests."""

from __future__ import annotations

import functools
import json

# non-Kamailio modules, in one place
from ..call import dtmf
from ..call import media
from ..call.decision import Reject
from ..tables.model import MediaPolicy
from .worker import Worker, pv

__all__ = ["flags", "modes", "sdp_flags", "offer_flags", "sides", "answer_fill"]

RTPENGINE_FLAGS = media.BASE_FLAGS


def flags(extra: tuple[str, ...]) -> str:
    """The base flags of every rtpengine command, then ``extra``."""
    return " ".join((RTPENGINE_FLAGS, *extra))


def modes(text: str) -> tuple[str, str] | None:
    """(caller, callee) DTMF modes from ``"{caller},{callee}"``; None when either is unknown."""
    caller, _, callee = text.partition(",")
    try:
        return dtmf.DtmfMode(caller).value, dtmf.DtmfMode(callee).value
    except ValueError:
        return None


@functools.lru_cache(maxsize=64)
def sdp_flags(pair: tuple[str, str] | None, from_caller: bool, offer: bool) -> tuple[str, ...]:
    """rtpengine DTMF flags for an SDP sent by the caller (``from_caller``) or the callee
    (memoised: a pure function of a few modes, made for every hop of every call)."""
    if pair is None:
        return ()
    sender, receiver = pair if from_caller else (pair[1], pair[0])
    return dtmf.sdp_flags(sender, receiver, offer)


def offer_flags(w: Worker, offer: media.SdpOffer | None, sender: MediaPolicy, receiver: MediaPolicy,
                dtmf_flags: tuple[str, ...], fill: bool = False) -> str | Reject:
    """rtpengine flags of an SDP offer: media policy (routing.media) plus the DTMF flags
    (routing.dtmf); telephone-event is left to the DTMF flags when they name it."""
    if offer is None:
        return flags(dtmf_flags)
    keep_events = not any("telephone-event" in f for f in dtmf_flags)
    result = _policy_flags(offer, sender, receiver, keep_events, fill)
    if isinstance(result, Reject):
        return result
    return " ".join((result, *dtmf_flags, *media.nat_flags(offer.address, pv("$si"), w.private_networks)))


@functools.lru_cache(maxsize=256)
def _policy_flags(offer: media.SdpOffer, sender: MediaPolicy, receiver: MediaPolicy, keep_events: bool,
                  fill: bool) -> str | Reject:
    """:func:`routing.call.media.offer_flags`, memoised: a pure function of frozen values (the offer's
    protocol, codecs and address, two policies), which a node sees few distinct combinations of."""
    return media.offer_flags(offer, sender, receiver, keep_events=keep_events, fill=fill)


@functools.lru_cache(maxsize=256)
def sides(text: str) -> tuple[MediaPolicy, MediaPolicy] | None:
    """(caller, callee) media policies from their JSON form (``MEDIA_VAR``); None when unknown.
    Memoised: a node has few distinct pairs, read several times per call."""
    if not text:
        return None
    data = json.loads(text)
    return MediaPolicy.from_json(data.get("caller")), MediaPolicy.from_json(data.get("callee"))


def answer_fill(w: Worker, sides_text: str, from_caller: bool) -> tuple[str, ...]:
    """Flags of an SDP answer from the caller (``from_caller``) or the callee for its side's
    ``fill_silence`` (:func:`routing.media.answer_flags`)."""
    pair = sides(sides_text)
    if pair is None:
        return ()
    return media.answer_flags(pair[0] if from_caller else pair[1], w.settings.media_fill)
