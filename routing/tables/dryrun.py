"""``edgectl explain`` over redis without writing: a read-only :class:`DryRunStore` and
:func:`explain_request`, which runs the routing stages of :mod:`routing.call.pipeline` over it
with their trace hook on (the explanation itself is :mod:`routing.call.explain`)."""

from __future__ import annotations

import math
from typing import Sequence

import redis

from routing.call import pipeline
from routing.call.decision import Authenticate, Step
from routing.call.explain import Explanation, outcome
from routing.call.request import SipRequest
from routing.ops.runtime import RuntimeSettings
from routing.tables.model import Did, RouteEntry
from routing.tables.store import Admission, Lease, RedisStore, StoreUnavailable, Topology

__all__ = ["DryRunStore", "explain_request"]


class DryRunStore:
    """A :class:`routing.tables.store.Store` that reads like :class:`RedisStore` and never writes.

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
        self, number: str, spend_of: Sequence[str] = (), account: str = ""
    ) -> tuple[list[RouteEntry], frozenset[str], dict[str, int]]:
        return self.inner.route_lookup(number, spend_of, account)

    def finish(self, call_id: str) -> dict[str, str]:
        return {}

    def update_call(self, call_id: str, fields: dict[str, str], extend_s: int = 0) -> bool:
        return False

    def update_calls(self, calls: Sequence[tuple[str, dict[str, str]]], extend_s: int = 0) -> list[bool]:
        return [False] * len(calls)

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
        confirm: bool = False,
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
    return outcome(steps, decision)
