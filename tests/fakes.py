"""Test doubles shared by the unit tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from routing.tables.model import Account, Agent, Did, RouteEntry, Trunk
from routing.tables.store import Admission, Lease, Topology, route_prefixes

__all__ = ["FakeStore"]


@dataclass
class FakeStore:
    """In-memory :class:`routing.tables.store.Store`.

    Routes resolve to the longest prefix that has entries (as RedisStore does);
    leases whose key is in ``full_keys`` are refused all-or-nothing, those in
    ``paced_keys`` are refused as an empty CPS bucket (value: wait in ms);
    ``down`` holds the gateways marked down
    (``{trunk}/{host:port}``), ``agents_down`` the agent URIs (``{agent}/{uri}``); every acquire() and release() (or finish()) is
    recorded; ``spent`` is today's spend per trunk (micro-units; ``account:{name}`` per account); ``call_fields``
    the live call hashes.
    """

    trunks: dict[str, Trunk] = field(default_factory=dict)
    agents: dict[str, Agent] = field(default_factory=dict)
    dids: dict[str, Did] = field(default_factory=dict)
    route_table: dict[str, list[RouteEntry]] = field(default_factory=dict)
    full_keys: set[str] = field(default_factory=set)
    paced_keys: dict[str, int] = field(default_factory=dict)
    acquired: list[dict[str, object]] = field(default_factory=list)
    extended: list[tuple[str, int]] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    finished_media: list[tuple[str, dict[str, str], int]] = field(default_factory=list)
    secrets: dict[str, tuple[str, str]] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)
    traces: dict[str, str] = field(default_factory=dict)
    resolved: dict[str, list[str]] = field(default_factory=dict)
    spent: dict[str, int] = field(default_factory=dict)
    call_fields: dict[str, dict[str, str]] = field(default_factory=dict)
    agents_down: set[str] = field(default_factory=set)
    heartbeats: list[int] = field(default_factory=list)
    accounts: dict[str, Account] = field(default_factory=dict)

    def heartbeat(self, ttl_s: int) -> None:
        self.heartbeats.append(ttl_s)

    def topology(self) -> Topology:
        return Topology(trunks=dict(self.trunks), agents=dict(self.agents), agents_down=frozenset(self.agents_down),
                        accounts=dict(self.accounts))

    def confirm(self) -> None:
        """Never stale: the fake has no cache."""

    def current_topology(self) -> Topology:
        return self.topology()

    def did(self, number: str) -> Did | None:
        return self.dids.get(number)

    def routes(self, number: str) -> list[RouteEntry]:
        for prefix in route_prefixes(number):
            if self.route_table.get(prefix):
                return list(self.route_table[prefix])
        return []

    def route_lookup(
        self, number: str, spend_of: Sequence[str] = (), account: str = ""
    ) -> tuple[list[RouteEntry], frozenset[str], dict[str, int]]:
        spent = {t: self.spent.get(t, 0) for t in spend_of}
        if account:
            spent[f"account:{account}"] = self.spent.get(f"account:{account}", 0)
        return self.routes(number), frozenset(self.down), spent

    def acquire(
        self,
        call_id: str,
        leases: Sequence[Lease],
        ttl_s: int,
        release: Sequence[str] = (),
        facts: dict[str, str] | None = None,
        confirm: bool = False,
    ) -> Admission:
        self.acquired.append(
            {"call_id": call_id, "leases": list(leases), "ttl_s": ttl_s, "release": list(release), "facts": facts}
        )
        for lease in leases:
            if lease.key in self.full_keys:
                return Admission(admitted=False, full=lease, count=lease.limit or 0)
            if lease.key in self.paced_keys:
                return Admission(admitted=False, full=lease, count=-1, wait_ms=self.paced_keys[lease.key])
        return Admission(admitted=True)

    def keep_trace(self, call_id: str, text: str, ttl_s: int) -> None:
        self.traces[call_id] = text

    def release(self, call_id: str, fence_s: int = 0) -> int:
        self.released.append(call_id)
        return 1

    def finish(self, call_id: str, media: dict[str, str] | None = None, keep_s: int = 0) -> dict[str, str]:
        self.released.append(call_id)
        if media:
            self.finished_media.append((call_id, dict(media), keep_s))
        return {**self.call_fields.get(call_id, {}), **(media or {})}

    def finish_many(self, calls: Sequence[tuple[str, dict[str, str]]], keep_s: int = 0) -> list[dict[str, str]]:
        return [self.finish(call_id, media, keep_s) for call_id, media in calls]

    def update_call(self, call_id: str, fields: dict[str, str], extend_s: int = 0) -> bool:
        self.call_fields.setdefault(call_id, {}).update(fields)
        if extend_s:
            self.extended.append((call_id, extend_s))
        return True

    def update_calls(self, calls: Sequence[tuple[str, dict[str, str]]], extend_s: int = 0) -> list[bool]:
        return [self.update_call(call_id, fields, extend_s) for call_id, fields in calls]

    def credentials(self, trunk: str) -> tuple[str, str] | None:
        return self.secrets.get(trunk)

    def registrar_addresses(self, trunk: str) -> list[str]:
        return list(self.resolved.get(trunk, []))

    def trunk_of_user(self, username: str) -> str | None:
        return next((t for t, (user, _) in self.secrets.items() if user == username), None)
