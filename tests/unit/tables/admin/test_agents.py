"""routing.tables.admin.agents against a real redis: round trips, refusals, removal."""

from __future__ import annotations

import pytest
import redis

from routing.tables import admin, keys
from routing.tables.model import Agent, DataError, Did
from routing.tables.store import RedisStore
from tests.unit.tables.samples import all_keys, make_agent


def test_agent_round_trip_keeps_uri_order(redis_client: redis.Redis) -> None:
    agent = make_agent(uris=("sip:z@203.0.113.9", "sip:a@203.0.113.8", "sips:m@agent.example.com:5061"))

    written = admin.put_agent(redis_client, agent)

    assert written.uris == agent.uris
    assert redis_client.lrange(keys.agent_uris("bot"), 0, -1) == list(agent.uris)
    assert admin.get_agent(redis_client, "bot") == written
    assert admin.list_agents(redis_client) == [written]
    assert RedisStore(redis_client, "n1").topology().agents == {"bot": written}


def test_replace_agent_rewrites_uri_list(redis_client: redis.Redis) -> None:
    admin.put_agent(redis_client, make_agent())
    admin.put_agent(redis_client, make_agent(uris=("sip:new@203.0.113.30",), cidrs=(), max_calls=None), replace=True)

    assert redis_client.lrange(keys.agent_uris("bot"), 0, -1) == ["sip:new@203.0.113.30"]
    assert not redis_client.exists(keys.agent_cidrs("bot"))
    assert redis_client.hgetall(keys.agent("bot")) == {"max_calls": "", "allow_prefixes": "", "deny_prefixes": "",
                                                          "x_headers": "", "trust_identity": "no", "dtmf": "",
                                                          "codecs": "", "ptime_ms": "", "srtp": "", "rtp_timeout_s": "",
                                                          "sip_keepalive": "", "fill_silence": "",
                                                          "country_code": "", "national_prefix": "",
                                                          "international_prefix": "00", "national_length": "0",
                                                          "transfer_hosts": "", "probe": "yes", "answer_timeout_ms": "", "hold_answer_ms": "",
                                                          "caller_id": "", "caller_ids": "", "present_dids": "no"}


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        (make_agent(uris=("http://bot",)), r"agent 'bot' uri: not a SIP URI"),
        (make_agent(uris=("sip:a@203.0.113.1", "sip:a@203.0.113.1")), r"uri 'sip:a@203\.0\.113\.1': listed twice"),
        (make_agent(cidrs=("nonsense",)), r"agent 'bot' cidr"),
        (make_agent(max_calls=-2), r"agent 'bot' max_calls: must be >= 0"),
    ],
)
def test_invalid_agent_refused(redis_client: redis.Redis, agent: Agent, message: str) -> None:
    with pytest.raises(DataError, match=message):
        admin.put_agent(redis_client, agent)
    assert all_keys(redis_client) == set()


def test_duplicate_agent_refused(redis_client: redis.Redis) -> None:
    admin.put_agent(redis_client, make_agent())
    with pytest.raises(DataError, match=r"agent 'bot' already exists"):
        admin.put_agent(redis_client, make_agent(max_calls=1))
    assert admin.get_agent(redis_client, "bot").max_calls == 4  # type: ignore[union-attr]


def test_agent_removal_refused_while_bound(peers: redis.Redis) -> None:
    admin.put_did(peers, Did("+14155550100", "telnyx", "bot"))
    with pytest.raises(DataError, match=r"^agent 'bot' is still bound to DIDs \+14155550100; remove them first$"):
        admin.remove_agent(peers, "bot")
    assert admin.get_agent(peers, "bot") is not None
    admin.remove_did(peers, "+14155550100")
    admin.remove_agent(peers, "bot")
    assert peers.smembers(keys.AGENTS) == set()
    assert not any(k.startswith(keys.agent("bot")) for k in all_keys(peers))
