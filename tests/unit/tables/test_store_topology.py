"""The per-worker topology cache of RedisStore against a real redis: reuse, invalidation by
``edge:version`` (read in the DID/route pipeline or by confirm()), the 1 s bound for hand
edits, and re-routing a request decided on an outdated copy."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import redis

from routing.tables import admin, keys, store as store_mod
from routing.call import pipeline
from routing.call.decision import Reject, Relay
from routing.tables.model import Agent, Did, Direction, Gateway, RouteEntry, Trunk
from routing.call.request import SipRequest
from routing.ops.runtime import RuntimeSettings
from routing.tables.store import RedisStore, StaleTopology

CARRIER = "192.0.2.10"
CARRIER_2 = "192.0.2.20"
AGENT_IP = "198.51.100.5"
DID = "+14155550100"
RT = RuntimeSettings(node="n1", lease_ttl_s=3660)


class Counting:
    """Counts the round trips (pipelines and single commands) a client sends."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.trips = 0
        self.commands: list[str] = []
        original = client.connection_pool.get_connection

        def get_connection(*args, **kwargs):
            conn = original(*args, **kwargs)
            if not getattr(conn, "_counted", False):
                send = conn.send_packed_command

                def counted(command, check_health=True):
                    self.trips += 1
                    return send(command, check_health)

                conn.send_packed_command = counted
                conn._counted = True
            return conn

        client.connection_pool.get_connection = get_connection


@pytest.fixture
def tables(redis_client: redis.Redis) -> redis.Redis:
    admin.put_trunk(redis_client, Trunk(name="carrier", direction=Direction.BOTH, cidrs=(f"{CARRIER}/32",),
                                        gateways=(Gateway(host="203.0.113.7", port=5060),)))
    admin.put_agent(redis_client, Agent(name="bot", uris=("sip:bot.example.com",), cidrs=(f"{AGENT_IP}/32",)))
    admin.put_did(redis_client, Did(number=DID, trunk="carrier", agent="bot"))
    admin.put_route(redis_client, RouteEntry(prefix="+44", trunk="carrier", rate=Decimal("0.01")))
    return redis_client


@pytest.fixture
def store(tables: redis.Redis, redis_server: tuple[str, int]) -> RedisStore:
    from routing.tables.store import connect

    host, port = redis_server
    return RedisStore(connect(host, port, timeout_ms=2000, connect_timeout_ms=2000), "n1")


def invite(src: str = CARRIER, to: str = DID, call_id: str = "c1") -> SipRequest:
    return SipRequest(method="INVITE", call_id=call_id, src_ip=src, src_port=5060, proto="udp", ruri_user=to,
                      to_user=to, from_user="+14155550123")


def test_every_admin_write_moves_the_version(redis_client: redis.Redis) -> None:
    seen = [redis_client.get(keys.VERSION)]
    admin.put_trunk(redis_client, Trunk(name="t", cidrs=("192.0.2.0/24",)))
    seen.append(redis_client.get(keys.VERSION))
    admin.put_agent(redis_client, Agent(name="a", uris=("sip:a.example.com",)))
    seen.append(redis_client.get(keys.VERSION))
    admin.put_did(redis_client, Did(number=DID, trunk="t", agent="a"))
    seen.append(redis_client.get(keys.VERSION))
    admin.remove_did(redis_client, DID)
    seen.append(redis_client.get(keys.VERSION))
    admin.remove_agent(redis_client, "a")
    seen.append(redis_client.get(keys.VERSION))
    admin.remove_trunk(redis_client, "t")
    seen.append(redis_client.get(keys.VERSION))
    assert seen[0] is None
    assert len(set(seen)) == len(seen)
    assert [int(v) for v in seen[1:]] == sorted(int(v) for v in seen[1:])


def test_a_flushed_database_never_repeats_a_version(redis_client: redis.Redis) -> None:
    admin.put_trunk(redis_client, Trunk(name="t", cidrs=("192.0.2.0/24",)))
    before = int(redis_client.get(keys.VERSION))
    redis_client.flushdb()
    admin.put_trunk(redis_client, Trunk(name="t", cidrs=("192.0.2.0/24",)))
    after = int(redis_client.get(keys.VERSION))
    assert after > before  # seeded from the clock in µs, not restarted at 1


def test_topology_is_reused_within_a_request_stream(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = Counting(store.client)
    first = pipeline.route_initial_invite(invite(call_id="c1"), store, RT)
    trips_first = counter.trips
    second = pipeline.route_initial_invite(invite(call_id="c2"), store, RT)
    assert isinstance(first, Relay) and isinstance(second, Relay)
    # first call: 2 topology pipelines + DID pipeline + lease.lua; second: lease.lua with edge:version
    # in the same write (the DID read under the same version, taken from the worker's cache)
    assert trips_first >= 4
    assert counter.trips - trips_first == 1


def test_a_did_edit_applies_to_the_next_call_routed_on_the_cached_did(store: RedisStore, tables: redis.Redis) -> None:
    admin.put_agent(tables, Agent(name="bot-2", uris=("sip:bot2.example.com",), cidrs=("198.51.100.6/32",)))
    first = pipeline.route_initial_invite(invite(call_id="c1"), store, RT)
    assert isinstance(first, Relay) and first.plan.agent == "bot"
    store.topology()  # the copy c2 reuses, and the DID it read with it
    admin.put_did(tables, Did(number=DID, trunk="carrier", agent="bot-2"), replace=True)
    second = pipeline.route_initial_invite(invite(call_id="c2"), store, RT)
    assert isinstance(second, Relay) and second.plan.agent == "bot-2"
    # the admission on the cached DID was undone: c2 holds the new agent's slot, not the old one's
    assert not tables.zscore(keys.agent_lease("bot"), keys.lease_member("n1", "c2"))
    assert tables.zscore(keys.agent_lease("bot-2"), keys.lease_member("n1", "c2"))


def test_a_removed_did_is_refused_on_the_next_call(store: RedisStore, tables: redis.Redis) -> None:
    assert isinstance(pipeline.route_initial_invite(invite(call_id="c1"), store, RT), Relay)
    admin.remove_did(tables, DID)
    assert pipeline.route_initial_invite(invite(call_id="c2"), store, RT) == Reject.of(pipeline.Reason.DID_NOT_FOUND)
    assert not list(tables.scan_iter(match=f"{keys.call('n1', 'c2')}*"))


def test_a_cached_did_lives_no_longer_than_the_topology_copy(store: RedisStore, tables: redis.Redis,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store.topology()
    assert store.did(DID).agent == "bot"
    tables.hset(keys.did(DID), "agent", "bot-9")  # a hand edit: no version bump
    store.topology()
    assert store.did(DID).agent == "bot"  # reused copy, cached DID
    now = time.monotonic()
    monkeypatch.setattr(store_mod.time, "monotonic", lambda: now + store_mod.TOPOLOGY_MAX_AGE_S + 0.01)
    store.topology()
    assert store.did(DID).agent == "bot-9"


def test_a_failover_admission_never_checks_the_version(store: RedisStore, tables: redis.Redis) -> None:
    store.topology()
    store.did(DID)
    store.topology()
    store.did(DID)  # from the cache: only an admission with confirm reads the version
    tables.incr(keys.VERSION)
    lease = pipeline.agent_lease(store.topology().agents["bot"])
    assert store.acquire("c9", [lease], 60).admitted
    with pytest.raises(StaleTopology):
        store.topology()
        store.did(DID)
        store.acquire("c10", [lease], 60, confirm=True)


def test_edgectl_write_applies_to_the_next_call(store: RedisStore, tables: redis.Redis) -> None:
    assert isinstance(pipeline.route_initial_invite(invite(src=CARRIER_2, call_id="c1"), store, RT), Reject)
    # a second trunk appears through the admin API (what edgectl does) and owns a new DID
    admin.put_trunk(tables, Trunk(name="carrier-2", cidrs=(f"{CARRIER_2}/32",)))
    admin.put_did(tables, Did(number="+14155550111", trunk="carrier-2", agent="bot"))
    decision = pipeline.route_initial_invite(invite(src=CARRIER_2, to="+14155550111", call_id="c2"), store, RT)
    assert isinstance(decision, Relay), decision


def test_refusal_by_source_is_confirmed_against_the_version(store: RedisStore, tables: redis.Redis) -> None:
    assert pipeline.route_initial_invite(invite(src=CARRIER_2, call_id="c1"), store, RT) == Reject.of(
        pipeline.Reason.SOURCE_NOT_ALLOWED)
    admin.put_trunk(tables, Trunk(name="carrier", direction=Direction.BOTH, cidrs=(f"{CARRIER}/32", f"{CARRIER_2}/32"),
                                  gateways=(Gateway(host="203.0.113.7", port=5060),)), replace=True)
    assert isinstance(pipeline.route_initial_invite(invite(src=CARRIER_2, call_id="c2"), store, RT), Relay)


def test_refusal_by_direction_is_confirmed_against_the_version(store: RedisStore, tables: redis.Redis) -> None:
    assert isinstance(pipeline.route_initial_invite(invite(call_id="c1"), store, RT), Relay)
    admin.put_trunk(tables, Trunk(name="carrier", direction=Direction.OUTBOUND, cidrs=(f"{CARRIER}/32",),
                                  gateways=(Gateway(host="203.0.113.7", port=5060),)), replace=True)
    decision = pipeline.route_initial_invite(invite(call_id="c2"), store, RT)
    assert decision == Reject.of(pipeline.Reason.INBOUND_NOT_ALLOWED)


def test_termination_sees_a_trunk_change_on_the_next_call(store: RedisStore, tables: redis.Redis) -> None:
    first = pipeline.route_initial_invite(invite(src=AGENT_IP, to="+442071838750", call_id="c1"), store, RT)
    assert isinstance(first, Relay) and first.plan.targets[0].uri.endswith("@203.0.113.7:5060")
    admin.put_trunk(tables, Trunk(name="carrier", direction=Direction.BOTH, cidrs=(f"{CARRIER}/32",),
                                  gateways=(Gateway(host="203.0.113.99", port=5080),)), replace=True)
    second = pipeline.route_initial_invite(invite(src=AGENT_IP, to="+442071838750", call_id="c2"), store, RT)
    assert isinstance(second, Relay) and second.plan.targets[0].uri.endswith("@203.0.113.99:5080")


def test_stale_copy_raises_once_and_takes_no_slot(store: RedisStore, tables: redis.Redis) -> None:
    store.topology()
    tables.incr(keys.VERSION)
    store.topology()  # reused
    with pytest.raises(StaleTopology):
        store.did(DID)
    assert not list(tables.scan_iter(match="edge:lease:*"))
    store.topology()  # read again: fresh
    assert store.did(DID) is not None


def test_a_fresh_read_racing_a_write_does_not_raise(store: RedisStore, tables: redis.Redis) -> None:
    store.topology()  # fresh from redis
    tables.incr(keys.VERSION)  # a write lands between the topology and the DID read
    assert store.did(DID) is not None  # decided on a copy read by this very request
    counter = Counting(store.client)
    store.topology()
    assert counter.trips == 2  # the moved version dropped the cache: read again


def test_hand_edit_without_version_bump_applies_within_max_age(store: RedisStore, tables: redis.Redis,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert "carrier-2" not in store.topology().trunks
    tables.sadd(keys.TRUNKS, "carrier-2")
    tables.sadd(keys.trunk_cidrs("carrier-2"), f"{CARRIER_2}/32")
    assert "carrier-2" not in store.topology().trunks  # cached, version unchanged
    now = time.monotonic()
    monkeypatch.setattr(store_mod.time, "monotonic", lambda: now + store_mod.TOPOLOGY_MAX_AGE_S + 0.01)
    assert "carrier-2" in store.topology().trunks


def test_confirm_costs_nothing_after_a_fresh_read(store: RedisStore, tables: redis.Redis) -> None:
    store.topology()
    counter = Counting(store.client)
    store.confirm()
    assert counter.trips == 0
    store.topology()
    store.confirm()  # reused copy: one GET
    assert counter.trips == 1
    tables.incr(keys.VERSION)
    store.topology()
    with pytest.raises(StaleTopology):
        store.confirm()


def test_current_topology_reads_again_when_the_version_moved(store: RedisStore, tables: redis.Redis) -> None:
    assert store.current_topology().agents["bot"].uris == ("sip:bot.example.com",)
    admin.put_agent(tables, Agent(name="bot", uris=("sip:bot2.example.com",), cidrs=(f"{AGENT_IP}/32",)), replace=True)
    assert store.current_topology().agents["bot"].uris == ("sip:bot2.example.com",)
