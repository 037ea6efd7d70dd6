"""The agent's 200 OK held until its first RTP packet (agent ``hold_answer_ms``), so that the
caller's first words are not spoken into a void (docs/agents.md#holding-the-answer).

tm relays every final reply it sees (``drop`` in a tm reply route holds only provisional
ones), so the edge keeps the 200 out of tm's sight:

1. when a hop that holds answers is tried, :func:`arm` notes it (``P``: the hold and the
   call's DTMF modes and media policies, for the answer flags);
2. the core ``reply_route`` (before tm) hands that call's first 2xx to :func:`on_reply`: its SDP
   goes into rtpengine with the answer flags tm's reply route would use (rtpengine then relays
   and counts the agent's RTP), the message (``$mb``) and the flags are kept (``H``), and the
   reply is dropped; the agent's retransmissions of it (RFC 3261 section 13.3.1.4: until the
   ACK) are dropped too;
3. the first-audio poll (:func:`poll`, every ``media.first_audio_poll_ms``) asks rtpengine for
   the agent's packets; at the first one, or ``hold_answer_ms`` after the 200, it marks it
   released (``R``) and sends the kept 200 to the edge's own UDP listener (corex ``send_data``);
4. that copy passes ``reply_route``, tm matches it to its transaction by the Via branch like any
   reply, and tm's reply route (:func:`take`) answers its SDP into rtpengine again with the kept
   flags (its source address is the edge's own now, so nothing is read from it): the call goes
   on as any answered call.

A caller that cancels while the answer is held gets 487 as usual; the held 200 is then never
relayed, and the agent's dialog ends for want of an ACK (RFC 3261 section 13.3.1.4).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
import json

from ..call import media, quality
from ..call.plan import CallPlan
from ..ngclient import NgError
from ..tables.store import StoreUnavailable
from . import callstate as cs
from . import records, rtpset
from .mediaflags import answer_fill, flags, modes, sdp_flags
from .worker import Worker, pv

__all__ = ["Held", "arm", "on_reply", "ringing", "held", "take", "poll", "DROP_VAR"]

#: set by :func:`on_reply` when the core reply_route must drop the reply
DROP_VAR = "$var(edge_hold_drop)"

HOLD_ITERATOR = "edgehold"


@dataclass(frozen=True, slots=True)
class Held:
    """A held 200 (the htable value ``"{H|R}|{since ms}|{until ms}|{agent tag}|{destination}|{flags}|{message}"``).

    Attributes:
        released: the poll has sent it back to the edge (the copy must pass).
        since_ms, until_ms: when the 200 came, and the latest it is held to (epoch ms).
        agent_tag: the agent's To-tag (its stream in rtpengine).
        destination: the edge's own UDP listener the copy is sent to (``sip:IP:PORT;transport=udp``).
        flags: the rtpengine answer flags of the original.
        message: the 200 as received (``$mb``).
    """

    released: bool
    since_ms: int
    until_ms: int
    agent_tag: str
    destination: str
    flags: str
    message: str

    def encode(self) -> str:
        """The htable value (:meth:`decode` reads it back)."""
        return "|".join(("R" if self.released else "H", str(self.since_ms), str(self.until_ms), self.agent_tag,
                         self.destination, self.flags, self.message))

    @classmethod
    def decode(cls, text: str) -> "Held | None":
        """A :class:`Held` from its htable value; None when malformed."""
        parts = text.split("|", 6)
        if len(parts) != 7 or parts[0] not in ("H", "R") or not (parts[1].isdigit() and parts[2].isdigit()):
            return None
        return cls(parts[0] == "R", int(parts[1]), int(parts[2]), parts[3], parts[4], parts[5], parts[6])


def _destination(w: Worker) -> str:
    """The edge's own UDP listener to send the kept 200 to: the one it came in on, else the first."""
    listeners = w.settings.shed_sockets
    here = (pv("$Ri"), int(pv("$Rp") or 0))
    address, port = here if here in listeners else (listeners[0] if listeners else ("", 0))
    if not address:
        return ""
    host = f"[{address}]" if ":" in address else address
    return f"sip:{host}:{port};transport=udp"


def arm(w: Worker, plan: CallPlan) -> None:
    """Before the current hop is tried: note that its 2xx is to be held (an origination call whose
    hop holds answers, with the first-audio poll on, the measure, and a UDP listener to send the
    copy to), or forget a note of an earlier hop."""
    hold_ms = plan.current.hold_answer_ms
    if not (plan.direction == "origination" and hold_ms and w.settings.first_audio_poll_ms and w.settings.shed_sockets):
        if any(t.hold_answer_ms for t in plan.targets[:plan.index]):  # an earlier hop's note (no cost otherwise)
            KSR.htable.sht_rm(cs.HOLD_ANSWER_TABLE, plan.call_id)
        return
    # tm's final-answer timer runs from the hop's first provisional: it must outlast the hold
    answer_ms = plan.current.answer_timeout_ms or w.settings.ringing_timeout_ms
    KSR.tm.t_set_fr(answer_ms + hold_ms, min(answer_ms, w.settings.failover_timeout_ms))
    armed = {"hold_ms": hold_ms, "dtmf": pv(cs.DTMF_AVP), "media": pv(cs.MEDIA_AVP)}
    KSR.htable.sht_sets(cs.HOLD_ANSWER_TABLE, plan.call_id, "P|" + json.dumps(armed, separators=(",", ":")))


def on_reply(w: Worker) -> None:
    """Core reply_route, a 2xx to an INVITE of a call with a note: the first one of an armed call
    is answered into rtpengine and held; a held one's retransmissions are dropped; the released
    copy passes (``DROP_VAR`` 1 = drop)."""
    call_id = pv("$ci")
    text = KSR.htable.sht_gete(cs.HOLD_ANSWER_TABLE, call_id) or ""
    KSR.pv.seti(DROP_VAR, 0)
    if text.startswith("R|") or not text:
        return
    KSR.pv.seti(DROP_VAR, 1)
    if not text.startswith("P|"):
        return  # held already: a retransmission
    armed = json.loads(text[2:])
    sdp = media.parse_sdp(pv("$rb")) if KSR.textops.has_body_type("application/sdp") > 0 else None
    if sdp is None:  # a 2xx without SDP cannot be answered into rtpengine: relayed at once
        KSR.htable.sht_rm(cs.HOLD_ANSWER_TABLE, call_id)
        KSR.pv.seti(DROP_VAR, 0)
        return
    # the answer flags of tm's reply route (replies._sdp) for an answer from the callee
    nat = media.nat_flags(sdp.address, pv("$si"), w.private_networks)
    answer = flags((*sdp_flags(modes(armed["dtmf"]), False, False), *nat, *answer_fill(w, armed["media"], False)))
    KSR.rtpengine.rtpengine_answer(answer)
    now = int(time.time() * 1000)
    entry = Held(False, now, now + int(armed["hold_ms"]), pv("$tt"), _destination(w), answer, pv("$mb"))
    KSR.htable.sht_sets(cs.HOLD_ANSWER_TABLE, call_id, entry.encode())
    KSR.info(f"edge: call-id={call_id} answer held until the agent's first RTP (at most {armed['hold_ms']} ms)\n")
    # tm gets a 180 of the agent's dialog instead: it waits for the final answer as after any
    # provisional (fr_inv_timer, armed to outlast the hold), and the caller hears ringback meanwhile
    if entry.destination:
        KSR.corex.send_data(entry.destination, ringing(entry.message))
    try:  # the slots must outlast the hold: the admission's lease runs from the INVITE
        w.open_store().update_call(call_id, {}, extend_s=w.settings.admission_ttl_s)
    except StoreUnavailable as exc:
        KSR.warn(f"edge: cannot extend the slots of call-id={call_id} while its answer is held: {exc}\n")


def ringing(message: str) -> str:
    """A ``180 Ringing`` made of a 2xx's status line and headers (its Via, To-tag, Contact...:
    the agent's early dialog, RFC 3261 section 12.1), without its body."""
    head = message.partition("\r\n\r\n")[0].split("\r\n")
    kept = [line for line in head[1:] if line.split(":", 1)[0].strip().lower() not in
            ("content-type", "content-length", "c", "l")]
    return "\r\n".join(["SIP/2.0 180 Ringing", *kept, "Content-Length: 0"]) + "\r\n\r\n"


def held(call_id: str) -> Held | None:
    """The held (or released) 200 of ``call_id``, if any."""
    text = KSR.htable.sht_gete(cs.HOLD_ANSWER_TABLE, call_id) or ""
    return Held.decode(text) if text[:2] in ("H|", "R|") else None


def take(entry: Held) -> None:
    """tm's reply route, the released copy of a held 2xx: its SDP answered into rtpengine with the
    original's flags (which rewrites this copy's body), the note gone."""
    KSR.htable.sht_rm(cs.HOLD_ANSWER_TABLE, pv("$ci"))
    KSR.rtpengine.rtpengine_answer(entry.flags)


def poll(w: Worker, now_ms: int) -> None:
    """The first-audio poll's share: each held 200 whose agent has sent RTP, or whose hold has
    run out, is sent back to the edge (and the time it was held kept with the call,
    ``media_answer_held_ms``); a call gone meanwhile (cancelled) is forgotten."""
    pending = []
    if KSR.htable.sht_iterator_start(HOLD_ITERATOR, cs.HOLD_ANSWER_TABLE) < 0:
        return
    while KSR.htable.sht_iterator_next(HOLD_ITERATOR) > 0:
        pending.append((pv(f"$shtitkey({HOLD_ITERATOR})"), pv(f"$shtitval({HOLD_ITERATOR})")))
    KSR.htable.sht_iterator_end(HOLD_ITERATOR)
    for call_id, value in pending:
        entry = Held.decode(value)
        if entry is None or entry.released:
            continue
        state = records.load(call_id)
        if state is None or not state.start_ms:  # the caller cancelled: the failure route wrote the record
            KSR.htable.sht_rm(cs.HOLD_ANSWER_TABLE, call_id)
            continue
        try:
            talking = quality.packets_from(rtpset.client(w, call_id).query(call_id), entry.agent_tag) > 0
        except NgError:
            talking = False
        if not talking and now_ms < entry.until_ms:
            continue
        held_ms = now_ms - entry.since_ms
        KSR.htable.sht_sets(cs.HOLD_ANSWER_TABLE, call_id, Held(True, *_rest(entry)).encode())
        KSR.info(f"edge: call-id={call_id} answer released after {held_ms} ms: "
                 + ("the agent's first RTP\n" if talking else "no RTP from the agent yet, hold limit reached\n"))
        KSR.corex.send_data(entry.destination, entry.message)
        try:
            w.open_store().record_media(call_id, {"media_answer_held_ms": str(held_ms)})
        except StoreUnavailable as exc:
            KSR.err(f"edge: cannot record the held answer of call-id={call_id}: {exc}\n")


def _rest(entry: Held) -> tuple:
    return entry.since_ms, entry.until_ms, entry.agent_tag, entry.destination, entry.flags, entry.message
