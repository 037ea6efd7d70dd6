"""The calls of a dead node reaped by the nodes that live (routing.monitor.nodeloss), on a real
redis: a node without heartbeat has its slots released and its calls recorded once; a node with
one, and this node itself, are never touched."""

from __future__ import annotations

import time

import redis

from routing.monitor import nodeloss
from routing.tables import keys
from routing.tables.calls import lease_counts
from routing.tables.cdrstore import CdrStore
from routing.tables.store import Lease, RedisStore

TRUNK = Lease(keys.trunk_lease("telnyx"), 4, "trunk telnyx")
AGENT = Lease(keys.agent_lease("bot"), 4, "agent bot")


def _call(client: redis.Redis, node: str, call_id: str, answered: bool) -> None:
    store = RedisStore(client, node)
    started = int(time.time() * 1000) - 10_000
    facts = {"direction": "origination", "trunk": "telnyx", "agent": "bot", "number": "+14155550100",
             "start_ms": str(started)}
    assert store.acquire(call_id, [TRUNK, AGENT], 600, facts=facts).admitted
    if answered:
        store.update_call(call_id, {"answer_ms": str(started + 1000)}, extend_s=3600)


def test_a_dead_nodes_calls_are_released_and_recorded_once(redis_client: redis.Redis) -> None:
    _call(redis_client, "ghost", "c1", answered=True)
    _call(redis_client, "ghost", "c2", answered=False)
    _call(redis_client, "alive", "c3", answered=True)
    _call(redis_client, "me", "c4", answered=True)
    RedisStore(redis_client, "alive").heartbeat(10)
    cdrs = CdrStore(redis_client, 86400)
    assert nodeloss.reap(redis_client, "me", cdrs) == {"ghost": 2}
    assert lease_counts(redis_client) == {TRUNK.key: 2, AGENT.key: 2}  # alive's and mine only
    assert not redis_client.exists(keys.call("ghost", "c1")) and redis_client.exists(keys.call("alive", "c3"))
    records = {r["call_id"]: r for r in cdrs.records(0, 2**62)}
    assert set(records) == {"c1", "c2"}
    assert (records["c1"]["status"], records["c1"]["hangup"], records["c1"]["trunk"]) == ("answered", "node_lost", "telnyx")
    assert (records["c2"]["status"], records["c2"]["reject_tag"]) == ("failed", "node_lost")
    # the trunk was full (4 of 4); the dead node's 2 slots are free for new calls again
    _call(redis_client, "me", "c5", answered=False)
    _call(redis_client, "me", "c6", answered=False)
    assert nodeloss.reap(redis_client, "me", cdrs) == {}  # nothing left: idempotent
    assert len(cdrs.records(0, 2**62)) == 2


def test_a_node_with_a_heartbeat_keeps_its_calls(redis_client: redis.Redis) -> None:
    _call(redis_client, "busy", "c1", answered=True)
    RedisStore(redis_client, "busy").heartbeat(10)
    assert nodeloss.reap(redis_client, "me", CdrStore(redis_client, 86400)) == {}
    assert redis_client.exists(keys.call("busy", "c1"))
    assert 0 < redis_client.ttl(keys.node("busy")) <= 10


def test_a_dead_nodes_account_call_keeps_its_account_and_its_accrued_spend(redis_client: redis.Redis) -> None:
    from routing.tables.spend import SpendAccrual
    from routing.call.cdr import utc_day

    store = RedisStore(redis_client, "ghost")
    account = Lease(keys.account_lease("acme"), 4, "account acme")
    started = int(time.time() * 1000) - 10_000
    facts = {"direction": "termination", "trunk": "telnyx", "agent": "bot", "account": "acme", "start_ms": str(started)}
    assert store.acquire("c1", [AGENT, account], 600, facts=facts).admitted
    store.update_call("c1", {"answer_ms": str(started + 1000)}, extend_s=3600)
    day = utc_day(int(time.time() * 1000))
    SpendAccrual(redis_client, "ghost").accrue("c1", 70_000, "telnyx", "acme", day)
    cdrs = CdrStore(redis_client, 86400)
    assert nodeloss.reap(redis_client, "me", cdrs) == {"ghost": 1}
    [record] = cdrs.records(0, 2**62)
    assert (record["account"], record["spend_accrued"], record["cost"]) == ("acme", "0.070000", "0.000000")
    assert redis_client.get(keys.account_spend("acme", day)) == "70000"  # counted while it ran, once
    assert lease_counts(redis_client).get(account.key, 0) == 0


class _Rtpengine:
    """Stands in for the ng clients of rtpengine nodes: per Call-ID the epoch s of its last packet,
    ``None`` = unknown call-id; ``down`` = no answer at all."""

    def __init__(self) -> None:
        self.last: dict[str, int | None] = {}
        self.down = False
        self.deleted: list[str] = []
        self.asked: list[tuple[str, int]] = []
        self.queries = 0

    def __call__(self, host: str, port: int) -> "_Rtpengine":
        self.asked.append((host, port))
        return self

    def query(self, call_id: str) -> dict:
        from routing.ngclient import NgError

        self.queries += 1
        if self.down:
            raise NgError("rtpengine 10.0.0.1:2223 did not answer query: timed out")
        if self.last.get(call_id) is None:
            raise NgError("rtpengine refused query: Unknown call-id", "Unknown call-id")
        stream = {"last packet": self.last[call_id], "flags": ["RTP"]}
        return {"tags": {"a": {"medias": [{"type": "audio", "streams": [stream]}]}}}

    def command(self, name: str, **params: str) -> dict:
        assert name == "delete"
        self.deleted.append(params["call_id"])
        return {"result": "ok"}


def _remote_call(client: redis.Redis, call_id: str) -> None:
    _call(client, "ghost", call_id, answered=True)
    RedisStore(client, "ghost").update_call(call_id, {"rtp_node": "udp:10.0.0.1:2223"})


def test_a_dead_nodes_call_on_a_remote_rtpengine_keeps_its_slots_while_its_media_flows(redis_client: redis.Redis) -> None:
    _remote_call(redis_client, "c1")
    t = time.time()
    rtp, cdrs, clock = _Rtpengine(), CdrStore(redis_client, 86400), [t]
    rtp.last["c1"] = int(t) - 1
    reap = lambda: nodeloss.reap(redis_client, "me", cdrs, now=lambda: clock[0], stopped_after_s=5, ng=rtp)  # noqa: E731
    assert reap() == {}
    assert rtp.asked == [("10.0.0.1", 2223)]
    assert lease_counts(redis_client) == {TRUNK.key: 1, AGENT.key: 1} and cdrs.records(0, 2**62) == []
    clock[0] = int(t) + 4.0  # 5 s after its last packet: the media stopped
    assert reap() == {"ghost": 1}
    assert lease_counts(redis_client).get(TRUNK.key, 0) == 0 and rtp.deleted == ["c1"]
    [record] = cdrs.records(0, 2**62)
    assert (record["hangup"], record["media"]) == ("node_lost", {"media_end_reason": "media_stopped"})


def test_a_dead_nodes_call_gone_from_its_rtpengine_is_released(redis_client: redis.Redis) -> None:
    _remote_call(redis_client, "c1")
    rtp, cdrs = _Rtpengine(), CdrStore(redis_client, 86400)
    assert nodeloss.reap(redis_client, "me", cdrs, stopped_after_s=5, ng=rtp) == {"ghost": 1}
    assert rtp.deleted == []
    assert cdrs.records(0, 2**62)[0]["media"] == {"media_end_reason": "media_gone"}


def test_a_dead_nodes_call_whose_rtpengine_does_not_answer_is_released_after_the_timeout(
        redis_client: redis.Redis) -> None:
    _remote_call(redis_client, "c1")
    _remote_call(redis_client, "c2")
    t = time.time()
    rtp, cdrs, clock, unreachable = _Rtpengine(), CdrStore(redis_client, 86400), [t], {}
    rtp.down = True
    reap = lambda: nodeloss.reap(redis_client, "me", cdrs, now=lambda: clock[0], stopped_after_s=5,  # noqa: E731
                                 unreachable=unreachable, ng=rtp)
    assert reap() == {} and unreachable == {"udp:10.0.0.1:2223": t}
    assert rtp.queries == 1  # one query a round: no 0.5 s wait per call on a silent node
    clock[0] = t + 5
    assert reap() == {"ghost": 2}
    assert [r["media"]["media_end_reason"] for r in cdrs.records(0, 2**62)] == ["rtpengine_lost"] * 2
