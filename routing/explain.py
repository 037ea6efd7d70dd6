"""``edgectl explain``: why a call was routed or refused, stage by stage.

Two inputs:

* a **synthetic request** (source address, Request-URI user, From user): the
  routing stages of :mod:`routing.pipeline` run on it, the same functions as
  on the call path, with their trace hook on and over a :class:`DryRunStore`
  whose admission only reads the lease counts and CPS buckets (nothing is
  taken, nothing is written);
* the **Call-ID** of a recent call: the refusal the edge recorded for it
  (``edge:trace:{call-id}``, written by :mod:`routing.kemi` on every refused
  initial INVITE, kept ``diagnostics.trace_ttl_s``), the live facts of a call
  in progress (``edge:call:{node}:{call-id}``), its call detail records
  (``edge:cdr:…``: outcome, SIP code, gateways tried, codecs, duration, who
  hung up), then the recorded request replayed through the stages against the
  current tables.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import redis

from . import keys, pipeline
from .decision import STAGE_OF_TAG, Authenticate, Decision, Reject, Relay, Step
from .model import Did, RouteEntry
from .request import SipRequest
from .runtime import RuntimeSettings
from .store import Admission, Lease, RedisStore, StoreUnavailable, Topology

__all__ = [
    "DryRunStore",
    "Explanation",
    "explain_request",
    "refusal_record",
    "read_record",
    "replay_request",
    "active_call",
    "call_records",
]


class DryRunStore:
    """A :class:`routing.store.Store` that reads like :class:`RedisStore` and never writes.

    ``acquire`` answers what the real admission (``lease.lua``) would answer now:
    it counts the unexpired members of each lease ZSET and reads each CPS token
    bucket (refilled to redis's clock), and appends a ``limits`` :class:`Step` per
    lease to ``trace``.  ``release`` does nothing.

    Args:
        inner: the real store (its client is used read-only).
        trace: the list the steps go to.
    """

    def __init__(self, inner: RedisStore, trace: list[Step]) -> None:
        self.inner = inner
        self.trace = trace

    def topology(self) -> Topology:
        return self.inner.topology()

    def confirm(self) -> None:
        self.inner.confirm()

    def current_topology(self) -> Topology:
        return self.inner.current_topology()

    def did(self, number: str) -> Did | None:
        return self.inner.did(number)

    def routes(self, number: str) -> list[RouteEntry]:
        return self.inner.routes(number)

    def route_lookup(
        self, number: str, spend_of: Sequence[str] = ()
    ) -> tuple[list[RouteEntry], frozenset[str], dict[str, int]]:
        return self.inner.route_lookup(number, spend_of)

    def finish(self, call_id: str) -> dict[str, str]:
        return {}

    def update_call(self, call_id: str, fields: dict[str, str], extend_s: int = 0) -> bool:
        return False

    def credentials(self, trunk: str) -> tuple[str, str] | None:
        return self.inner.credentials(trunk)

    def trunk_of_user(self, username: str) -> str | None:
        return self.inner.trunk_of_user(username)

    def registrar_addresses(self, trunk: str) -> list[str]:
        return self.inner.registrar_addresses(trunk)

    def acquire(
        self,
        call_id: str,
        leases: Sequence[Lease],
        ttl_s: int,
        release: Sequence[str] = (),
        facts: dict[str, str] | None = None,
    ) -> Admission:
        """What admission would answer now, without joining anything.

        Raises:
            StoreUnavailable: redis unreachable.
        """
        client = self.inner.client
        try:
            seconds, micros = client.time()
            now = seconds + micros / 1e6
            pipe = client.pipeline(transaction=False)
            for lease in leases:
                pipe.zcount(lease.key, f"({now}", "+inf")
                if lease.cps and lease.bucket:
                    pipe.hmget(lease.bucket, "tokens", "ts")
            rows = iter(pipe.execute())
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc
        for lease in leases:
            count = next(rows)
            tokens, ts = next(rows) if lease.cps and lease.bucket else (None, None)
            limit = "unlimited" if lease.limit is None else str(lease.limit)
            if lease.limit is not None and count >= lease.limit:
                self.trace.append(Step("limits", False, f"{lease.label}: {count} of {limit} calls: full"))
                return Admission(admitted=False, full=lease, count=count)
            if lease.cps:
                cap = max(1.0, lease.cps)
                have = cap if tokens is None else min(cap, float(tokens) + max(0.0, now - float(ts or now)) * lease.cps)
                if have < 1:
                    wait_ms = math.ceil((1 - have) / lease.cps * 1000)
                    self.trace.append(Step("limits", False, f"{lease.label}: CPS bucket empty (max_cps {lease.cps:g}), "
                                                            f"next token in {wait_ms} ms"))
                    return Admission(admitted=False, full=lease, count=-1, wait_ms=wait_ms)
            pace = f", {lease.cps:g} CPS allowed" if lease.cps else ""
            self.trace.append(Step("limits", True, f"{lease.label}: {count} of {limit} calls{pace}: a slot is free"))
        return Admission(admitted=True)

    def release(self, call_id: str, fence_s: int = 0) -> int:
        return 0


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


def _outcome(steps: list[Step], decision: Decision) -> Explanation:
    if isinstance(decision, Reject):
        failed = [s.stage for s in steps if not s.ok]
        stage = STAGE_OF_TAG.get(decision.tag) or (failed[-1] if failed else "")
        return Explanation(steps, "reject", decision.code, decision.reason, decision.tag, stage)
    assert isinstance(decision, Relay)
    plan = decision.plan
    return Explanation(steps, "relay", targets=[t.uri for t in plan.targets[plan.index:]])


def explain_request(store: RedisStore, rt: RuntimeSettings, req: SipRequest) -> Explanation:
    """Run the routing stages on ``req`` without taking any slot.

    A digest trunk's request is explained as if its credentials were valid
    (the real call is first challenged with 407); with no trunk named by the
    source or by ``req.auth_user``, the outcome is the 407 challenge.

    Raises:
        StoreUnavailable: redis unreachable.
        DataError: malformed routing data (names the key).
    """
    steps: list[Step] = []
    dry = DryRunStore(store, steps)
    decision = pipeline.route_initial_invite(req, dry, rt, steps)
    if isinstance(decision, Authenticate):
        topology: Topology = decision.topology  # type: ignore[assignment]
        name = decision.trunk or (dry.trunk_of_user(req.auth_user) if req.auth_user else None)
        trunk = topology.trunks.get(name or "")
        if trunk is None:
            what = f"username {req.auth_user!r} belongs to no trunk" if req.auth_user else "no credentials given"
            steps.append(Step("auth", False, f"{what}: the call is challenged (407), then refused "
                                              "(403 Authentication Failed) unless a digest trunk's credentials match"))
            return Explanation(steps, "challenge", 407, "Proxy Authentication Required", "", "auth")
        creds = dry.credentials(trunk.name)
        steps.append(Step("auth", creds is not None,
                          f"trunk {trunk.name}: " + ("assuming the caller sends its digest credentials"
                                                     if creds else "no credentials stored (edgectl trunk set-password): "
                                                     "every attempt fails with 403 Authentication Failed")))
        if creds is None:
            return Explanation(steps, "reject", 403, "Authentication Failed", "auth_failed", "auth")
        decision = pipeline.originate(req, trunk, topology, dry, rt, steps)
    return _outcome(steps, decision)


# --------------------------------------------------------------------------- recorded refusals


def refusal_record(req: SipRequest, reject: Reject, node: str, where: str, tried: Sequence[str] = ()) -> str:
    """The compact JSON the edge keeps for a refused call (``edge:trace:{call-id}``).

    Fields: ``at`` (epoch s), ``node``, ``src`` (ip:port), ``proto``, ``ruri``,
    ``to``, ``from`` (user parts), ``auth_user``, ``code``, ``reason``, ``tag``,
    ``stage`` (:data:`routing.decision.STAGE_OF_TAG`), ``where`` (``request``, ``failover``, or
    ``reliable-provisional``: the callee's reliable 18x broke the media policy), ``tried``
    (``label=code`` per hop, failover and reliable-provisional only).
    """
    return json.dumps({
        "at": round(time.time(), 3), "node": node, "src": f"{req.src_ip}:{req.src_port}", "proto": req.proto,
        "ruri": req.ruri_user, "to": req.to_user, "from": req.from_user, "auth_user": req.auth_user,
        "code": reject.code, "reason": reject.reason, "tag": reject.tag,
        "stage": STAGE_OF_TAG.get(reject.tag, ""), "where": where, "tried": list(tried),
    }, separators=(",", ":"))


def read_record(client: redis.Redis, call_id: str) -> dict[str, Any] | None:
    """The recorded refusal of ``call_id``, or None (never refused, or older than its TTL)."""
    text = client.get(keys.trace(call_id))
    return json.loads(text) if text else None


def replay_request(record: dict[str, Any], call_id: str) -> SipRequest:
    """The request of a recorded refusal, to run through the stages again."""
    host, _, port = str(record.get("src", "")).rpartition(":")
    return SipRequest(
        method="INVITE", call_id=call_id, src_ip=host.strip("[]"), src_port=int(port or 0),
        proto=record.get("proto", "udp"), ruri_user=record.get("ruri", ""), to_user=record.get("to", ""),
        from_user=record.get("from", ""), auth_user=record.get("auth_user", ""),
    )


def _glob(text: str) -> str:
    """``text`` with redis MATCH wildcards escaped."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def call_records(client: redis.Redis, call_id: str) -> list[dict[str, Any]]:
    """The call records (``edge:cdr:{node}:{call-id}:{cseq}``, :mod:`routing.cdr`) of ``call_id``, oldest first.

    One SCAN over the records kept (``cdr.retention_days``): an ops-tool cost, never on the call path.
    """
    found = []
    for key in client.scan_iter(match=keys.cdr(f"*:{_glob(call_id)}:*"), count=1000):
        text = client.get(key)
        if text:
            record = json.loads(text)
            if record.get("call_id") == call_id:
                found.append(record)
    return sorted(found, key=lambda r: (r.get("start_ms") or 0, str(r.get("cseq"))))


def active_call(client: redis.Redis, call_id: str) -> dict[str, str] | None:
    """Facts of ``call_id`` while it holds slots (``edge:call:{node}:{call-id}`` on any node), else None."""
    pattern = keys.call("*", _glob(call_id))
    prefix = keys.call("", "")[:-1]  # "edge:call:"
    for key in client.scan_iter(match=pattern, count=1000):
        node = key[len(prefix):-len(call_id) - 1]
        facts = client.hgetall(key)
        if not facts or "fenced" in facts:
            continue  # released, or a fence left after an abandoned admission (no call)
        return {"node": node, **{k: v for k, v in facts.items() if not k.startswith("lease:")}}
    return None
