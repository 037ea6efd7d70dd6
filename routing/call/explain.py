"""``edgectl explain``, its pure part: the explanation of a routing decision, the record the edge
keeps of a refused call, and that record replayed as a request.

``edgectl explain`` has two inputs:

* a **synthetic request** (source address, Request-URI user, From user): the
  routing stages of :mod:`routing.call.pipeline` run on it, the same functions as
  on the call path, with their trace hook on and over a read-only store
  (:mod:`routing.tables.dryrun`) whose admission only reads the lease counts and CPS
  buckets (nothing is taken, nothing is written);
* the **Call-ID** of a recent call: the refusal the edge recorded for it
  (``edge:trace:{call-id}``, :func:`refusal_record`, written by the Kamailio adapter on every
  refused initial INVITE, kept ``diagnostics.trace_ttl_s``), the live facts of a call
  in progress (``edge:call:{node}:{call-id}``), its call detail records
  (``edge:cdr:…``: outcome, SIP code, gateways tried, codecs, duration, who
  hung up), all read by :mod:`routing.tables.calls`, then the recorded request replayed
  (:func:`replay_request`) through the stages against the current tables.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from routing.call.decision import STAGE_OF_TAG, Decision, Reject, Relay, Step
from routing.call.request import SipRequest

__all__ = ["Explanation", "outcome", "refusal_record", "replay_request"]


@dataclass
class Explanation:
    """The stages a request went through and the outcome.

    Attributes:
        steps: each stage's :class:`Step`, in order.
        outcome: ``"relay"``, ``"reject"`` or ``"challenge"``.
        code, reason, tag: the final SIP status, phrase and refusal tag (``tag`` empty when relayed).
        stage: the stage that refused (empty when relayed).
        targets: the Request-URIs the call would be sent to, in order.
    """

    steps: list[Step]
    outcome: str
    code: int = 0
    reason: str = ""
    tag: str = ""
    stage: str = ""
    targets: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON shape: outcome, code, reason, tag, stage, targets, steps [{stage, ok, detail}]."""
        return {
            "outcome": self.outcome, "code": self.code, "reason": self.reason, "tag": self.tag,
            "stage": self.stage, "targets": self.targets,
            "steps": [{"stage": s.stage, "ok": s.ok, "detail": s.detail} for s in self.steps],
        }


def outcome(steps: list[Step], decision: Decision) -> Explanation:
    """The :class:`Explanation` of a routing decision and the steps that led to it."""
    if isinstance(decision, Reject):
        failed = [s.stage for s in steps if not s.ok]
        stage = STAGE_OF_TAG.get(decision.tag) or (failed[-1] if failed else "")
        return Explanation(steps, "reject", decision.code, decision.reason, decision.tag, stage)
    assert isinstance(decision, Relay)
    plan = decision.plan
    return Explanation(steps, "relay", targets=[t.uri for t in plan.targets[plan.index:]])


def refusal_record(req: SipRequest, reject: Reject, node: str, where: str, tried: Sequence[str] = ()) -> str:
    """The compact JSON the edge keeps for a refused call (``edge:trace:{call-id}``).

    Fields: ``at`` (epoch s), ``node``, ``src`` (ip:port), ``proto``, ``ruri``,
    ``to``, ``from`` (user parts), ``auth_user``, ``code``, ``reason``, ``tag``,
    ``stage`` (:data:`routing.call.decision.STAGE_OF_TAG`), ``where`` (``request``, ``failover``, or
    ``reliable-provisional``: the callee's reliable 18x broke the media policy), ``tried``
    (``label=code`` per hop, failover and reliable-provisional only), ``account`` (the refused
    call's account, empty when none).
    """
    return json.dumps({
        "at": round(time.time(), 3), "node": node, "src": f"{req.src_ip}:{req.src_port}", "proto": req.proto,
        "ruri": req.ruri_user, "to": req.to_user, "from": req.from_user, "auth_user": req.auth_user,
        "code": reject.code, "reason": reject.reason, "tag": reject.tag,
        "stage": STAGE_OF_TAG.get(reject.tag, ""), "where": where, "tried": list(tried), "account": reject.account,
    }, separators=(",", ":"))


def replay_request(record: dict[str, Any], call_id: str) -> SipRequest:
    """The request of a recorded refusal, to run through the stages again."""
    host, _, port = str(record.get("src", "")).rpartition(":")
    return SipRequest(
        method="INVITE", call_id=call_id, src_ip=host.strip("[]"), src_port=int(port or 0),
        proto=record.get("proto", "udp"), ruri_user=record.get("ruri", ""), to_user=record.get("to", ""),
        from_user=record.get("from", ""), auth_user=record.get("auth_user", ""),
    )
