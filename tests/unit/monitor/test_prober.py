"""The gateway prober on a real redis: a round marks gateways down, skips unprobed trunks, bumps
``edge:version`` and forgets trunks no longer probed; probes leave from the edge's address."""

from __future__ import annotations

import redis

from routing.monitor import prober
from routing.monitor.health import DOWN, UP
from routing.monitor.sipprobe import ProbeResult
from routing.ops.settings import Settings
from routing.tables import admin, keys
from routing.tables.model import Direction, Gateway, Trunk


def settings(**health: object) -> Settings:
    return Settings.model_validate({"health": {"down_after": 2, "up_after": 1, "timeout_ms": 100, **health}})


def test_probe_round_marks_down_skips_unprobed_and_bumps_version(redis_client: redis.Redis) -> None:
    admin.put_trunk(redis_client, Trunk("a", Direction.BOTH, gateways=(Gateway("192.0.2.1"), Gateway("192.0.2.2"))))
    admin.put_trunk(redis_client, Trunk("quiet", Direction.BOTH, gateways=(Gateway("192.0.2.3"),), probe=False))
    answers = {"192.0.2.1": ProbeResult(200, "OK", 2.0), "192.0.2.2": ProbeResult(0, "timeout", None)}
    sent: list[tuple[str, str]] = []

    def send(host: str, port: int, **kw: object) -> ProbeResult:
        sent.append((host, str(kw["transport"])))
        return answers[host]

    version = int(redis_client.get(keys.VERSION) or 0)
    first = prober.probe_round(redis_client, settings(), send=send)
    assert sorted(sent) == [("192.0.2.1", "udp"), ("192.0.2.2", "udp")]  # "quiet" is never probed
    assert first["a"]["192.0.2.2:5060"].state == UP and first["a"]["192.0.2.2:5060"].fails == 1
    assert redis_client.smembers(keys.GATEWAYS_DOWN) == set()
    prober.probe_round(redis_client, settings(), send=send)
    assert redis_client.smembers(keys.GATEWAYS_DOWN) == {"a/192.0.2.2:5060"}
    assert int(redis_client.get(keys.VERSION)) == version + 1
    stored = prober.read_health(redis_client, ["a"])["a"]
    assert stored["192.0.2.1:5060"].rtt_ms == 2.0 and stored["192.0.2.2:5060"].state == DOWN
    # recovery after up_after=1 success; the version moves again
    answers["192.0.2.2"] = ProbeResult(404, "Not Found", 3.0)
    prober.probe_round(redis_client, settings(), send=send)
    assert redis_client.smembers(keys.GATEWAYS_DOWN) == set()
    assert int(redis_client.get(keys.VERSION)) == version + 2


def test_probe_round_forgets_trunks_no_longer_probed(redis_client: redis.Redis) -> None:
    trunk = Trunk("a", Direction.BOTH, gateways=(Gateway("192.0.2.1"),))
    admin.put_trunk(redis_client, trunk)
    dead = lambda host, port, **kw: ProbeResult(0, "timeout", None)  # noqa: E731
    for _ in range(2):
        prober.probe_round(redis_client, settings(), send=dead)
    assert redis_client.smembers(keys.GATEWAYS_DOWN) == {"a/192.0.2.1:5060"}
    admin.put_trunk(redis_client, Trunk("a", Direction.BOTH, gateways=trunk.gateways, probe=False), replace=True)
    prober.probe_round(redis_client, settings(), send=dead)
    assert redis_client.smembers(keys.GATEWAYS_DOWN) == set()
    assert not redis_client.exists(keys.gateway_health("a"))


def test_probes_leave_from_the_edge_address_per_transport() -> None:
    s = Settings.model_validate({"sip": {"listen": [
        {"transport": "udp", "address": "127.0.0.5"}, {"transport": "tcp", "address": "0.0.0.0"}]}})
    assert prober.source_address(s, "udp") == "127.0.0.5"
    assert prober.source_address(s, "tcp") is None
    assert prober.source_address(s, "tls") == "127.0.0.5"


def test_trunk_removed_during_a_round_gets_no_health(redis_client: redis.Redis) -> None:
    admin.put_trunk(redis_client, Trunk("a", Direction.BOTH, gateways=(Gateway("192.0.2.1"), Gateway("192.0.2.2"))))
    admin.put_trunk(redis_client, Trunk("b", Direction.BOTH, gateways=(Gateway("192.0.2.3"),)))

    def send(host: str, port: int, **kw: object) -> ProbeResult:
        if host == "192.0.2.1":  # while the probes run, ops remove trunk b and a gateway of a
            admin.remove_trunk(redis_client, "b")
            admin.put_trunk(redis_client, Trunk("a", Direction.BOTH, gateways=(Gateway("192.0.2.1"),)), replace=True)
        return ProbeResult(0, "timeout", None)

    written = prober.probe_round(redis_client, settings(down_after=1), send=send)
    assert set(written) == {"a"} and set(written["a"]) == {"192.0.2.1:5060"}
    assert not redis_client.exists(keys.gateway_health("b"))
    assert redis_client.smembers(keys.GATEWAYS_DOWN) == {"a/192.0.2.1:5060"}
