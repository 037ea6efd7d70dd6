"""The announcement of a DID's last fallback step (``announce:NAME``): the caller hears
``{media.announcements_dir}/NAME.wav`` as early media, then gets the refusal it would have got
without it, so the call is never answered and never billed (docs/agents.md#fallback).

How, with rtpengine's ng protocol (``docs/ng_control_protocol.md``: offer, answer, play media)
and Kamailio's tm/tmx:

1. the caller's SDP is offered to rtpengine again (the same call and from-tag as the agent
   hops) and answered for a callee of the edge's own (to-tag ``edge-announce-*``) whose SDP
   takes the first codec offered and sends nothing; rtpengine's answer is the SDP of the 183;
2. ``play media`` plays the file toward the caller (from-tag: the caller's);
3. ``183 Session Progress`` with that SDP, then the transaction is suspended (tmx
   ``t_suspend``), so tm sends no final answer when the route ends;
4. the native timer route ANNOUNCE_TICK (every 100 ms) resumes it (tmx ``t_continue``) once the
   file has played (rtpengine's reported duration, at most ``media.announcement_max_s``), and
   the native route ANNOUNCE_DONE deletes the media session and sends the refusal (with its
   ``Retry-After``). Both are native: tmx ``t_continue`` called from KEMI runs a KEMI callback,
   which a native configuration with ``python_exec`` does not have.

The announcement holds no slot (the call's were released before it) and needs the caller's
SDP in the INVITE (a delayed offer gets the refusal at once). A caller's CANCEL meanwhile ends
it as any CANCEL does (the media session is deleted; tm answers 487).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call.decision import Reject
from ..ngclient import NgError
from . import callstate as cs
from . import rtpset
from .worker import Worker, log_reject, pv

__all__ = ["start", "encode", "silent_answer"]

#: how long after the announcement's end tm waits for the call clock (1 s ticks) to resume the
#: transaction before it times the suspended branch out itself (ms)
RESUME_GRACE_MS = 5000


def silent_answer(offer_sdp: str) -> str:
    """An SDP answer to rtpengine's offer for the announcement's callee: the offer's first audio
    payload type (with its rtpmap/fmtp lines), plain RTP to the discard port of 127.0.0.1, so
    rtpengine relays nothing anywhere that matters (RFC 3264 section 6: an answer takes a subset
    of the offered formats).

    Raises:
        ValueError: the offer has no audio stream.
    """
    lines = [line.rstrip("\r") for line in offer_sdp.split("\n") if line.strip()]
    media = next((line for line in lines if line.startswith("m=audio ")), None)
    if media is None:
        raise ValueError("the offer has no m=audio line")
    fmt = media.split()[3]
    attrs = [line for line in lines if line.startswith((f"a=rtpmap:{fmt} ", f"a=fmtp:{fmt} "))]
    return "\r\n".join(["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=edge announcement", "c=IN IP4 127.0.0.1", "t=0 0",
                        f"m=audio 9 RTP/AVP {fmt}", *attrs, "a=sendrecv", ""])


def start(w: Worker, reject: Reject, tried: list[str] | None = None) -> bool:
    """Play ``reject.announce`` to the caller of the current INVITE, whose transaction exists
    (failure route, or ``t_newtran`` done), then (later) refuse it with ``reject``; ``tried``
    gets ``"announce NAME=183"`` appended (a record's ``gateways`` entry). Returns False when it cannot start (no such file, no SDP
    in the INVITE, rtpengine refusing, tm): the caller must then get ``reject`` at once."""
    call_id, name = pv("$ci"), reject.announce
    path = Path(w.settings.announcements_dir) / f"{name}.wav"
    body = pv("$rb") if KSR.textops.has_body_type("application/sdp") > 0 else ""
    if not os.path.isfile(path) or not body:
        KSR.warn(f"edge: announcement {name} not played call-id={call_id}: "
                 + ("no SDP in the INVITE" if os.path.isfile(path) else f"no file {path}") + "\n")
        return False
    tags = {"call-id": call_id, "from-tag": pv("$ft")}
    callee = {**tags, "to-tag": f"edge-announce-{os.urandom(4).hex()}"}
    plain = {"transport-protocol": "RTP/AVP", "ICE": "remove", "DTLS": "off", "replace": ["origin", "session-connection"]}
    rtpset.choose(w, call_id)  # with an rtpengine set: the node the module's delete will reach too
    ng = rtpset.client(w, call_id)
    try:
        offer = ng.command("offer", sdp=body, **tags, **plain)
        answer = ng.command("answer", sdp=silent_answer(str(offer["sdp"])), **callee,
                            replace=["origin", "session-connection"])
        played = ng.command("play media", file=str(path), **tags)
    except (NgError, KeyError, ValueError) as exc:
        KSR.warn(f"edge: announcement {name} not played call-id={call_id}: rtpengine: {exc}\n")
        return False
    length_ms = int(played.get("duration") or 0) or w.settings.announcement_max_s * 1000
    length_ms = min(length_ms, w.settings.announcement_max_s * 1000)
    KSR.textops.set_reply_body(str(answer["sdp"]), "application/sdp")
    # the suspended (blind) branch times out like any other: after the announcement, so that tm
    # ends the call itself (408) only if the call clock never resumes it
    wait_ms = length_ms + RESUME_GRACE_MS
    KSR.tm.t_set_fr(wait_ms, wait_ms)
    if KSR.tm.t_reply(183, "Session Progress") < 0 or KSR.tmx.t_suspend() < 0:
        KSR.err(f"edge: announcement {name} call-id={call_id}: tm refused the 183 or the suspension\n")
        return False
    KSR.htable.sht_sets(cs.ANNOUNCE_TABLE, call_id, encode(int(time.time() * 1000) + length_ms,
                                                           pv("$T(id_index)"), pv("$T(id_label)"), reject))
    log_reject(reject, f"announce {name} ({length_ms} ms)")
    if tried is not None:
        tried.append(f"announce {name}=183")
    return True


def encode(due_ms: int, index: str, label: str, reject: Reject) -> str:
    """The ``announce`` htable value the native route ANNOUNCE_TICK reads:
    ``"{due s}|{due µs}|{tm index}|{tm label}|{code}|{Retry-After s or empty}|{reason}"``."""
    retry = "" if reject.retry_after_s is None else str(reject.retry_after_s)
    return (f"{due_ms // 1000}|{due_ms % 1000 * 1000}|{index}|{label}|{reject.code}|{retry}|"
            f"{reject.reason.replace('|', '/')}")
