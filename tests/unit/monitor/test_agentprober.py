"""The agent URI prober on a real redis: a round marks URIs down with hysteresis, skips agents not
probed, bumps ``edge:version`` so the call path's topology carries the down set, and forgets
agents no longer probed; URIs are reached at their host, port and transport."""

from __future__ import annotations

import pytest
import redis

from routing.monitor import agentprober
from routing.monitor.health import DOWN, UP
from routing.monitor.sipprobe import ProbeResult
from routing.ops.settings import Settings
from routing.tables import admin, keys
from routing.tables.model import Agent, DataError
from routing.tables.store import RedisStore


def settings(**health: object) -> Settings:
    return Settings.model_validate({"health": {"down_after": 2, "up_after": 1, "timeout_ms": 100, **health}})


@pytest.mark.parametrize(("uri", "target"), [
    ("sip:agent.example.com:5080", ("agent.example.com", 5080, "udp")),
    ("sip:bot@10.9.0.2;transport=tcp", ("10.9.0.2", 5060, "tcp")),
    ("sips:bot@agents.example.com", ("agents.example.com", 5061, "tls")),
    ("sip:bot@[2001:db8::5]:5070;transport=TLS", ("[2001:db8::5]", 5070, "tls")),
])
def test_uri_target(uri: str, target: tuple[str, int, str]) -> None:
    assert agentprober.uri_target(uri) == target


def test_uri_target_refuses_what_is_no_sip_uri() -> None:
    with pytest.raises(DataError):
        agentprober.uri_target("tel:+14155550100")


def test_round_marks_uris_down_skips_unprobed_agents_and_feeds_the_call_path(redis_client: redis.Redis) -> None:
    admin.put_agent(redis_client, Agent("bot", ("sip:127.0.0.21:5090", "sip:bot@127.0.0.22:5090;transport=tcp")))
    admin.put_agent(redis_client, Agent("quiet", ("sip:127.0.0.23:5090",), probe=False))
    answers = {"127.0.0.21": ProbeResult(0, "timeout", None), "127.0.0.22": ProbeResult(200, "OK", 1.5)}
    sent: list[tuple[str, int, str]] = []

    def send(host: str, port: int, **kw: object) -> ProbeResult:
        sent.append((host, port, str(kw["transport"])))
        return answers[host]

    version = int(redis_client.get(keys.VERSION) or 0)
    first = agentprober.probe_agents_round(redis_client, settings(), send=send)
    assert sorted(sent) == [("127.0.0.21", 5090, "udp"), ("127.0.0.22", 5090, "tcp")]  # "quiet" never probed
    assert first["bot"]["sip:127.0.0.21:5090"].state == UP  # one failure: not yet down (down_after=2)
    agentprober.probe_agents_round(redis_client, settings(), send=send)
    assert redis_client.smembers(keys.AGENTS_DOWN) == {"bot/sip:127.0.0.21:5090"}
    assert int(redis_client.get(keys.VERSION)) == version + 1
    assert RedisStore(redis_client, "n1").topology().agents_down == {"bot/sip:127.0.0.21:5090"}
    stored = agentprober.read_agent_health(redis_client, ["bot"])["bot"]
    assert stored["sip:127.0.0.21:5090"].state == DOWN and stored["sip:bot@127.0.0.22:5090;transport=tcp"].rtt_ms == 1.5
    answers["127.0.0.21"] = ProbeResult(405, "Method Not Allowed", 2.0)  # any answer but 408/5xx: alive
    agentprober.probe_agents_round(redis_client, settings(), send=send)
    assert redis_client.smembers(keys.AGENTS_DOWN) == set()
    assert int(redis_client.get(keys.VERSION)) == version + 2


def test_round_forgets_agents_no_longer_probed(redis_client: redis.Redis) -> None:
    agent = Agent("bot", ("sip:127.0.0.21:5090",))
    admin.put_agent(redis_client, agent)
    dead = lambda host, port, **kw: ProbeResult(0, "timeout", None)  # noqa: E731
    for _ in range(2):
        agentprober.probe_agents_round(redis_client, settings(), send=dead)
    assert redis_client.smembers(keys.AGENTS_DOWN) == {"bot/sip:127.0.0.21:5090"}
    admin.put_agent(redis_client, Agent("bot", agent.uris, probe=False), replace=True)
    agentprober.probe_agents_round(redis_client, settings(), send=dead)
    assert redis_client.smembers(keys.AGENTS_DOWN) == set()
    assert not redis_client.exists(keys.agent_health("bot"))
