"""routing.tables.reglock against a real redis: one holder, renewal, takeover after expiry."""

from __future__ import annotations

import redis

from routing.tables import keys, reglock


def test_one_node_holds_the_lock_renews_it_and_another_takes_it_when_it_runs_out(redis_client: redis.Redis) -> None:
    assert reglock.hold(redis_client, "edge-a", "carrier", 30) == "edge-a"
    assert reglock.hold(redis_client, "edge-b", "carrier", 30) == "edge-a"  # b stands by
    redis_client.expire(keys.registration_lock("carrier"), 5)
    assert reglock.hold(redis_client, "edge-a", "carrier", 30) == "edge-a"
    assert redis_client.ttl(keys.registration_lock("carrier")) > 5  # renewed by its holder
    redis_client.delete(keys.registration_lock("carrier"))  # a dies: its lock runs out
    assert reglock.hold(redis_client, "edge-b", "carrier", 30) == "edge-b"
