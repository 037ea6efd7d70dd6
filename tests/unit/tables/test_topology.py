"""The one reader of trunks and agents: the call path's topology and edgectl's reads agree."""

from __future__ import annotations

import redis

from routing.tables import admin, keys
from routing.tables.store import RedisStore
from routing.tables.topology import read_topology

from .samples import make_agent, make_trunk


def test_store_and_admin_read_the_same_trunks_and_agents(redis_client: redis.Redis) -> None:
    trunk = admin.put_trunk(redis_client, make_trunk())
    agent = admin.put_agent(redis_client, make_agent())

    topology = RedisStore(redis_client, "n1").topology()

    assert topology.trunks == {"telnyx": trunk} and topology.agents == {"bot": agent}
    assert admin.list_trunks(redis_client) == [trunk] and admin.get_agent(redis_client, "bot") == agent


def test_a_name_whose_keys_are_gone_is_absent_not_an_error(redis_client: redis.Redis) -> None:
    redis_client.sadd(keys.TRUNKS, "ghost")
    redis_client.sadd(keys.AGENTS, "phantom")

    assert read_topology(redis_client, ["ghost"], ["phantom"]).trunks == {}
    assert read_topology(redis_client, ["ghost"], ["phantom"]).agents == {}


def test_no_names_read_nothing(redis_client: redis.Redis) -> None:
    topology = read_topology(redis_client)
    assert topology.trunks == {} and topology.agents == {}
