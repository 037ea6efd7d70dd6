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

from routing.call.decision import Reason
from routing.call.metrics import POST_DIAL_DELAY, REJECTIONS

__all__ = ["template_names"]

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

# -- transaction AVPs ---------------------------------------------------------------------------
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

# -- per-message script variables (reset by the native request route) ---------------------------
#: set by ksr_flood when the message must be dropped
DROP_VAR = "$var(edge_drop)"
#: set by ksr_edge_request when it handled the message
DONE_VAR = "$var(edge_done)"
#: set when redis did not answer the screening's trust check earlier in this message
STORE_FAILED_VAR = "$var(edge_sf)"

# -- headers, routes -----------------------------------------------------------------------------
#: header of the requests the edge sends itself (value: the node's secret token)
EDGE_INFO_HEADER = "X-Edge-Info"
#: header of the edge's own requests naming the socket toward their receiver
EDGE_SOCKET_HEADER = "X-Edge-Socket"
EDGE_HEADER_PREFIX = "X-Edge-"
#: call-record state key of a refusal carried out at the ACK
MEDIA_REFUSED = "media_refused"
MAX_FORWARDS = 70
ON_FAILURE = "ksr_failure_manage"
ON_REPLY = "ksr_onreply_manage"
ON_BRANCH = "ksr_branch_manage"
DIALOG_TIMEOUT_ROUTE = "ksr_dialog_timeout"
#: refusals of the native admission route: (code, reason phrase, tag)
NODE_CPS, NODE_CALLS, NODE_OVERLOADED = Reason.NODE_CPS, Reason.NODE_CALLS, Reason.NODE_OVERLOADED
REJECTIONS_METRIC = REJECTIONS.name
PDD_METRIC = POST_DIAL_DELAY.name


def _inner(name: str) -> str:
    """``edge_x`` of ``$avp(edge_x)``."""
    return name[name.index("(") + 1:-1]


def template_names() -> dict[str, object]:
    """Every name above for the template (``names.X``), plus ``X_NAME`` (the bare AVP name, as the
    native cfg writes ``$avp(NAME)``) for each ``$avp(...)``."""
    out: dict[str, object] = {}
    for key, value in globals().items():
        if key.isupper():
            out[key] = value
            if isinstance(value, str) and value.startswith("$avp("):
                out[f"{key}_NAME"] = _inner(value)
    return out
