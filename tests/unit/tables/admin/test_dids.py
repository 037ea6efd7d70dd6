"""routing.tables.admin.dids against a real redis: round trips, dangling references, replace, removal."""

from __future__ import annotations

import pytest
import redis

from routing.tables import admin, keys
from routing.tables.model import Agent, DataError, Did, Trunk
from routing.tables.model.did import parse_fallback
from routing.tables.store import RedisStore
from tests.unit.tables.samples import make_agent, version


def test_did_round_trip(peers: redis.Redis) -> None:
    written = admin.put_did(peers, Did("+14155550100", "telnyx", "bot"))

    assert peers.hgetall(keys.did("+14155550100")) == {"trunk": "telnyx", "agent": "bot"}
    assert peers.smembers(keys.DIDS) == {"+14155550100"}
    assert admin.get_did(peers, "+14155550100") == written
    assert admin.list_dids(peers) == [written]
    assert RedisStore(peers, "n1").did("+14155550100") == written


@pytest.mark.parametrize(
    ("did", "message"),
    [
        (Did("+14155550100", "ghost", "bot"), r"^no trunk 'ghost'$"),
        (Did("+14155550100", "telnyx", "ghost"), r"^no agent 'ghost'$"),
        (Did("14155550100", "telnyx", "bot"), r"not an E\.164 number"),
    ],
)
def test_dangling_or_bad_did_refused(peers: redis.Redis, did: Did, message: str) -> None:
    before = version(peers)
    with pytest.raises(DataError, match=message):
        admin.put_did(peers, did)
    assert peers.smembers(keys.DIDS) == set()
    assert not peers.exists(keys.did(did.number))
    assert version(peers) == before


def test_duplicate_did_needs_replace(peers: redis.Redis) -> None:
    admin.put_agent(peers, make_agent("bot2", cidrs=()))
    admin.put_did(peers, Did("+14155550100", "telnyx", "bot"))

    with pytest.raises(DataError, match=r"did \+14155550100 already exists"):
        admin.put_did(peers, Did("+14155550100", "telnyx", "bot2"))
    admin.put_did(peers, Did("+14155550100", "telnyx", "bot2"), replace=True)

    assert admin.get_did(peers, "+14155550100") == Did("+14155550100", "telnyx", "bot2")


def test_remove_did(peers: redis.Redis) -> None:
    admin.put_did(peers, Did("+14155550100", "telnyx", "bot"))
    admin.remove_did(peers, "+14155550100")
    assert admin.list_dids(peers) == []
    assert not peers.exists(keys.did("+14155550100"))
    with pytest.raises(DataError, match=r"no did '\+14155550100'"):
        admin.remove_did(peers, "+14155550100")


def test_did_fallback_round_trips_and_names_existing_agents_only(redis_client: redis.Redis) -> None:
    admin.put_trunk(redis_client, Trunk("telnyx"))
    admin.put_agent(redis_client, Agent("bot", ("sip:bot@203.0.113.20",)))
    admin.put_agent(redis_client, Agent("humans", ("sip:queue@203.0.113.30",)))
    steps = parse_fallback("agent:humans, uri:sip:vm@pbx.example.com", "test")
    admin.put_did(redis_client, Did("+14155550100", "telnyx", "bot", steps))
    assert redis_client.hget(keys.did("+14155550100"), "fallback") == "agent:humans,uri:sip:vm@pbx.example.com"
    assert admin.get_did(redis_client, "+14155550100").fallback == steps  # type: ignore[union-attr]
    with pytest.raises(DataError, match="no fallback agent 'nobody'"):
        admin.put_did(redis_client, Did("+14155550101", "telnyx", "bot", parse_fallback("agent:nobody", "t")))
    assert not redis_client.exists(keys.did("+14155550101"))


@pytest.mark.parametrize("text", ["voicemail:x", "agent:", "agent:bad name", "uri:mailto:x@y", "number:+1",
                                  "announce:../etc/passwd", "announce:a/b", "announce:closed,agent:humans"])
def test_bad_fallback_steps_name_the_field(text: str) -> None:
    with pytest.raises(DataError, match="edge:did:\\+14155550100 fallback"):
        Did.from_redis("+14155550100", {"trunk": "t", "agent": "a", "fallback": text})


def test_an_announcement_ends_the_fallback_and_names_its_file() -> None:
    did = Did.from_redis("+14155550100", {"trunk": "t", "agent": "a", "fallback": "agent:humans,announce:closed-en.v2"})
    assert [str(s) for s in did.fallback] == ["agent:humans", "announce:closed-en.v2"]
    assert did.announcement == "closed-en.v2"
    assert Did("+14155550100", "t", "a", parse_fallback("agent:humans", "t")).announcement == ""
    with pytest.raises(DataError, match="must be the last step"):
        parse_fallback("announce:closed,number:+14155550199", "t")
