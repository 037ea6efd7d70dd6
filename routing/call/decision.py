"""What routing decided: reject with a SIP status, or relay along a plan.

Values only; :mod:`routing.kamailio` turns them into replies and relays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from routing.call.plan import CallPlan

__all__ = ["Reject", "Relay", "Authenticate", "Decision", "Reason", "Step", "Trace", "STAGE_OF_TAG"]


class Reason:
    """Reason codes of refusals: the reason phrase sent, and a stable code for logs and metrics."""

    SOURCE_NOT_ALLOWED = (403, "Source Not Allowed", "acl_source")
    INBOUND_NOT_ALLOWED = (403, "Trunk Not Allowed Inbound", "trunk_direction")
    DID_NOT_FOUND = (404, "DID Not Found", "did_not_found")
    AGENT_NOT_FOUND = (404, "Agent Not Found", "agent_not_found")
    NO_ROUTE = (404, "No Route", "no_route")
    BAD_NUMBER = (484, "Invalid Destination Number", "bad_number")
    DESTINATION_NOT_ALLOWED = (403, "Destination Not Allowed", "destination_policy")
    TRANSFER_NOT_ALLOWED = (403, "Transfer Not Allowed", "transfer_policy")
    #: a REFER to a SIP URI on a host neither in the agent's ``transfer_hosts`` nor an agent's
    TRANSFER_HOST_NOT_ALLOWED = (403, "Transfer Target Not Allowed", "transfer_host")
    #: a REFER without a readable Refer-To (RFC 3515 section 2.4.1)
    BAD_REFER_TO = (400, "Bad Refer-To", "bad_refer_to")
    REDIRECT_NOT_ALLOWED = (403, "Redirect Not Allowed", "redirect_policy")
    #: termination: the agent may not present its caller ID and has no default, or no trunk of the
    #: route owns the caller ID the call can present (docs/identity.md)
    CALLER_ID_NOT_ALLOWED = (403, "Caller ID Not Allowed", "caller_id")
    TOO_MANY_HOPS = (483, "Too Many Hops", "max_forwards")
    STORE_UNAVAILABLE = (503, "Routing Store Unavailable", "store_unavailable")
    INTERNAL_ERROR = (500, "Internal Server Error", "internal_error")
    NOT_ALLOWED = (405, "Method Not Allowed", "method_not_allowed")
    ALL_CARRIERS_FAILED = (503, "All Carriers Failed", "carriers_failed")
    GATEWAYS_DOWN = (503, "All Gateways Down", "gateways_down")
    AGENT_UNREACHABLE = (503, "Agent Unreachable", "agent_unreachable")
    #: every URI of the agent is marked down by its OPTIONS probes: refused at once, no URI tried
    AGENT_DOWN = (503, "All Agent URIs Down", "agent_down")
    NO_DIALOG = (481, "Call/Transaction Does Not Exist", "no_dialog")
    AUTH_FAILED = (403, "Authentication Failed", "auth_failed")
    #: every route's rate is above the ceiling (``max_rate``) of its trunk
    RATE_TOO_HIGH = (403, "Destination Rate Too High", "rate_cap")
    #: the trunks of the destination reached their ``daily_spend_cap`` (the phrase names the first)
    SPEND_CAP = (403, "Daily Spend Cap Reached", "spend_cap")
    #: the agent's account reached its ``daily_spend_cap`` (the phrase names it; docs/identity.md#accounts)
    ACCOUNT_SPEND_CAP = (403, "Account Spend Cap Reached", "account_spend_cap")
    #: termination: every route entry of the destination is a trunk of another account, none shared
    ACCOUNT_ROUTE = (403, "Trunk Of Another Account", "account_route")
    #: origination: the DID's agent is of another account than the trunk (a hand edit; edgectl refuses it)
    ACCOUNT_AGENT = (403, "Agent Of Another Account", "account_agent")
    SRTP_REQUIRED = (488, "SRTP Required", "srtp_required")
    DTLS_REQUIRED = (488, "DTLS-SRTP Required", "dtls_required")
    CODECS_NOT_ALLOWED = (488, "No Allowed Codec", "codecs_not_allowed")
    NO_AUDIO = (488, "No Audio Stream", "no_audio")
    #: node-wide admission (settings ``overload``), answered by the native request route before any
    #: redis access: new calls per second, concurrent calls, transactions in use
    NODE_CPS = (503, "Node CPS Limit Reached", "node_cps")
    NODE_CALLS = (503, "Node Call Limit Reached", "node_calls")
    NODE_OVERLOADED = (503, "Node Overloaded", "node_overloaded")
    #: the node is out of service (``edgectl drain``): new calls and out-of-dialog OPTIONS get this
    #: until ``edgectl undrain``; calls in progress go on (docs/operations.md#draining-a-node)
    NODE_DRAINING = (503, "Node Draining", "node_draining")


@dataclass(frozen=True, slots=True)
class Reject:
    """Answer the request with a final response.

    Attributes:
        code: SIP status code (RFC 3261 section 21).
        reason: reason phrase; names the limit or the stage that refused.
        tag: stable reason code for logs and metrics (``did_not_found``...).
        retry_after_s: value of a Retry-After header (RFC 3261 section 20.33), seconds.
        direction, trunk, agent, account: what the edge knew of the refused call (for its call
            record); not part of equality.
        announce: the announcement (a DID fallback's ``announce:NAME``) the caller hears as early
            media before this refusal; empty = none. Not part of equality.
    """

    code: int
    reason: str
    tag: str
    retry_after_s: int | None = None
    direction: str = field(default="", compare=False)
    trunk: str = field(default="", compare=False)
    agent: str = field(default="", compare=False)
    announce: str = field(default="", compare=False)
    account: str = field(default="", compare=False)

    @classmethod
    def of(cls, reason: tuple[int, str, str], retry_after_s: int | None = None) -> "Reject":
        """Build from a :class:`Reason` constant."""
        code, phrase, tag = reason
        return cls(code, phrase, tag, retry_after_s)


@dataclass(frozen=True, slots=True)
class Relay:
    """Forward the request along ``plan``, adding ``headers``.

    Attributes:
        plan: targets to try in order, with the slots already admitted.
        headers: header name -> value to add toward the next hop.
        remove: header names to strip before relaying (header policy, :mod:`routing.call.headers`).
    """

    plan: CallPlan
    headers: dict[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Authenticate:
    """The request must carry valid digest credentials (RFC 3261 section 22.3) before routing.

    Attributes:
        trunk: the trunk whose credentials apply, when the source already names it
            (``auth: both`` or ``digest`` from a listed CIDR); None to find the trunk
            by the credentials' username.
        topology: the trunks and agents read for this request (reused after the check).
    """

    trunk: str | None
    topology: object


Decision = Reject | Relay | Authenticate


@dataclass(frozen=True, slots=True)
class Step:
    """One routing stage's result, for ``edgectl explain``.

    Attributes:
        stage: the name of a stage of :mod:`routing.call.pipeline` (``ENTRY``, ``ORIGINATION``,
            ``TERMINATION``).
        ok: False when this stage refused the call.
        detail: what the stage looked at and found, one line.
    """

    stage: str
    ok: bool
    detail: str


#: The trace hook of :mod:`routing.call.pipeline`: a list the stages append :class:`Step` values to,
#: or None on the call path (then nothing is built).
Trace = list

#: The stage that gives each refusal tag (``edgectl explain`` of a recorded refusal, the runbook).
STAGE_OF_TAG = {
    "acl_source": "acl",
    "auth_failed": "auth",
    "trunk_direction": "direction",
    "did_not_found": "did",
    "agent_not_found": "agent",
    "bad_number": "number",
    "destination_policy": "policy",
    "no_route": "route",
    "trunk_limit": "limits",
    "trunk_cps": "limits",
    "agent_limit": "limits",
    "store_unavailable": "store",
    "internal_error": "internal",
    "rtpengine": "media",
    "carriers_failed": "failover",
    "agent_unreachable": "failover",
    "agent_down": "health",
    "downstream_failed": "failover",
    "gateways_down": "route",
    "rate_cap": "route",
    "spend_cap": "route",
    "account_spend_cap": "route",
    "account_route": "route",
    "account_agent": "agent",
    "account_limit": "limits",
    "account_cps": "limits",
    "transfer_policy": "policy",
    "transfer_host": "policy",
    "bad_refer_to": "request",
    "redirect_policy": "policy",
    "caller_id": "callerid",
    "max_forwards": "request",
    "method_not_allowed": "request",
    "no_dialog": "dialog",
    "srtp_required": "media",
    "dtls_required": "media",
    "codecs_not_allowed": "media",
    "no_audio": "media",
    # the node's own admission (native route ADMISSION), before any routing
    "node_cps": "admission",
    "node_calls": "admission",
    "node_overloaded": "admission",
    "node_draining": "admission",
}
