"""Names of the per-call state the edge keeps inside Kamailio, in one place.

The plugin (``KSR.pv``/``KSR.htable`` calls) and the native routes of
``templates/kamailio.routes.j2`` (rendered with :func:`template_names`) use these names, so
neither types them a second time.  Kinds of state (Kamailio pv and htable module docs):

* ``$avp(...)``: per transaction (copied into the INVITE's transaction, seen by its branch,
  reply and failure routes);
* ``$dlg_var(...)``: per dialog (seen by every in-dialog request);
* htables: shared memory by Call-ID, seen by every process (the call clock, the DTMF log).

No ``KSR`` here: the renderer imports this module.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace

from ..call.decision import Reason
from ..call.metrics import CALLS_ANSWERED, DRAINING, POST_DIAL_DELAY, REJECTIONS, SETUP_TIME

__all__ = ["template_names", "CallRecordState", "Deadline", "MediaWatch", "DtmfCall", "NativeAnswer", "EndedCall"]

# -- htables (shared memory, keyed by Call-ID unless said) -----------------------------------
#: source address -> 1 while banned (flood, scanner, digest failures); autoexpire security.ban_time_s
BAN_TABLE = "ipban"
#: source address -> 1 for a second after the plugin found a pike-flagged source trusted (native route)
TRUST_TABLE = "trust"
#: source address -> digest failures in the window security.auth_failure_window_s
AUTH_FAIL_TABLE = "authfail"
#: call clock: "deadline s:h_entry:h_id:caller from-tag:callee to-tag" (or "t:cleanup::from-tag")
DEADLINE_TABLE = "deadline"
#: media watchdog: "next check s:rtp timeout s:answered at s:caller from-tag"
MEDIA_TABLE = "mediawatch"
#: call-record facts (JSON, routing.kamailio records) from the relay until the record is written
CDR_TABLE = "cdr"
#: To URI of the edge's own REGISTERs -> "code|reason|epoch s" of the last final reply
REG_REPLY_TABLE = "regreply"
#: answered calls: "{caller from-tag},{caller DTMF mode},{callee DTMF mode}" (the DTMF log)
DTMF_CALL_TABLE = "dtmfcall"
#: routing.cseq.CseqMap of calls whose digits the edge sends as SIP INFO on one side's behalf
CSEQ_TABLE = "cseqmap"
#: origination calls whose trunk has ``ringback_ms``: call-id -> "{due s}:{due µs}:{INVITE CSeq number}",
#: removed by the first 18x or final reply; when due, the native route RINGBACK sends the caller 180
RINGBACK_TABLE = "ringback"
#: INVITEs suspended while the caller hears a fallback announcement: call-id -> when it ends (epoch
#: ms), the transaction's index and label and the refusal then due (routing/kamailio/announce.py encode)
ANNOUNCE_TABLE = "announce"
#: calls whose session timers the edge keeps for the agent (RFC 4028): call-id -> the epoch s at
#: which the call ends unless the carrier refreshes it first (routing/kamailio/sessiontimers.py)
SESSION_TABLE = "sessiontimer"
#: termination INVITEs whose agent did not offer timers (:data:`SENT_INVITE_AVP`): call-id -> the INVITE as
#: last sent to the carrier (native onsend_route, ``$snd(buf)``), read at the 2xx (sessiontimers.keep_answer)
SENT_INVITE_TABLE = "stsent"
#: origination calls whose agent's 200 OK is held until its first RTP packet: call-id ->
#: routing.kamailio.holdanswer.Held (the 200 itself included)
HOLD_ANSWER_TABLE = "holdanswer"
#: answers the native route ANSWERED took (no Python entry): call-id -> :class:`NativeAnswer`, kept until
#: the call's record is written (records.load merges it into the call-record state)
ANSWERED_TABLE = "answered"
#: of those, the calls whose live hash and leases the call clock has not updated yet: call-id -> "1"
EXTEND_TABLE = "extend"
#: answered calls whose agent has sent no RTP yet: call-id -> "{answer ms}:{direction}:{trunk}:{agent}:{agent tag}"
FIRST_AUDIO_TABLE = "firstaudio"
#: calls whose dialog ended (native event_route[dialog:end]) and whose slots and record the call-end drain
#: has not done yet (routing/kamailio/dialogs.py drain_ended): call-id -> :class:`EndedCall`
ENDED_TABLE = "callend"
#: key "n" of it: how many calls were queued since the drain last looked (the native timer route
#: CALL_END enters Python only when it is above 0)
ENDED_COUNT_TABLE = "callendn"
#: bridged transfers (routing.call.bridge.Bridge JSON), under the original call's Call-ID and the
#: transfer leg's, from the bridge's start until either call ends (routing/kamailio/bridge.py)
XFER_TABLE = "xfer"
#: with an rtpengine set (settings ``rtpengine.nodes``, routing/kamailio/rtpset.py): each call's node,
#: call-id -> "udp:HOST:PORT" (the module's ``rtp_inst_pvar`` after the offer), until the call ends
RTP_NODE_TABLE = "rtpnode"
#: nodes of the set the call clock found dead: "udp:HOST:PORT" -> epoch s it was marked down
RTP_DOWN_TABLE = "rtpdown"
#: calls that ended while redis did not answer: call-id -> epoch s; the call clock retries their release
#: (routing/kamailio/records.py retry_releases); autoexpire the lease's own life
UNRELEASED_TABLE = "unreleased"

# -- transaction AVPs ---------------------------------------------------------------------------
#: the rtpengine node the module sent its last command to (its ``rtp_inst_pvar``; with a set only)
RTP_INST_AVP = "$avp(edge_rtpinst)"
#: the rtpengine answer flags of the hop being tried, set when its 2xx needs no decision (no answer
#: check, held answer, session-timer takeover or first-audio poll: fastanswer.arm): the native route
#: ANSWERED takes it; absent, the plugin does
FAST_ANSWER_AVP = "$avp(edge_fans)"
#: the label of the hop being tried (CallPlan target label), for the record's ``tried`` list
HOP_LABEL_AVP = "$avp(edge_mhop)"
#: the callee side's audio codecs (comma-separated): a native answer must hold one (sdpops)
FAST_CODECS_AVP = "$avp(edge_fcodecs)"
#: the call plan (routing.plan.CallPlan JSON) of the INVITE's transaction
PLAN_AVP = "$avp(edge_plan)"
#: rtpengine offer flags of the hop being tried, for the native branch route (absent: delayed offer)
OFFER_AVP = "$avp(edge_offer)"
#: set when rtpengine did not take the offer (the branch is dropped, the caller gets 503)
MEDIA_ERROR_AVP = "$avp(edge_media_err)"
#: set by the reply callback on a reply the native onreply route must drop
REPLY_DROP_AVP = "$avp(edge_reply_drop)"
#: the CSeq number a renumbered request came with; the reply route puts it back into the responses
CSEQ_AVP = "$avp(edge_cseq)"
#: when the initial INVITE arrived (epoch s, text), for post-dial delay and setup time
START_AVP = "$avp(edge_t0)"
#: the same as two integers (epoch s and the microseconds in it), for the native post-dial delay
START_S_AVP = "$avp(edge_t0s)"
START_US_AVP = "$avp(edge_t0u)"
#: metric labels of the hop being tried: "direction|trunk|agent", and its direction and trunk alone
LABELS_AVP = "$avp(edge_mlabels)"
HOP_DIRECTION_AVP = "$avp(edge_mdir)"
HOP_TRUNK_AVP = "$avp(edge_mtrunk)"
PDD_DONE_AVP = "$avp(edge_pdd)"
ANSWERED_AVP = "$avp(edge_ans)"
EARLY_MEDIA_AVP = "$avp(edge_early)"
#: a reliable 18x broke the media policy: "[code, reason, tag]" for the failure route
EARLY_REFUSED_AVP = "$avp(edge_early_refused)"
#: copies of the dialog's direction, media policies and DTMF modes for the transaction's reply route
DIRECTION_AVP = "$avp(edge_dir)"
MEDIA_AVP = "$avp(edge_media)"
DTMF_AVP = "$avp(edge_dtmf)"
#: 1 when the transaction's request came from the caller (the dialog's From side)
FROM_CALLER_AVP = "$avp(edge_from_caller)"
#: 1 when the transaction's request carried SDP (then an SDP in its reply is an answer, else an offer)
REQ_SDP_AVP = "$avp(edge_req_sdp)"
#: 1 while the edge's own BYE passes the request route: dialog:end is the edge's hang-up
EDGE_HANGUP_AVP = "$avp(edge_hangup)"
#: on a REFER's transaction: the agent's transfer relayed to the carrier (its reply is recorded)
REFER_AVP = "$avp(edge_refer)"
#: on a REFER relayed in ``auto`` mode: what a bridge after the carrier's refusal needs (JSON,
#: routing/kamailio/transfers.py)
XFER_AVP = "$avp(edge_xfer)"
#: on a re-INVITE relayed across a bridged transfer: the sender's dialog identifiers its replies get
#: back and the leg's rtpengine tags (JSON, routing/kamailio/bridge.py)
XRELAY_AVP = "$avp(edge_xrelay)"
#: the header lines an agent hop gets (the X-Edge-* of an origination call), kept for every hop
AGENT_HEADERS_AVP = "$avp(edge_agent_hdrs)"
#: the header lines the hop being tried gets, appended by the native branch route (per branch)
HOP_HEADERS_AVP = "$avp(edge_hop_hdrs)"
#: on a relayed session refresh's transaction: the takeover (``"{interval}:{refresher}"``) its 2xx restores
REFRESH_AVP = "$avp(edge_refresh)"
#: on a carrier's pure refresh re-INVITE the edge answers itself (looped, sessiontimers): its 200 is
#: given the timer headers and relayed, its SDP never goes to rtpengine
LOCAL_REFRESH_AVP = "$avp(edge_local_refresh)"
#: on a termination INVITE whose agent did not offer timers: the native onsend_route keeps each copy sent
SENT_INVITE_AVP = "$avp(edge_st_sent)"

# -- dialog variables ---------------------------------------------------------------------------
DIRECTION_VAR = "$dlg_var(edge_dir)"
TRUNK_VAR = "$dlg_var(edge_trunk)"
AGENT_VAR = "$dlg_var(edge_agent)"
#: the hop's max_duration_s, read by the native ACK route for the call clock
MAX_DURATION_VAR = "$dlg_var(edge_max_dur)"
#: the call's RTP inactivity timeout (s), read by the native ACK route for the media watchdog
RTP_TIMEOUT_VAR = "$dlg_var(edge_rtp_timeout)"
#: {"caller": ..., "callee": ...} media policies (MediaPolicy.to_json form)
MEDIA_VAR = "$dlg_var(edge_media)"
#: "{caller},{callee}" DTMF modes (routing.dtmf)
DTMF_VAR = "$dlg_var(edge_dtmf)"
#: ``"{interval}:{refresher}"`` when the edge keeps the call's session timers for the agent
SESSION_VAR = "$dlg_var(edge_st)"
#: with :data:`SESSION_VAR`: ``{"o": the carrier's last o= line, "sdp": the SDP
#: the carrier last received, "contact": the agent's Contact}`` (JSON), so the edge can answer the
#: carrier's pure refresh re-INVITE itself (:func:`routing.kamailio.sessiontimers.refresh`)
SESSION_SDP_VAR = "$dlg_var(edge_st_sdp)"
#: ``"{From-tag}:{CSeq number}"`` of the carrier's refresh re-INVITE the edge answered: its ACK ends at the edge
SESSION_ACK_VAR = "$dlg_var(edge_st_ack)"
#: the carrier's SDP (an origination call's last offer, a termination call's 2xx answer), the offer
#: of a bridged transfer's leg
SDP_VAR = "$dlg_var(edge_sdp)"

# -- per-message script variables (reset by the native request route) ---------------------------
#: share of new calls the native route ADMISSION refuses, permille (routing/kamailio/overload.py)
SHED_SHV = "$shv(edge_shed)"
SHED_SHV_NAME = "edge_shed"
#: 0 while the node is in service; while it drains (``edgectl drain``), when the drain began (epoch s):
#: the native request route answers new INVITEs and out-of-dialog OPTIONS 503 (routing/ops/drain.py)
DRAIN_SHV = "$shv(edge_drain)"
DRAIN_SHV_NAME = "edge_drain"
#: set by ksr_flood when the message must be dropped
DROP_VAR = "$var(edge_drop)"
#: set by ksr_edge_request when it handled the message
DONE_VAR = "$var(edge_done)"
#: set when redis did not answer the screening's trust check earlier in this message
STORE_FAILED_VAR = "$var(edge_sf)"

# -- headers, routes -----------------------------------------------------------------------------
#: header of the requests the edge sends itself (value: the node's secret token)
EDGE_INFO_HEADER = "X-Edge-Info"
#: header of the edge's own refresh re-INVITE naming the Contact its 200 carries (sessiontimers)
EDGE_CONTACT_HEADER = "X-Edge-Contact"
#: header of the edge's own requests naming the socket toward their receiver
EDGE_SOCKET_HEADER = "X-Edge-Socket"
EDGE_HEADER_PREFIX = "X-Edge-"
#: header of a bridged transfer's leg INVITE the edge sends itself: the original call's Call-ID
XFER_HEADER = "X-Edge-Transfer"
#: user part of the Contact the edge gives as the caller of a bridged transfer's leg (``sip:transfer@{its loop listener}``)
XFER_CONTACT_USER = "transfer"
#: call-record state key of a refusal carried out at the ACK
MEDIA_REFUSED = "media_refused"
MAX_FORWARDS = 70
ON_FAILURE = "ksr_failure_manage"
ON_REPLY = "ksr_onreply_manage"
ON_BRANCH = "ksr_branch_manage"
DIALOG_TIMEOUT_ROUTE = "ksr_dialog_timeout"
#: failure route of a REFER relayed in ``auto`` mode (the carrier's refusal may start a bridge)
ON_REFER_FAILURE = "ksr_refer_failure"
#: reply route of a re-INVITE relayed across a bridged transfer (its identifiers put back)
ON_BRIDGED_REPLY = "ksr_bridged_reply"
#: refusals of the native admission route: (code, reason phrase, tag)
NODE_CPS, NODE_CALLS, NODE_OVERLOADED = Reason.NODE_CPS, Reason.NODE_CALLS, Reason.NODE_OVERLOADED
NODE_DRAINING = Reason.NODE_DRAINING
REJECTIONS_METRIC = REJECTIONS.name
DRAINING_METRIC = DRAINING.name
PDD_METRIC = POST_DIAL_DELAY.name
SETUP_METRIC = SETUP_TIME.name
ANSWERED_METRIC = CALLS_ANSWERED.name


# -- value codecs of the htables ------------------------------------------------------------------
#: the ``h_entry`` of a :class:`Deadline` the call clock set to clean a call up after its hang-up
CLEANUP = "cleanup"
#: the deadline form of a call answered by a 2xx whose ACK has not come yet: the ACK (native route
#: CALL_STARTED) replaces it with the call's real deadline; if none comes the call clock releases it
NO_ACK = "noack"
#: how long (s) a 2xx waits for its ACK before the call's slots are released: 64*T1, the time the
#: callee retransmits its 2xx (RFC 3261 section 13.3.1.4); the dialog module's own noack_timeout only
#: acts on its 90 s cleaning timer
ACK_WAIT_S = 32


@dataclass(frozen=True, slots=True)
class Deadline:
    """A value of :data:`DEADLINE_TABLE` (the call clock), one per answered call.

    Written by the native route ``CALL_STARTED`` of ``templates/kamailio.routes.j2`` (at the ACK:
    ``"{deadline}:{h_entry}:{h_id}:{caller from-tag}:{callee to-tag}"``; keep both writers
    byte-identical) and by the plugin (``routing.kamailio.timers``, ``dialogs``): the deadline moved
    to now (end the call at the next tick), or the cleanup form ``"{when}:cleanup::{caller from-tag}"``
    (dialog:end must have come by then; else the clock releases the call itself), or, between the
    2xx and its ACK, ``"{2xx + ACK_WAIT_S}:noack::{caller from-tag}"`` (no ACK by then: released).

    Attributes:
        at_s: when the clock acts (epoch s).
        h_entry: the dialog's hash entry (text, digits), or :data:`CLEANUP`.
        h_id: the dialog's hash id (text, digits; empty in the cleanup form).
        caller_tag: the caller's From-tag.
        callee_tag: the callee's To-tag (empty in the cleanup form).
    """

    at_s: int
    h_entry: str = ""
    h_id: str = ""
    caller_tag: str = ""
    callee_tag: str = ""

    @property
    def cleanup(self) -> bool:
        """Whether this is the cleanup form (the call is being ended by the clock)."""
        return self.h_entry.startswith(CLEANUP)

    @property
    def awaiting_ack(self) -> bool:
        """Whether this is the 2xx's form, before the ACK started the call clock."""
        return self.h_entry == NO_ACK

    @classmethod
    def ack_due(cls, at_s: int, caller_tag: str) -> "Deadline":
        """The 2xx's form: at ``at_s`` the clock releases the call unless its ACK came."""
        return cls(at_s, NO_ACK, "", caller_tag)

    @classmethod
    def cleanup_at(cls, at_s: int, caller_tag: str) -> "Deadline":
        """The cleanup form: at ``at_s`` the clock releases the call unless dialog:end came."""
        return cls(at_s, CLEANUP, "", caller_tag)

    def encode(self) -> str:
        """The htable value (the forms above)."""
        if self.h_entry in (CLEANUP, NO_ACK) and not self.h_id and not self.callee_tag:
            return f"{self.at_s}:{self.h_entry}::{self.caller_tag}"
        return f"{self.at_s}:{self.h_entry}:{self.h_id}:{self.caller_tag}:{self.callee_tag}"

    @classmethod
    def decode(cls, text: str) -> "Deadline | None":
        """Parse a value; None when there is none or its deadline is not a number of seconds.
        Missing fields are empty, a tag holding ``:`` stays whole in ``callee_tag``."""
        at, sep, ids = (text or "").partition(":")
        if not sep or not at.isdigit():
            return None
        h_entry, h_id, caller_tag, callee_tag = (ids.split(":", 3) + ["", "", ""])[:4]
        return cls(int(at), h_entry, h_id, caller_tag, callee_tag)


@dataclass(frozen=True, slots=True)
class MediaWatch:
    """A value of :data:`MEDIA_TABLE` (the media watchdog), one per answered call with an RTP timeout.

    Written first by the native route ``CALL_STARTED`` of ``templates/kamailio.routes.j2`` (keep both
    writers byte-identical), then after each check by ``routing.kamailio.timers``:
    ``"{next check}:{rtp timeout}:{answered at}:{caller from-tag}"``.

    Attributes:
        next_s: when to check next (epoch s).
        timeout_s: the call's RTP inactivity timeout (s).
        since_s: when the call was answered (epoch s): silence is counted from there at most.
        caller_tag: the caller's From-tag (rtpengine's statistics are per tag).
    """

    next_s: int
    timeout_s: int
    since_s: int
    caller_tag: str

    def encode(self) -> str:
        """The htable value (the form above)."""
        return f"{self.next_s}:{self.timeout_s}:{self.since_s}:{self.caller_tag}"

    def again(self, next_s: int) -> "MediaWatch":
        """The same watch, next checked at ``next_s``."""
        return replace(self, next_s=next_s)

    @classmethod
    def decode(cls, text: str) -> "MediaWatch | None":
        """Parse a value; None when it is not the form above (a number missing or not digits)."""
        parts = (text or "").split(":", 3)
        if len(parts) != 4 or not all(p.isdigit() for p in parts[:3]):
            return None
        return cls(int(parts[0]), int(parts[1]), int(parts[2]), parts[3])


@dataclass(frozen=True, slots=True)
class DtmfCall:
    """A value of :data:`DTMF_CALL_TABLE`: ``"{caller from-tag},{caller DTMF mode},{callee DTMF mode}"``,
    written only by the native route ``CALL_STARTED`` (``templates/kamailio.routes.j2``), read by the
    DTMF log (``routing.kamailio.timers``)."""

    caller_tag: str
    modes: str

    @classmethod
    def decode(cls, text: str) -> "DtmfCall":
        """Split a value (an absent one gives empty fields)."""
        caller_tag, _, modes = (text or "").partition(",")
        return cls(caller_tag, modes)


#: JSON keys of :class:`CallRecordState`, in the order the relay first writes them
_RECORD_KEYS = {"cseq": "cseq", "start_ms": "start", "codecs_caller": "cc", "direction": "dir", "agent": "agent",
                "number": "number", "caller": "caller", "trunk": "trunk", "rate": "rate", "billing": "billing",
                "tried": "tried", "answer_ms": "answer", "codecs_callee": "ce", "media_refused": MEDIA_REFUSED,
                "transfer": "xfer", "verstat": "vs", "account": "acct",
                "identity": "idn"}
_RECORD_ITEMS = tuple(_RECORD_KEYS.items())
#: one compact encoder made once (``json.dumps`` with ``separators`` builds one per call)
_COMPACT = json.JSONEncoder(separators=(",", ":"))


@dataclass(slots=True)
class CallRecordState:
    """A value of :data:`CDR_TABLE`: the call-record facts of a relayed initial INVITE, kept from the
    relay (``routing.kamailio.invite``) through the answer (``replies``) to the record
    (``records``).  Only the plugin reads and writes it.

    The value is compact JSON with short keys (``cseq``, ``start``, ``cc``, ``dir``, ``agent``,
    ``number``, ``caller``, ``trunk``, ``rate``, ``billing``, ``tried``, ``answer``, ``ce``,
    ``media_refused``, ``xfer``); a field that is None is left out.

    Attributes:
        cseq: the INVITE's CSeq number (text).
        start_ms: when the INVITE arrived (epoch ms); a state without it was never relayed.
        codecs_caller / codecs_callee: codec names of the caller's offer / the callee's answer.
        direction, agent, number, caller, trunk: as in the call plan (``routing.plan.CallPlan``).
        rate: per-minute rate of the hop (decimal string); billing: its increment ``"first/next"``.
        tried: ``"label=code"`` of the hops tried (set at the answer).
        answer_ms: when the first 2xx came (epoch ms).
        media_refused: ``[code, reason, tag]`` of a media-policy refusal after the 2xx (the call
            is ended at its ACK).
        transfer: the agent's transfer (``routing.kamailio.transfers``): ``mode``, ``target``,
            ``refer_code`` (the carrier's answer to the REFER), ``result`` (the final sipfrag
            status, or the REFER's refusal).
        verstat: the carrier's STIR/SHAKEN verification of the caller (origination), if it sent one.
        account: the call's account (docs/identity.md#accounts), if it has one.
        identity: the edge's check of the carrier's Identity header (``X-Edge-Identity``), if it made one.
    """

    cseq: str | None = None
    start_ms: int | None = None
    codecs_caller: list[str] | None = None
    direction: str | None = None
    agent: str | None = None
    number: str | None = None
    caller: str | None = None
    trunk: str | None = None
    rate: str | None = None
    billing: str | None = None
    tried: list[str] | None = None
    answer_ms: int | None = None
    codecs_callee: list[str] | None = None
    media_refused: list | None = field(default=None)
    transfer: dict | None = field(default=None)
    verstat: str | None = None
    account: str | None = None
    identity: str | None = None

    def encode(self) -> str:
        """The htable value (compact JSON, keys in the order above)."""
        # getattr, not dataclasses.asdict: asdict deep-copies every list (a hot path: relay and answer)
        return _COMPACT.encode({key: value for name, key in _RECORD_ITEMS if (value := getattr(self, name)) is not None})

    @classmethod
    def decode(cls, text: str) -> "CallRecordState | None":
        """Parse a value; None when there is none or it is not a JSON object (unknown keys are ignored)."""
        try:
            data = json.loads(text) if text else None
        except ValueError:
            return None
        if not isinstance(data, dict) or not data:
            return None
        return cls(**{name: data[key] for name, key in _RECORD_KEYS.items() if key in data})


assert [f.name for f in fields(CallRecordState)] == list(_RECORD_KEYS)


@dataclass(frozen=True, slots=True)
class NativeAnswer:
    """A value of :data:`ANSWERED_TABLE`: the first 2xx of an initial INVITE as the native route
    ``ANSWERED`` of ``templates/kamailio.routes.j2`` wrote it,
    ``"{epoch s}|{microseconds}|{code}|{hop label}|{SDP}"`` (keep both byte-identical; the SDP is
    last, so a ``|`` in it stays whole).

    Attributes:
        answer_ms: when the 2xx came (epoch ms).
        code: its status code.
        label: the hop that answered (``CallPlan`` target label).
        sdp: its SDP answer.
    """

    answer_ms: int
    code: int
    label: str
    sdp: str

    def encode(self) -> str:
        """The htable value (tests; the native route writes it)."""
        return f"{self.answer_ms // 1000}|{self.answer_ms % 1000 * 1000}|{self.code}|{self.label}|{self.sdp}"

    @classmethod
    def decode(cls, text: str) -> "NativeAnswer | None":
        """Parse a value; None when there is none or it is malformed."""
        parts = (text or "").split("|", 4)
        if len(parts) != 5 or not (parts[0].isdigit() and parts[1].isdigit() and parts[2].isdigit()):
            return None
        return cls(int(parts[0]) * 1000 + int(parts[1]) // 1000, int(parts[2]), parts[3], parts[4])


@dataclass(frozen=True, slots=True)
class EndedCall:
    """A value of :data:`ENDED_TABLE`, as the native ``event_route[dialog:end]`` of
    ``templates/kamailio.routes.j2`` writes it: ``"{epoch s}|{microseconds}|{hangup}|{caller from-tag}"``
    (keep both byte-identical; the tag is last, whole).

    Attributes:
        end_ms: when the dialog ended (epoch ms): the record's ``end_ms``.
        hangup: who ended it, the record's ``hangup``: ``caller``, ``callee`` (their BYE) or ``edge``.
        caller_tag: the caller's From tag (the rtpengine session's ``from-tag``).
    """

    end_ms: int
    hangup: str
    caller_tag: str

    def encode(self) -> str:
        """The htable value (tests; the native route writes it)."""
        return f"{self.end_ms // 1000}|{self.end_ms % 1000 * 1000}|{self.hangup}|{self.caller_tag}"

    @classmethod
    def decode(cls, text: str) -> "EndedCall | None":
        """Parse a value; None when there is none or it is malformed."""
        parts = (text or "").split("|", 3)
        if len(parts) != 4 or not (parts[0].isdigit() and parts[1].isdigit()) or parts[2] not in _HANGUPS:
            return None
        return cls(int(parts[0]) * 1000 + int(parts[1]) // 1000, parts[2], parts[3])


#: who may end a call (:attr:`EndedCall.hangup`)
_HANGUPS = frozenset({"caller", "callee", "edge"})


def _inner(name: str) -> str:
    """``edge_x`` of ``$avp(edge_x)``."""
    return name[name.index("(") + 1:-1]


def template_names() -> dict[str, object]:
    """Every name above for the template (``names.X``), plus ``X_NAME`` (the bare AVP name, as the
    native cfg writes ``$avp(NAME)``) for each ``$avp(...)``."""
    out: dict[str, object] = {}
    for key, value in globals().items():
        if key.isupper() and not key.startswith("_"):
            out[key] = value
            if isinstance(value, str) and value.startswith("$avp("):
                out[f"{key}_NAME"] = _inner(value)
    return out
