"""routing.tables.admin.trunks against a real redis: round trips, refusals, removal, gateway specs."""

from __future__ import annotations

from decimal import Decimal

import pytest
import redis

from routing.tables import admin, keys
from routing.tables.model import DataError, Did, Direction, Gateway, RouteEntry, Transport, Trunk
from routing.call.numbers import NumberFormat
from routing.tables.store import RedisStore
from tests.unit.tables.samples import all_keys, make_agent, make_trunk, version


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
        "transfer": "auto",
        "refer_to": "sip",
        "ringback_ms": "",
        "caller_id_policy": "pass",
        "caller_id_action": "refuse",
        "verified_caller_ids": "", "caller_id_header": "from", "caller_id_format": "e164", "from_user": "caller",
        "from_host": "", "user_phone": "no", "caller_display": "keep", "stir_sign": "no",
        "forwarded_caller_id": "diversion",
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
        (make_trunk(session_timer_s=60), r"edge:trunk:telnyx session_timer_s: must be between 90 and 86400 s, got 60"),
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


def test_session_timer_is_stored_only_when_set_and_read_back(redis_client: redis.Redis) -> None:
    written = admin.put_trunk(redis_client, make_trunk(session_timer_s=1800))
    assert redis_client.hget(keys.trunk("telnyx"), "session_timer_s") == "1800"
    assert written.session_timer_s == 1800 and admin.trunk_dict(written)["session_timer_s"] == 1800
    unset = admin.put_trunk(redis_client, make_trunk(), replace=True)
    assert redis_client.hget(keys.trunk("telnyx"), "session_timer_s") is None and unset.session_timer_s is None
