"""RedisStore.acquire/release against a real redis: the Lua lease scripts, expiry, and failing fast."""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, Iterator

import pytest
import redis

from routing.tables import keys
from routing.tables.store import Admission, Lease, RedisStore, StoreUnavailable, connect

from tests.helpers import free_port, wait_until

TRUNK_A = Lease(keys.trunk_lease("a"), 5, "trunk a")
TRUNK_B = Lease(keys.trunk_lease("b"), 1, "trunk b")
AGENT = Lease(keys.agent_lease("bot"), 1, "agent bot")
UNLIMITED = Lease(keys.trunk_lease("free"), None, "trunk free")


@pytest.fixture
def store(redis_client: redis.Redis) -> RedisStore:
    return RedisStore(redis_client, "n1")


def members(client: redis.Redis, lease: Lease) -> set[str]:
    return set(client.zrange(lease.key, 0, -1))


def redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


# -- admission ----------------------------------------------------------------------


def test_admits_and_records_every_lease(store: RedisStore, redis_client: redis.Redis) -> None:
    assert store.acquire("c1", [TRUNK_A, AGENT], ttl_s=60) == Admission(admitted=True)
    assert members(redis_client, TRUNK_A) == {"n1:c1"}
    assert members(redis_client, AGENT) == {"n1:c1"}


def test_all_or_nothing_when_the_second_lease_is_full(store: RedisStore, redis_client: redis.Redis) -> None:
    assert store.acquire("c1", [AGENT], ttl_s=60).admitted
    admission = store.acquire("c2", [TRUNK_A, AGENT], ttl_s=60, facts={"trunk": "a"})
    assert admission == Admission(admitted=False, full=AGENT, count=1)
    assert members(redis_client, TRUNK_A) == set()  # the first lease was not joined
    assert members(redis_client, AGENT) == {"n1:c1"}
    assert redis_client.exists(keys.call("n1", "c2")) == 0


def test_limit_is_enforced_per_lease(store: RedisStore, redis_client: redis.Redis) -> None:
    lease = Lease(keys.trunk_lease("two"), 2, "trunk two")
    assert store.acquire("c1", [lease], ttl_s=60).admitted
    assert store.acquire("c2", [lease], ttl_s=60).admitted
    assert store.acquire("c3", [lease], ttl_s=60) == Admission(admitted=False, full=lease, count=2)
    zero = Lease(keys.trunk_lease("zero"), 0, "trunk zero")
    assert store.acquire("c4", [zero], ttl_s=60) == Admission(admitted=False, full=zero, count=0)


def test_reacquire_by_the_same_call_is_idempotent(store: RedisStore, redis_client: redis.Redis) -> None:
    assert store.acquire("c1", [TRUNK_B], ttl_s=60).admitted
    assert store.acquire("c1", [TRUNK_B], ttl_s=60).admitted  # retransmission: the one slot is its own
    assert redis_client.zcard(TRUNK_B.key) == 1
    assert not store.acquire("c2", [TRUNK_B], ttl_s=60).admitted


def test_calls_of_different_nodes_never_collide(redis_client: redis.Redis) -> None:
    one, two = RedisStore(redis_client, "n1"), RedisStore(redis_client, "n2")
    assert one.acquire("same-id", [TRUNK_A], ttl_s=60).admitted
    assert two.acquire("same-id", [TRUNK_A], ttl_s=60).admitted
    assert members(redis_client, TRUNK_A) == {"n1:same-id", "n2:same-id"}
    assert one.release("same-id") == 1
    assert members(redis_client, TRUNK_A) == {"n2:same-id"}


def test_unlimited_lease_is_still_counted(store: RedisStore, redis_client: redis.Redis) -> None:
    for i in range(4):
        assert store.acquire(f"c{i}", [UNLIMITED], ttl_s=60).admitted
    assert redis_client.zcard(UNLIMITED.key) == 4
    assert redis_client.hget(keys.call("n1", "c0"), f"lease:{UNLIMITED.key}") == "-1"
    assert store.release("c0") == 1
    assert redis_client.zcard(UNLIMITED.key) == 3


# -- release ------------------------------------------------------------------------


def test_release_returns_the_count_and_is_idempotent(store: RedisStore, redis_client: redis.Redis) -> None:
    assert store.acquire("c1", [TRUNK_A, AGENT], ttl_s=60, facts={"trunk": "a"}).admitted
    assert store.release("c1") == 2
    assert members(redis_client, TRUNK_A) == set()
    assert members(redis_client, AGENT) == set()
    assert redis_client.exists(keys.call("n1", "c1")) == 0
    assert store.release("c1") == 0
    assert store.release("never-seen") == 0
    assert store.acquire("c2", [AGENT], ttl_s=60).admitted  # the slot is free again


def test_fenced_release_voids_an_admission_that_redis_runs_late(store: RedisStore, redis_client: redis.Redis) -> None:
    # redis hung: the worker gave up on acquire and released with a fence; on resume redis may
    # run the queued release before the queued acquire, which must then join nothing
    assert store.release("late", fence_s=10) == 0
    with pytest.raises(StoreUnavailable, match="fenced"):
        store.acquire("late", [TRUNK_A, AGENT], ttl_s=60, facts={"trunk": "a"})
    assert members(redis_client, TRUNK_A) == members(redis_client, AGENT) == set()
    assert redis_client.hgetall(keys.call("n1", "late")) == {"fenced": "1"}
    assert 0 < redis_client.ttl(keys.call("n1", "late")) <= 10
    # the other order: a late acquire that ran first is undone by the fenced release
    assert store.acquire("early", [TRUNK_A], ttl_s=60).admitted
    assert store.release("early", fence_s=10) == 1
    assert members(redis_client, TRUNK_A) == set()


def test_plain_release_leaves_no_fence(store: RedisStore, redis_client: redis.Redis) -> None:
    assert store.acquire("c1", [TRUNK_A], ttl_s=60).admitted
    assert store.release("c1") == 1
    assert redis_client.exists(keys.call("n1", "c1")) == 0
    assert store.acquire("c1", [TRUNK_A], ttl_s=60).admitted


def test_release_then_acquire_swaps_in_one_call(store: RedisStore, redis_client: redis.Redis) -> None:
    assert store.acquire("c1", [AGENT], ttl_s=60).admitted
    assert store.acquire("c1", [Lease(keys.trunk_lease("x"), 1, "trunk x")], ttl_s=60, facts={"trunk": "x"}).admitted
    admission = store.acquire("c1", [TRUNK_B], ttl_s=60, release=[keys.trunk_lease("x")], facts={"trunk": "b"})
    assert admission.admitted
    assert redis_client.zcard(keys.trunk_lease("x")) == 0
    assert members(redis_client, TRUNK_B) == {"n1:c1"}
    record = redis_client.hgetall(keys.call("n1", "c1"))
    assert f"lease:{keys.trunk_lease('x')}" not in record
    assert record[f"lease:{TRUNK_B.key}"] == "1"
    assert record[f"lease:{AGENT.key}"] == "1"  # the agent slot is untouched
    assert record["trunk"] == "b"
    assert store.acquire("c2", [Lease(keys.trunk_lease("x"), 1, "trunk x")], ttl_s=60).admitted
    assert store.release("c1") == 2


def test_swap_onto_a_full_lease_still_leaves_the_old_one(store: RedisStore, redis_client: redis.Redis) -> None:
    """CallPlan.advance forgets the held lease after any swap attempt; redis must agree."""
    assert store.acquire("other", [TRUNK_B], ttl_s=60).admitted
    assert store.acquire("c1", [TRUNK_A], ttl_s=60).admitted
    admission = store.acquire("c1", [TRUNK_B], ttl_s=60, release=[TRUNK_A.key])
    assert admission == Admission(admitted=False, full=TRUNK_B, count=1)
    assert members(redis_client, TRUNK_A) == set()
    assert f"lease:{TRUNK_A.key}" not in redis_client.hgetall(keys.call("n1", "c1"))


# -- expiry and the call record -------------------------------------------------------------


def test_expired_lease_is_pruned_and_a_new_call_admitted(store: RedisStore, redis_client: redis.Redis) -> None:
    assert store.acquire("lost-bye", [TRUNK_B], ttl_s=1).admitted
    expiry = redis_client.zscore(TRUNK_B.key, "n1:lost-bye")
    assert expiry is not None
    assert not store.acquire("c2", [TRUNK_B], ttl_s=60).admitted
    wait_until(lambda: store.acquire("c2", [TRUNK_B], ttl_s=60).admitted, timeout=5, what="expired lease pruned")
    assert redis_now(redis_client) >= expiry  # admitted because redis' clock passed the lease expiry
    assert members(redis_client, TRUNK_B) == {"n1:c2"}


def test_call_record_holds_facts_and_expires(store: RedisStore, redis_client: redis.Redis) -> None:
    before = redis_now(redis_client)
    facts = {"direction": "termination", "agent": "bot", "number": "+14155550100"}
    assert store.acquire("c1", [TRUNK_A, UNLIMITED], ttl_s=30, facts=facts).admitted
    record = redis_client.hgetall(keys.call("n1", "c1"))
    assert record == {**facts, f"lease:{TRUNK_A.key}": "5", f"lease:{UNLIMITED.key}": "-1"}
    ttl = redis_client.ttl(keys.call("n1", "c1"))
    assert 25 < ttl <= 30  # the call record lives as long as its leases: an abandoned admission leaves no call
    for lease in (TRUNK_A, UNLIMITED):
        assert 0 < redis_client.ttl(lease.key) <= 90
        score = redis_client.zscore(lease.key, "n1:c1")
        assert before + 29 <= score <= redis_now(redis_client) + 30


def test_answer_extends_the_admission_leases_and_record(store: RedisStore, redis_client: redis.Redis) -> None:
    """The admission's short lease (as long as the call may ring) becomes the answered call's
    long one: every lease score and the record's TTL move to now + extend_s."""
    assert store.acquire("c1", [TRUNK_A, UNLIMITED], ttl_s=30).admitted
    assert store.update_call("c1", {"answer_ms": "1"}, extend_s=3600)
    now = redis_now(redis_client)
    for lease in (TRUNK_A, UNLIMITED):
        assert now + 3590 <= redis_client.zscore(lease.key, "n1:c1") <= now + 3600
        assert 3600 < redis_client.ttl(lease.key) <= 3660
    assert 3590 < redis_client.ttl(keys.call("n1", "c1")) <= 3600
    assert redis_client.hget(keys.call("n1", "c1"), "answer_ms") == "1"


def test_answer_of_a_released_call_rejoins_nothing(store: RedisStore, redis_client: redis.Redis) -> None:
    assert store.acquire("c1", [TRUNK_A], ttl_s=30).admitted
    store.release("c1")
    assert not store.update_call("c1", {"answer_ms": "1"}, extend_s=3600)
    assert members(redis_client, TRUNK_A) == set()
    assert not redis_client.exists(keys.call("n1", "c1"))


def test_a_short_admission_never_shortens_the_slot_set_of_a_long_call(store: RedisStore,
                                                                      redis_client: redis.Redis) -> None:
    """An answered call's lease lasts hours; admissions after it (short leases) must not make the
    ZSET expire under it, or its slot would stop counting."""
    assert store.acquire("c1", [TRUNK_A], ttl_s=30).admitted
    assert store.update_call("c1", {}, extend_s=3600)
    assert store.acquire("c2", [TRUNK_A], ttl_s=30).admitted
    assert redis_client.ttl(TRUNK_A.key) > 3600


# -- CPS token bucket ------------------------------------------------------------------------


def paced(name: str, cps: float, limit: int | None = None) -> Lease:
    return Lease(keys.trunk_lease(name), limit, f"trunk {name}", cps, keys.trunk_cps(name))


def test_cps_bucket_admits_a_burst_of_rate_then_paces(store: RedisStore, redis_client: redis.Redis) -> None:
    lease = paced("p", 2.0)
    assert store.acquire("c1", [lease], ttl_s=60).admitted
    assert store.acquire("c2", [lease], ttl_s=60).admitted
    refused = store.acquire("c3", [lease], ttl_s=60)
    assert not refused.admitted and refused.paced and refused.full == lease
    assert 0 < refused.wait_ms <= 500  # one token every 0.5 s
    assert (refused.tag, refused.reason) == ("trunk_cps", "Trunk CPS Limit Reached: p")
    assert refused.retry_after_s(7) == 1
    assert members(redis_client, lease) == {"n1:c1", "n1:c2"}
    assert 0 < redis_client.pttl(keys.trunk_cps("p")) <= 2000


def test_cps_reacquire_and_refusal_take_no_token(store: RedisStore, redis_client: redis.Redis) -> None:
    lease = paced("p", 1.0)
    blocker = Lease(keys.agent_lease("busy"), 0, "agent busy")
    assert store.acquire("c1", [lease, blocker], ttl_s=60).full == blocker  # refused: no token spent
    assert store.acquire("c1", [lease], ttl_s=60).admitted  # the bucket's one token
    assert store.acquire("c1", [lease], ttl_s=60).admitted  # retransmission: no new token needed
    assert store.acquire("c2", [lease], ttl_s=60).paced


def test_cps_refills_over_time(store: RedisStore) -> None:
    lease = paced("p", 5.0, limit=100)
    for i in range(5):
        assert store.acquire(f"burst{i}", [lease], ttl_s=60).admitted
    assert store.acquire("late", [lease], ttl_s=60).paced
    wait_until(lambda: store.acquire("late", [lease], ttl_s=60).admitted, timeout=5, what="a CPS token refilled")


def test_concurrency_limit_is_checked_before_cps(store: RedisStore) -> None:
    lease = paced("p", 10.0, limit=1)
    assert store.acquire("c1", [lease], ttl_s=60).admitted
    refused = store.acquire("c2", [lease], ttl_s=60)
    assert (refused.paced, refused.count, refused.tag) == (False, 1, "trunk_limit")


# -- failing fast -----------------------------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP socket that accepts connections (kernel backlog) but never answers: a hung redis."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


OPERATIONS: dict[str, Callable[[RedisStore], object]] = {
    "acquire": lambda s: s.acquire("c1", [TRUNK_A], ttl_s=60),
    "release": lambda s: s.release("c1"),
    "topology": lambda s: s.topology(),
    "did": lambda s: s.did("+14155550100"),
    "routes": lambda s: s.routes("+14155550100"),
}


def _assert_fails_fast(port: int, operation: str) -> None:
    """Run the operation in a daemon thread so a missing timeout fails the test instead of hanging it."""
    client = connect("127.0.0.1", port, timeout_ms=200, connect_timeout_ms=200)
    store = RedisStore(client, "n1")
    outcome: dict[str, object] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            OPERATIONS[operation](store)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc
        outcome["elapsed"] = time.monotonic() - started

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=3)
    assert not worker.is_alive(), f"{operation} still blocked after 3 s: no socket timeout"
    client.close()
    assert isinstance(outcome.get("error"), StoreUnavailable), outcome
    assert outcome["elapsed"] < 0.5, f"{operation} took {outcome['elapsed']:.3f}s"


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_closed_port_raises_store_unavailable_quickly(operation: str) -> None:
    _assert_fails_fast(free_port(), operation)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_silent_server_raises_store_unavailable_quickly(silent_server: int, operation: str) -> None:
    _assert_fails_fast(silent_server, operation)


def test_finish_many_releases_every_call_in_one_write_even_after_a_script_flush(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client, "n1")
    trunk = Lease(keys.trunk_lease("t"), 5, "trunk t")
    for call_id in ("c1", "c2"):
        assert store.acquire(call_id, [trunk], 60, facts={"trunk": "t"}).admitted
    assert redis_client.zcard(keys.trunk_lease("t")) == 2
    redis_client.script_flush()  # redis restarted: NOSCRIPT, reloaded through redis-py's script object
    hashes = store.finish_many([("c1", {"media_mos_caller": "4.3"}), ("c2", {}), ("gone", {})], keep_s=60)
    assert [h.get("trunk") for h in hashes] == ["t", "t", None]  # an unknown call: an empty hash
    assert redis_client.zcard(keys.trunk_lease("t")) == 0
    assert redis_client.hget(keys.media("n1", "c1"), "media_mos_caller") == "4.3"
    assert store.finish_many([]) == []
