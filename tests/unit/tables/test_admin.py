"""routing.tables.admin against a real redis: round trips, refusals, atomicity, version bumps."""

from __future__ import annotations

from decimal import Decimal

import pytest
import redis

from routing.tables import admin, keys
from routing.tables.model import Agent, DataError, Did, Direction, Gateway, RouteEntry, Transport, Trunk
from routing.call.numbers import NumberFormat
from routing.tables.store import RedisStore


def make_trunk(name: str = "telnyx", **overrides: object) -> Trunk:
    values: dict[str, object] = dict(
        name=name,
        direction=Direction.BOTH,
        max_calls=20,
        cidrs=("192.0.2.0/24", "198.51.100.7"),
        gateways=(
            Gateway("192.0.2.10", 5060, Transport.UDP, 10, 100),
            Gateway("sip.example.net", 5061, Transport.TCP, 20, 50),
        ),
        number_format=NumberFormat(country_code="1", national_length=10, international_prefix="011"),
    )
    values.update(overrides)
    return Trunk(**values)  # type: ignore[arg-type]


def make_agent(name: str = "bot", **overrides: object) -> Agent:
    values: dict[str, object] = dict(
        name=name,
        uris=("sip:bot@203.0.113.20:5070", "sip:203.0.113.5;transport=tcp"),
        cidrs=("203.0.113.0/28",),
        max_calls=4,
    )
    values.update(overrides)
    return Agent(**values)  # type: ignore[arg-type]


def version(client: redis.Redis) -> int:
    return int(client.get(keys.VERSION) or 0)


def all_keys(client: redis.Redis) -> set[str]:
    return set(client.keys("*"))


# --------------------------------------------------------------------------- trunks


def test_trunk_round_trip_matches_call_path_view(redis_client: redis.Redis) -> None:
    written = admin.put_trunk(redis_client, make_trunk())

    assert written.cidrs == ("192.0.2.0/24", "198.51.100.7/32")  # canonical CIDRs
    assert [g.address for g in written.gateways] == ["192.0.2.10:5060", "sip.example.net:5061"]
    assert admin.get_trunk(redis_client, "telnyx") == written
    assert admin.list_trunks(redis_client) == [written]
    assert RedisStore(redis_client, "n1").topology().trunks == {"telnyx": written}


def test_trunk_redis_text_form(redis_client: redis.Redis) -> None:
    admin.put_trunk(redis_client, make_trunk(max_calls=None))

    assert redis_client.hgetall(keys.trunk("telnyx")) == {
        "direction": "both",
        "max_calls": "",
        "country_code": "1",
        "national_prefix": "",
        "international_prefix": "011",
        "national_length": "10",
        "max_cps": "",
        "max_duration_s": "",
        "allow_prefixes": "",
        "deny_prefixes": "",
        "auth": "ip",
        "x_headers": "",
        "trust_identity": "yes",
        "probe": "yes",
        "dtmf": "",
        "billing_increment": "1/1",
        "max_rate": "",
        "daily_spend_cap": "",
        "inbound_rate": "",
        "codecs": "",
        "ptime_ms": "",
        "srtp": "",
        "rtp_timeout_s": "",
        "sip_keepalive": "",
        "fill_silence": "",
    }
    assert redis_client.hgetall(keys.trunk_gateways("telnyx")) == {
        "192.0.2.10:5060": "transport=udp;priority=10;weight=100",
        "sip.example.net:5061": "transport=tcp;priority=20;weight=50",
    }
    assert redis_client.smembers(keys.trunk_cidrs("telnyx")) == {"192.0.2.0/24", "198.51.100.7/32"}
    assert redis_client.smembers(keys.TRUNKS) == {"telnyx"}
    assert redis_client.get(keys.SCHEMA) == keys.SCHEMA_VERSION


def test_duplicate_trunk_refused_and_unchanged(redis_client: redis.Redis) -> None:
    first = admin.put_trunk(redis_client, make_trunk())
    before = version(redis_client)

    with pytest.raises(DataError, match=r"trunk 'telnyx' already exists .*--replace"):
        admin.put_trunk(redis_client, make_trunk(max_calls=1, cidrs=("10.9.0.0/16",)))

    assert admin.get_trunk(redis_client, "telnyx") == first
    assert version(redis_client) == before


def test_replace_rewrites_trunk_completely(redis_client: redis.Redis) -> None:
    admin.put_trunk(redis_client, make_trunk())
    new = make_trunk(
        direction=Direction.INBOUND,
        max_calls=None,
        cidrs=("10.1.0.0/16",),
        gateways=(Gateway("192.0.2.99", 5080, Transport.TCP, 0, 1),),
        number_format=NumberFormat(),
    )

    written = admin.put_trunk(redis_client, new, replace=True)

    assert redis_client.smembers(keys.trunk_cidrs("telnyx")) == {"10.1.0.0/16"}
    assert redis_client.hgetall(keys.trunk_gateways("telnyx")) == {"192.0.2.99:5080": "transport=tcp;priority=0;weight=1"}
    assert RedisStore(redis_client, "n1").topology().trunks["telnyx"] == written
    assert written.max_calls is None and written.direction is Direction.INBOUND


@pytest.mark.parametrize(
    ("trunk", "message"),
    [
        (make_trunk(name="bad name"), r"trunk name 'bad name'"),
        (make_trunk(cidrs=("10.0.0.300/24",)), r"trunk 'telnyx' cidr: .*10\.0\.0\.300/24"),
        (make_trunk(cidrs=("10.0.0.1/24",)), r"trunk 'telnyx' cidr: .*host bits set"),
        (make_trunk(gateways=(Gateway("192.0.2.1", 70000),)), r"gateway 192\.0\.2\.1:70000 port: must be <= 65535"),
        (make_trunk(gateways=(Gateway("bad host!", 5060),)), r"bad host 'bad host!'"),
        (make_trunk(gateways=(Gateway("192.0.2.1", 5060, weight=0),)), r"weight: must be >= 1"),
        (make_trunk(gateways=(Gateway("192.0.2.1"), Gateway("192.0.2.1", 5060, Transport.TCP))), r"listed twice"),
        (make_trunk(max_calls=-1), r"trunk 'telnyx' max_calls: must be >= 0"),
        (make_trunk(direction="sideways"), r"trunk 'telnyx' direction: must be one of inbound, outbound, both"),
    ],
)
def test_invalid_trunk_refused_before_any_write(redis_client: redis.Redis, trunk: Trunk, message: str) -> None:
    with pytest.raises(DataError, match=message):
        admin.put_trunk(redis_client, trunk)
    assert all_keys(redis_client) == set()


def test_cidr_claimed_by_another_peer_refused(redis_client: redis.Redis) -> None:
    admin.put_agent(redis_client, make_agent(cidrs=("192.0.2.0/24",)))

    with pytest.raises(DataError, match=r"trunk 'telnyx' cidr 192\.0\.2\.0/24: already belongs to agent 'bot'"):
        admin.put_trunk(redis_client, make_trunk())
    assert admin.get_trunk(redis_client, "telnyx") is None


def test_replacing_own_cidrs_is_not_a_conflict(redis_client: redis.Redis) -> None:
    admin.put_trunk(redis_client, make_trunk())
    written = admin.put_trunk(redis_client, make_trunk(max_calls=3), replace=True)
    assert written.cidrs == ("192.0.2.0/24", "198.51.100.7/32") and written.max_calls == 3


def test_remove_missing_trunk(redis_client: redis.Redis) -> None:
    with pytest.raises(DataError, match=r"^no trunk 'ghost'$"):
        admin.remove_trunk(redis_client, "ghost")
    assert version(redis_client) == 0


def test_remove_trunk_deletes_every_key(redis_client: redis.Redis) -> None:
    admin.put_trunk(redis_client, make_trunk())
    admin.put_trunk(redis_client, make_trunk("twilio", cidrs=("10.2.0.0/16",)))

    admin.remove_trunk(redis_client, "telnyx")

    assert not any(k.startswith(keys.trunk("telnyx")) for k in all_keys(redis_client))
    assert redis_client.smembers(keys.TRUNKS) == {"twilio"}
    assert admin.get_trunk(redis_client, "telnyx") is None
    assert list(RedisStore(redis_client, "n1").topology().trunks) == ["twilio"]


# --------------------------------------------------------------------------- agents


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
                                                          "international_prefix": "00", "national_length": "0"}


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


# --------------------------------------------------------------------------- DIDs


@pytest.fixture
def peers(redis_client: redis.Redis) -> redis.Redis:
    admin.put_trunk(redis_client, make_trunk())
    admin.put_agent(redis_client, make_agent())
    return redis_client


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


# --------------------------------------------------------------------------- routes


def test_route_round_trip_and_lcr_order(peers: redis.Redis) -> None:
    admin.put_trunk(peers, make_trunk("twilio", cidrs=("10.2.0.0/16",)))
    a = admin.put_route(peers, RouteEntry("+1415", "telnyx", Decimal("0.0045"), 10))
    b = admin.put_route(peers, RouteEntry("+1415", "twilio", Decimal("0.0040"), 20))
    c = admin.put_route(peers, RouteEntry("+", "telnyx", Decimal("0.02")))

    assert peers.hgetall(keys.route("+1415")) == {"telnyx": "rate=0.0045;priority=10", "twilio": "rate=0.0040;priority=20"}
    assert peers.smembers(keys.ROUTES) == {"+", "+1415"}
    assert admin.list_routes(peers) == [c, b, a]
    assert admin.list_routes(peers, "+1415") == [b, a]
    assert sorted(RedisStore(peers, "n1").routes("+14155550100"), key=lambda e: e.trunk) == [a, b]
    assert RedisStore(peers, "n1").routes("+442071234567") == [c]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (RouteEntry("+1415", "ghost", Decimal("0.01")), r"^no trunk 'ghost'$"),
        (RouteEntry("1415", "telnyx", Decimal("0.01")), r"route prefix '1415'"),
        (RouteEntry("+1415", "telnyx", Decimal("-0.01")), r"rate: must be a non-negative number"),
        (RouteEntry("+1415", "telnyx", Decimal("NaN")), r"rate: must be a non-negative number"),
        (RouteEntry("+1415", "telnyx", Decimal("0.01"), -1), r"priority: must be >= 0"),
    ],
)
def test_bad_route_refused(peers: redis.Redis, entry: RouteEntry, message: str) -> None:
    with pytest.raises(DataError, match=message):
        admin.put_route(peers, entry)
    assert peers.smembers(keys.ROUTES) == set()


def test_route_rate_change_needs_replace(peers: redis.Redis) -> None:
    admin.put_route(peers, RouteEntry("+1415", "telnyx", Decimal("0.0045")))
    with pytest.raises(DataError, match=r"route \+1415 via trunk 'telnyx' already exists"):
        admin.put_route(peers, RouteEntry("+1415", "telnyx", Decimal("0.003")))
    admin.put_route(peers, RouteEntry("+1415", "telnyx", Decimal("0.003")), replace=True)
    assert [e.rate for e in admin.list_routes(peers)] == [Decimal("0.003")]


def test_remove_route_one_trunk_then_last(peers: redis.Redis) -> None:
    admin.put_trunk(peers, make_trunk("twilio", cidrs=("10.2.0.0/16",)))
    admin.put_route(peers, RouteEntry("+1415", "telnyx", Decimal("0.0045")))
    admin.put_route(peers, RouteEntry("+1415", "twilio", Decimal("0.004")))

    admin.remove_route(peers, "+1415", "telnyx")
    assert peers.hgetall(keys.route("+1415")) == {"twilio": "rate=0.004;priority=10"}
    assert peers.smembers(keys.ROUTES) == {"+1415"}

    with pytest.raises(DataError, match=r"no route '\+1415' via trunk 'telnyx'"):
        admin.remove_route(peers, "+1415", "telnyx")

    admin.remove_route(peers, "+1415", "twilio")
    assert not peers.exists(keys.route("+1415"))
    assert peers.smembers(keys.ROUTES) == set()
    with pytest.raises(DataError, match=r"no route '\+1415'"):
        admin.remove_route(peers, "+1415")


# --------------------------------------------------------------------------- referential integrity


def test_trunk_removal_refused_while_referenced(peers: redis.Redis) -> None:
    admin.put_did(peers, Did("+14155550100", "telnyx", "bot"))
    admin.put_route(peers, RouteEntry("+1415", "telnyx", Decimal("0.0045")))
    before = all_keys(peers), version(peers)

    with pytest.raises(DataError) as err:
        admin.remove_trunk(peers, "telnyx")

    assert str(err.value) == "trunk 'telnyx' is still used by DIDs +14155550100; routes +1415; remove them first"
    assert (all_keys(peers), version(peers)) == before

    admin.remove_did(peers, "+14155550100")
    admin.remove_route(peers, "+1415")
    admin.remove_trunk(peers, "telnyx")
    assert admin.list_trunks(peers) == []


def test_agent_removal_refused_while_bound(peers: redis.Redis) -> None:
    admin.put_did(peers, Did("+14155550100", "telnyx", "bot"))
    with pytest.raises(DataError, match=r"^agent 'bot' is still bound to DIDs \+14155550100; remove them first$"):
        admin.remove_agent(peers, "bot")
    assert admin.get_agent(peers, "bot") is not None
    admin.remove_did(peers, "+14155550100")
    admin.remove_agent(peers, "bot")
    assert peers.smembers(keys.AGENTS) == set()
    assert not any(k.startswith(keys.agent("bot")) for k in all_keys(peers))


def test_concurrent_did_aborts_trunk_removal(peers: redis.Redis, redis_server, monkeypatch: pytest.MonkeyPatch) -> None:
    """A DID added between the integrity check and EXEC aborts the removal; the retry refuses it."""
    other = redis.Redis(*redis_server, decode_responses=True)
    original = admin.trunks.routes_referencing
    calls = []

    def racing(client, pipe, trunk):
        found = original(client, pipe, trunk)
        if not calls:  # another writer binds a DID after the DIDs were checked
            other.hset(keys.did("+14155550199"), mapping={"trunk": "telnyx", "agent": "bot"})
            other.sadd(keys.DIDS, "+14155550199")
        calls.append(trunk)
        return found

    monkeypatch.setattr(admin.trunks, "routes_referencing", racing)
    with pytest.raises(DataError, match=r"still used by DIDs \+14155550199"):
        admin.remove_trunk(peers, "telnyx")
    other.close()

    assert len(calls) == 2  # first EXEC aborted by WATCH, second attempt saw the DID
    assert admin.get_trunk(peers, "telnyx") is not None


def test_writes_give_up_after_repeated_conflicts(peers: redis.Redis, redis_server, monkeypatch: pytest.MonkeyPatch) -> None:
    other = redis.Redis(*redis_server, decode_responses=True)
    original = admin.common._check_schema
    attempts = []

    def always_racing(pipe):
        original(pipe)
        attempts.append(pipe)
        other.sadd(keys.TRUNKS, f"other{len(attempts)}")  # changes a watched key every attempt

    monkeypatch.setattr(admin.common, "MAX_ATTEMPTS", 3)
    monkeypatch.setattr(admin.common, "_check_schema", always_racing)
    with pytest.raises(admin.ConflictError, match="3 attempts"):
        admin.put_did(peers, Did("+14155550100", "telnyx", "bot"))
    other.close()
    assert len(attempts) == 3
    assert not peers.exists(keys.did("+14155550100"))


# --------------------------------------------------------------------------- version and schema


def test_every_write_bumps_version_once(redis_client: redis.Redis) -> None:
    steps = [
        lambda: admin.put_trunk(redis_client, make_trunk()),
        lambda: admin.put_agent(redis_client, make_agent()),
        lambda: admin.put_did(redis_client, Did("+14155550100", "telnyx", "bot")),
        lambda: admin.put_route(redis_client, RouteEntry("+1", "telnyx", Decimal("0.01"))),
        lambda: admin.remove_route(redis_client, "+1"),
        lambda: admin.remove_did(redis_client, "+14155550100"),
        lambda: admin.remove_agent(redis_client, "bot"),
        lambda: admin.remove_trunk(redis_client, "telnyx"),
    ]
    step, *rest = steps
    step()
    first = version(redis_client)
    assert first > 1_700_000_000_000_000  # seeded from the clock (µs) on an empty database
    for expected, step in enumerate(rest, start=first + 1):
        step()
        assert version(redis_client) == expected
    assert redis_client.get(keys.SCHEMA) == keys.SCHEMA_VERSION
    assert all_keys(redis_client) == {keys.VERSION, keys.SCHEMA}


def test_newer_schema_refused(redis_client: redis.Redis) -> None:
    redis_client.set(keys.SCHEMA, "99")
    with pytest.raises(DataError, match=r"is '99' but this edgectl writes schema 1"):
        admin.put_trunk(redis_client, make_trunk())
    assert redis_client.smembers(keys.TRUNKS) == set()


# --------------------------------------------------------------------------- gateway specs


def test_parse_gateway_spec() -> None:
    assert admin.parse_gateway("192.0.2.1:5080;transport=tcp;priority=5;weight=50") == Gateway(
        "192.0.2.1", 5080, Transport.TCP, 5, 50
    )
    assert admin.parse_gateway("[2001:db8::1]", "tls") == Gateway("[2001:db8::1]", 5060, Transport.TLS)
    assert admin.parse_gateway("gw.example.com:5060;weight=7", "tcp").transport is Transport.TCP
    with pytest.raises(DataError, match=r"unknown parameter 'color'"):
        admin.parse_gateway("192.0.2.1;color=red")
    with pytest.raises(DataError, match=r"transport: must be one of udp, tcp, tls"):
        admin.parse_gateway("192.0.2.1;transport=sctp")


def test_tls_gateway_is_stored_with_its_transport(redis_client: redis.Redis) -> None:
    trunk = make_trunk(gateways=(Gateway("sip.example.net", 5061, Transport.TLS, 20, 50),))
    admin.put_trunk(redis_client, trunk)
    assert redis_client.hget(keys.trunk_gateways("telnyx"), "sip.example.net:5061") == "transport=tls;priority=20;weight=50"
