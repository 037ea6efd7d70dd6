"""routing.call.pipeline.route_initial_invite over an in-memory store: every refusal and every relay."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from tests.fakes import FakeStore

from routing.tables import keys
from routing.call.decision import Reject, Relay
from routing.tables.model import Agent, Did, Direction, Gateway, RouteEntry, Transport, Trunk
from routing.call.numbers import NumberFormat
from routing.call import pipeline
from routing.call.pipeline import HDR_CALLER, HDR_DID, HDR_TRUNK, route_initial_invite
from routing.call.plan import CallPlan
from routing.call.request import SipRequest
from routing.ops.runtime import RuntimeSettings
from routing.tables.store import Lease
from routing.tables.model.did import parse_fallback

RT = RuntimeSettings(node="t1", lease_ttl_s=600, admission_ttl_s=45, retry_after_s=7)
NANP = NumberFormat(country_code="1", international_prefix="011", national_length=10)
UK = NumberFormat(country_code="44", national_prefix="0", international_prefix="00")

CARRIER_IP = "192.0.2.5"  # telnyx
UK_CARRIER_IP = "198.51.100.9"  # ukcarrier, inbound only
OUT_ONLY_IP = "203.0.113.9"  # outonly, outbound only
AGENT_IP = "10.9.0.7"  # bot
NO_URI_AGENT_IP = "10.8.0.1"  # mute agent without URIs
STRANGER_IP = "198.18.0.1"


def trunk_with_gateways(name: str, gateways: dict[str, str], **kwargs: object) -> Trunk:
    """A trunk whose gateways go through the same parser (and ordering) as redis data."""
    parsed = Trunk.from_redis(name, {}, [], gateways)
    return Trunk(name=name, gateways=parsed.gateways, **kwargs)  # type: ignore[arg-type]


def make_store() -> FakeStore:
    telnyx = trunk_with_gateways(
        "telnyx",
        {"192.0.2.10:5060": "priority=10"},
        direction=Direction.BOTH,
        max_calls=10,
        cidrs=("192.0.2.0/24",),
        number_format=NANP,
    )
    uk = Trunk(
        name="ukcarrier",
        direction=Direction.INBOUND,
        cidrs=("198.51.100.0/24",),
        gateways=(Gateway("198.51.100.10"),),
        number_format=UK,
    )
    outonly = Trunk(name="outonly", direction=Direction.OUTBOUND, cidrs=("203.0.113.0/24",), gateways=(Gateway("203.0.113.10"),))
    bot = Agent(
        name="bot",
        uris=("sip:agent.example.com:5080", "sip:bot@10.9.0.2;transport=tcp"),
        cidrs=("10.9.0.0/24",),
        max_calls=5,
    )
    mute = Agent(name="mute", uris=(), cidrs=("10.8.0.1/32",))
    store = FakeStore(
        trunks={t.name: t for t in (telnyx, uk, outonly)},
        agents={a.name: a for a in (bot, mute)},
    )
    for number, trunk, agent in [
        ("+14155550100", "telnyx", "bot"),
        ("+442079460000", "ukcarrier", "bot"),
        ("+14155550199", "ukcarrier", "bot"),  # owned by another trunk than telnyx
        ("+14155550111", "telnyx", "ghost"),  # agent not provisioned
        ("+14155550122", "telnyx", "mute"),  # agent without URIs
    ]:
        store.dids[number] = Did(number, trunk, agent)
    return store


def invite(src: str, ruri_user: str, to_user: str = "", from_user: str = "2125550123", call_id: str = "call-1") -> SipRequest:
    return SipRequest(
        method="INVITE",
        call_id=call_id,
        src_ip=src,
        src_port=5060,
        proto="udp",
        ruri_user=ruri_user,
        to_user=to_user,
        from_user=from_user,
    )


def route(prefix: str, trunk: str, rate: str, priority: int = 10) -> RouteEntry:
    return RouteEntry(prefix=prefix, trunk=trunk, rate=Decimal(rate), priority=priority)


def assert_reject(decision: object, code: int, reason: str, retry_after_s: int | None = None) -> None:
    assert isinstance(decision, Reject), decision
    assert (decision.code, decision.reason, decision.retry_after_s) == (code, reason, retry_after_s)


# -- origination refusals ---------------------------------------------------------


def test_stranger_source_is_refused() -> None:
    store = make_store()
    decision = route_initial_invite(invite(STRANGER_IP, "+14155550100"), store, RT)
    assert_reject(decision, 403, "Source Not Allowed")
    assert decision.tag == "acl_source"
    assert store.acquired == []


def test_unparsable_source_is_refused() -> None:
    decision = route_initial_invite(invite("", "+14155550100"), make_store(), RT)
    assert_reject(decision, 403, "Source Not Allowed")


def test_outbound_only_trunk_cannot_originate() -> None:
    store = make_store()
    decision = route_initial_invite(invite(OUT_ONLY_IP, "+14155550100"), store, RT)
    assert_reject(decision, 403, "Trunk Not Allowed Inbound")
    assert store.acquired == []


@pytest.mark.parametrize("ruri_user", ["+14155550999", "4155550999", "not-a-number", ""])
def test_unknown_did_is_not_found(ruri_user: str) -> None:
    store = make_store()
    decision = route_initial_invite(invite(CARRIER_IP, ruri_user), store, RT)
    assert_reject(decision, 404, "DID Not Found")
    assert store.acquired == []


def test_did_owned_by_another_trunk_is_not_found() -> None:
    store = make_store()
    decision = route_initial_invite(invite(CARRIER_IP, "+14155550199"), store, RT)
    assert_reject(decision, 404, "DID Not Found")
    assert store.acquired == []


@pytest.mark.parametrize("did", ["+14155550111", "+14155550122"])
def test_missing_agent_or_agent_without_uris(did: str) -> None:
    store = make_store()
    decision = route_initial_invite(invite(CARRIER_IP, did), store, RT)
    assert_reject(decision, 404, "Agent Not Found")
    assert store.acquired == []


def test_origination_trunk_full() -> None:
    store = make_store()
    store.full_keys = {keys.trunk_lease("telnyx")}
    decision = route_initial_invite(invite(CARRIER_IP, "+14155550100"), store, RT)
    assert_reject(decision, 503, "Trunk Limit Reached: telnyx", retry_after_s=7)
    assert decision.tag == "trunk_limit"


def test_origination_agent_full() -> None:
    store = make_store()
    store.full_keys = {keys.agent_lease("bot")}
    decision = route_initial_invite(invite(CARRIER_IP, "+14155550100"), store, RT)
    assert_reject(decision, 503, "Agent Limit Reached: bot", retry_after_s=7)
    assert decision.tag == "agent_limit"


def test_origination_trunk_paced_by_cps() -> None:
    store = make_store()
    store.trunks["telnyx"] = Trunk(
        name="telnyx", cidrs=("192.0.2.0/24",), number_format=NANP, max_calls=10, max_cps=2.0
    )
    store.paced_keys = {keys.trunk_lease("telnyx"): 1200}
    decision = route_initial_invite(invite(CARRIER_IP, "+14155550100"), store, RT)
    assert_reject(decision, 503, "Trunk CPS Limit Reached: telnyx", retry_after_s=2)  # 1.2 s, rounded up
    assert decision.tag == "trunk_cps"
    lease = store.acquired[0]["leases"][0]
    assert (lease.cps, lease.bucket) == (2.0, keys.trunk_cps("telnyx"))


# -- origination relay ------------------------------------------------------------


def test_origination_relay_headers_and_targets() -> None:
    store = make_store()
    decision = route_initial_invite(invite(CARRIER_IP, "4155550100", from_user="(212) 555-0123"), store, RT)
    assert isinstance(decision, Relay), decision
    assert decision.headers == {HDR_TRUNK: "telnyx", HDR_DID: "+14155550100", HDR_CALLER: "+12125550123"}
    assert [t.uri for t in decision.plan.targets] == [
        "sip:+14155550100@agent.example.com:5080",  # no user in the agent URI: the DID is the user
        "sip:bot@10.9.0.2;transport=tcp",  # a user in the URI is kept
    ]
    assert all(t.lease is None and t.trunk is None for t in decision.plan.targets)
    assert decision.plan.direction == "origination"
    assert decision.plan.call_id == "call-1"
    assert decision.plan.index == 0


def test_agent_uris_marked_down_are_skipped_before_any_slot() -> None:
    store = make_store()
    store.agents_down = {keys.agent_member("bot", "sip:agent.example.com:5080")}
    decision = route_initial_invite(invite(CARRIER_IP, "+14155550100"), store, RT)
    assert isinstance(decision, Relay), decision
    assert [t.uri for t in decision.plan.targets] == ["sip:bot@10.9.0.2;transport=tcp"]


def test_agent_with_every_uri_down_is_refused_at_once_without_a_slot() -> None:
    store = make_store()
    store.agents_down = {keys.agent_member("bot", u) for u in store.agents["bot"].uris}
    decision = route_initial_invite(invite(CARRIER_IP, "+14155550100"), store, RT)
    assert_reject(decision, 503, "All Agent URIs Down", retry_after_s=7)
    assert decision.tag == "agent_down" and store.acquired == []


def test_an_agent_not_probed_keeps_every_uri_and_carries_its_answer_timeout() -> None:
    store = make_store()
    store.agents["bot"] = replace(store.agents["bot"], probe=False, answer_timeout_ms=1500)
    store.agents_down = {keys.agent_member("bot", u) for u in store.agents["bot"].uris}
    decision = route_initial_invite(invite(CARRIER_IP, "+14155550100"), store, RT)
    assert isinstance(decision, Relay) and len(decision.plan.targets) == 2
    assert {t.answer_timeout_ms for t in decision.plan.targets} == {1500}
    assert CallPlan.loads(decision.plan.dumps()).targets[0].answer_timeout_ms == 1500


def _with_fallback(store: FakeStore, text: str) -> None:
    store.agents["humans"] = Agent(name="humans", uris=("sip:queue@humans.example.com",), max_calls=2)
    store.dids["+14155550100"] = Did("+14155550100", "telnyx", "bot", parse_fallback(text, "test"))


def test_fallback_steps_follow_the_agents_uris_with_their_own_slot_and_allowed_hosts_only() -> None:
    store = make_store()
    store.agents["bot"] = replace(store.agents["bot"], transfer_hosts=("pbx.example.com",))
    _with_fallback(store, "agent:humans,uri:sip:vm@pbx.example.com,uri:sip:x@unlisted.example.com,agent:gone")
    decision = route_initial_invite(invite(CARRIER_IP, "+14155550100"), store, RT)
    assert isinstance(decision, Relay), decision
    assert [(t.uri, t.lease.key if t.lease else None) for t in decision.plan.targets] == [
        ("sip:+14155550100@agent.example.com:5080", None),
        ("sip:bot@10.9.0.2;transport=tcp", None),
        ("sip:queue@humans.example.com", keys.agent_lease("humans")),  # taken when the call reaches it
        ("sip:vm@pbx.example.com", None),  # a host bot may transfer to; the unlisted one and "gone" skipped
    ]
    assert decision.plan.targets[2].label == "fallback humans sip:queue@humans.example.com"


def test_a_fallback_number_reaches_its_carriers_in_least_cost_order_with_the_did_as_diversion() -> None:
    store = make_store()
    store.trunks["b"] = Trunk("b", gateways=(Gateway("192.0.2.32"),))
    store.trunks["c"] = Trunk("c", gateways=(Gateway("192.0.2.33"),), deny_prefixes=("+44",))
    store.route_table["+44"] = [route("+44", "b", "0.02"), route("+44", "telnyx", "0.01"), route("+44", "c", "0.005")]
    _with_fallback(store, "number:+442071838751")
    decision = route_initial_invite(invite(CARRIER_IP, "+14155550100"), store, RT)
    assert isinstance(decision, Relay), decision
    fallback = decision.plan.targets[2:]
    assert [(t.trunk, t.uri, t.rate) for t in fallback] == [  # c refuses +44: skipped
        ("telnyx", "sip:+442071838751@192.0.2.10:5060", "0.01"), ("b", "sip:+442071838751@192.0.2.32:5060", "0.02")]
    assert {t.diverted_from for t in fallback} == {"+14155550100"}
    assert fallback[0].lease == Lease(keys.trunk_lease("telnyx"), 10, "trunk telnyx")


def test_a_fallback_number_blocked_for_the_agent_is_skipped() -> None:
    store = make_store()
    store.route_table["+1900"] = [route("+1900", "telnyx", "0.01")]
    _with_fallback(store, "number:+19005550123")
    decision = route_initial_invite(invite(CARRIER_IP, "+14155550100"), replace(store), replace(RT, blocked_prefixes=("+1900",)))
    assert isinstance(decision, Relay) and len(decision.plan.targets) == 2  # the agent's own URIs only


def test_agent_all_down_goes_straight_to_its_fallback() -> None:
    store = make_store()
    _with_fallback(store, "agent:humans")
    store.agents_down = {keys.agent_member("bot", u) for u in store.agents["bot"].uris}
    decision = route_initial_invite(invite(CARRIER_IP, "+14155550100"), store, RT)
    assert isinstance(decision, Relay), decision
    assert [t.uri for t in decision.plan.targets] == ["sip:queue@humans.example.com"]


def test_agent_and_fallback_all_down_is_refused_at_once() -> None:
    store = make_store()
    _with_fallback(store, "agent:humans")
    store.agents_down = {keys.agent_member(a, u) for a in ("bot", "humans") for u in store.agents[a].uris}
    decision = route_initial_invite(invite(CARRIER_IP, "+14155550100"), store, RT)
    assert_reject(decision, 503, "All Agent URIs Down", retry_after_s=7)
    assert store.acquired == []


def test_the_carriers_verstat_reaches_the_agent_and_the_plan() -> None:
    store = make_store()
    decision = route_initial_invite(invite(CARRIER_IP, "+14155550100", from_user="+12125550123;verstat=TN-Validation-Passed"),
                                    store, RT)
    assert isinstance(decision, Relay), decision
    assert decision.headers["X-Edge-Verstat"] == "TN-Validation-Passed" and decision.plan.verstat == "TN-Validation-Passed"
    assert decision.headers[HDR_CALLER] == "+12125550123"
    plain = route_initial_invite(invite(CARRIER_IP, "+14155550100"), make_store(), RT)
    assert isinstance(plain, Relay) and "X-Edge-Verstat" not in plain.headers


def test_origination_admits_trunk_and_agent_slots_in_one_acquire() -> None:
    store = make_store()
    route_initial_invite(invite(CARRIER_IP, "+14155550100"), store, RT)
    assert store.acquired == [
        {
            "call_id": "call-1",
            "leases": [
                Lease(keys.trunk_lease("telnyx"), 10, "trunk telnyx"),
                Lease(keys.agent_lease("bot"), 5, "agent bot"),
            ],
            "ttl_s": 45,  # the admission: as long as the call may ring, extended on the answer
            "release": [],
            "facts": {"direction": "origination", "trunk": "telnyx", "agent": "bot", "number": "+14155550100"},
        }
    ]
    assert store.released == []


def test_origination_uses_the_to_user_when_the_ruri_has_none() -> None:
    decision = route_initial_invite(invite(CARRIER_IP, "", to_user="+1 415 555 0100"), make_store(), RT)
    assert isinstance(decision, Relay)
    assert decision.headers[HDR_DID] == "+14155550100"


def test_origination_with_national_prefix_format() -> None:
    decision = route_initial_invite(invite(UK_CARRIER_IP, "020 7946 0000", from_user="07700900123"), make_store(), RT)
    assert isinstance(decision, Relay), decision
    assert decision.headers == {HDR_TRUNK: "ukcarrier", HDR_DID: "+442079460000", HDR_CALLER: "+447700900123"}
    assert decision.plan.targets[0].uri == "sip:+442079460000@agent.example.com:5080"


@pytest.mark.parametrize("ruri_user", ["%2B14155550100", "%2b1-415-555-0100", "+1-415-555-0100",
                                       "(415)%20555-0100", "4155550100;phone-context=+1",
                                       "4155550100;phone-context=%2B1"])
def test_origination_reads_escaped_and_tel_forms_of_the_did(ruri_user: str) -> None:
    store = make_store()
    decision = route_initial_invite(invite(CARRIER_IP, ruri_user), store, RT)
    assert isinstance(decision, Relay), decision
    assert decision.headers[HDR_DID] == "+14155550100"
    assert decision.plan.targets[0].uri == "sip:+14155550100@agent.example.com:5080"
    assert store.acquired[0]["facts"]["number"] == "+14155550100"


def test_unparsable_caller_is_passed_as_is() -> None:
    decision = route_initial_invite(invite(CARRIER_IP, "+14155550100", from_user="anonymous"), make_store(), RT)
    assert isinstance(decision, Relay)
    assert decision.headers[HDR_CALLER] == "anonymous"


# -- termination refusals -----------------------------------------------------------


@pytest.mark.parametrize(("ruri_user", "to_user"), [("call-me", ""), ("", ""), ("0800123", ""), ("+1234567890123456", "")])
def test_termination_bad_destination(ruri_user: str, to_user: str) -> None:
    store = make_store()
    store.route_table["+"] = [route("+", "telnyx", "0.01")]
    decision = route_initial_invite(invite(AGENT_IP, ruri_user, to_user=to_user), store, RT)
    assert_reject(decision, 484, "Invalid Destination Number")
    assert decision.tag == "bad_number"
    assert store.acquired == []


@pytest.mark.parametrize("ruri_user", ["%2B14155550100", "+1-415-555-0100", "+1.415.555.0100",
                                       "4155550100;phone-context=+1", "%2B1%20(415)%20555-0100"])
def test_termination_reads_escaped_and_tel_forms_of_the_destination(ruri_user: str) -> None:
    store = make_store()
    store.route_table["+"] = [route("+", "telnyx", "0.01")]
    decision = route_initial_invite(invite(AGENT_IP, ruri_user), store, RT)
    assert isinstance(decision, Relay), decision
    assert decision.plan.number == "+14155550100"
    assert decision.plan.targets[0].uri == "sip:+14155550100@192.0.2.10:5060"


def test_termination_from_a_nanp_agent_reads_its_011_and_national_numbers() -> None:
    store = make_store()
    store.agents["bot"] = Agent(name="bot", uris=("sip:agent.example.com",), cidrs=("10.9.0.0/24",),
                                number_format=NANP)
    store.route_table["+"] = [route("+", "telnyx", "0.01")]
    for dialled, number in [("011447700900123", "+447700900123"), ("4155550100", "+14155550100"),
                            ("1 (415) 555-0100", "+14155550100"), ("+447700900123", "+447700900123")]:
        decision = route_initial_invite(invite(AGENT_IP, dialled), store, RT)
        assert isinstance(decision, Relay), (dialled, decision)
        assert decision.plan.number == number
        assert decision.plan.targets[0].uri == f"sip:{number}@192.0.2.10:5060"
    # "00" is not a NANP agent's international prefix
    assert_reject(route_initial_invite(invite(AGENT_IP, "00447700900123"), store, RT), 484, "Invalid Destination Number")


def test_termination_011_from_an_agent_without_a_format_is_invalid() -> None:
    store = make_store()
    store.route_table["+"] = [route("+", "telnyx", "0.01")]
    decision = route_initial_invite(invite(AGENT_IP, "011447700900123"), store, RT)
    assert_reject(decision, 484, "Invalid Destination Number")
    assert store.acquired == []


def test_termination_without_route() -> None:
    store = make_store()
    store.route_table["+44"] = [route("+44", "telnyx", "0.01")]
    decision = route_initial_invite(invite(AGENT_IP, "+14155550100"), store, RT)
    assert_reject(decision, 404, "No Route")
    assert store.acquired == []


def test_termination_with_only_unusable_trunks_has_no_route() -> None:
    store = make_store()
    store.trunks["nogw"] = Trunk(name="nogw", direction=Direction.BOTH, cidrs=())
    store.route_table["+1"] = [
        route("+1", "ukcarrier", "0.001"),  # inbound only
        route("+1", "ghost", "0.001"),  # not provisioned
        route("+1", "nogw", "0.001"),  # no gateways
    ]
    decision = route_initial_invite(invite(AGENT_IP, "+14155550100"), store, RT)
    assert_reject(decision, 404, "No Route")
    assert store.acquired == []


def test_termination_agent_full() -> None:
    store = make_store()
    store.route_table["+1"] = [route("+1", "telnyx", "0.01")]
    store.full_keys = {keys.agent_lease("bot")}
    decision = route_initial_invite(invite(AGENT_IP, "+14155550100"), store, RT)
    assert_reject(decision, 503, "Agent Limit Reached: bot", retry_after_s=7)
    assert len(store.acquired) == 1  # no trunk slot was asked for


def test_termination_every_trunk_full_releases_the_agent_slot() -> None:
    store = make_store()
    store.trunks["other"] = Trunk(name="other", cidrs=(), gateways=(Gateway("192.0.2.50"),), max_calls=1)
    store.route_table["+1"] = [route("+1", "telnyx", "0.01"), route("+1", "other", "0.02")]
    store.full_keys = {keys.trunk_lease("telnyx"), keys.trunk_lease("other")}
    decision = route_initial_invite(invite(AGENT_IP, "+14155550100", call_id="full-call"), store, RT)
    assert_reject(decision, 503, "Trunk Limit Reached: other", retry_after_s=7)
    assert decision.tag == "trunk_limit"
    assert store.released == ["full-call"]
    assert [c["leases"][0].key for c in store.acquired] == [
        keys.agent_lease("bot"),
        keys.trunk_lease("telnyx"),
        keys.trunk_lease("other"),
    ]


def test_termination_from_agent_without_uris_still_routes() -> None:
    store = make_store()
    store.route_table["+1"] = [route("+1", "telnyx", "0.01")]
    decision = route_initial_invite(invite(NO_URI_AGENT_IP, "+14155550100"), store, RT)
    assert isinstance(decision, Relay)


@pytest.mark.parametrize(
    ("rt", "agent_policy", "trunk_deny"),
    [
        (RuntimeSettings(retry_after_s=7, blocked_prefixes=("+1900",)), {}, ()),
        (RT, {"deny_prefixes": ("+1900",)}, ()),
        (RT, {"allow_prefixes": ("+44",)}, ()),
    ],
)
def test_termination_destination_policy(rt: RuntimeSettings, agent_policy: dict[str, object], trunk_deny: tuple[str, ...]) -> None:
    store = make_store()
    store.agents["bot"] = Agent(name="bot", uris=("sip:h",), cidrs=("10.9.0.0/24",), **agent_policy)  # type: ignore[arg-type]
    store.route_table["+1"] = [route("+1", "telnyx", "0.01")]
    decision = route_initial_invite(invite(AGENT_IP, "+19005550100"), store, rt)
    assert_reject(decision, 403, "Destination Not Allowed")
    assert store.acquired == []


def test_termination_trunk_deny_skips_the_trunk() -> None:
    store = make_store()
    store.trunks["cheap"] = Trunk(name="cheap", gateways=(Gateway("192.0.2.60"),), deny_prefixes=("+1900",))
    store.route_table["+1"] = [route("+1", "cheap", "0.001"), route("+1", "telnyx", "0.01")]
    decision = route_initial_invite(invite(AGENT_IP, "+19005550100"), store, RT)
    assert isinstance(decision, Relay)
    assert [t.trunk for t in decision.plan.targets] == ["telnyx"]
    store.route_table["+1"] = [route("+1", "cheap", "0.001")]
    assert_reject(route_initial_invite(invite(AGENT_IP, "+19005550100"), store, RT), 403, "Destination Not Allowed")


# -- termination relay ------------------------------------------------------------------


def lcr_store() -> FakeStore:
    store = make_store()
    for name in ("a", "b", "c", "d", "e"):
        store.trunks[name] = trunk_with_gateways(name, {f"192.0.2.{ord(name)}:5060": ""}, max_calls=3)
    store.trunks["a"] = trunk_with_gateways(
        "a",
        {
            "192.0.2.12:5060": "priority=20",
            "gw.a.example:5070": "transport=tcp;priority=10;weight=50",
            "192.0.2.11:5060": "priority=10",
        },
        max_calls=3,
    )
    store.route_table["+1"] = [
        route("+1", "e", "0.010", 1),
        route("+1", "b", "0.004", 5),
        route("+1", "a", "0.004", 5),
        route("+1", "ukcarrier", "0.0001", 1),  # inbound only: skipped
        route("+1", "d", "0.004", 1),
        route("+1", "c", "0.002", 10),
    ]
    return store


def test_termination_targets_ordered_by_rate_priority_name_then_gateway_priority() -> None:
    store = lcr_store()
    decision = route_initial_invite(invite(AGENT_IP, "14155550100"), store, RT)
    assert isinstance(decision, Relay), decision
    assert [t.label for t in decision.plan.targets] == [
        "c 192.0.2.99:5060",
        "d 192.0.2.100:5060",
        "a 192.0.2.11:5060",
        "a gw.a.example:5070",
        "a 192.0.2.12:5060",
        "b 192.0.2.98:5060",
        "e 192.0.2.101:5060",
    ]
    assert decision.plan.targets[3].uri == "sip:+14155550100@gw.a.example:5070;transport=tcp"
    assert decision.plan.targets[0].uri == "sip:+14155550100@192.0.2.99:5060"
    assert all(t.trunk == t.label.split()[0] for t in decision.plan.targets)
    assert decision.plan.targets[2].lease == Lease(keys.trunk_lease("a"), 3, "trunk a")
    assert decision.headers == {}
    assert decision.plan.direction == "termination"


def test_termination_admits_agent_then_first_trunk() -> None:
    store = lcr_store()
    decision = route_initial_invite(invite(AGENT_IP, "+14155550100"), store, RT)
    assert isinstance(decision, Relay)
    assert store.acquired[0] == {
        "call_id": "call-1",
        "leases": [Lease(keys.agent_lease("bot"), 5, "agent bot")],
        "ttl_s": 45,
        "release": [],
        "facts": {"direction": "termination", "agent": "bot", "number": "+14155550100"},
    }
    assert store.acquired[1]["leases"] == [Lease(keys.trunk_lease("c"), 3, "trunk c")]
    assert decision.plan.index == 0
    assert decision.plan.held == keys.trunk_lease("c")
    assert store.released == []


def test_termination_skips_a_full_first_trunk() -> None:
    store = lcr_store()
    store.full_keys = {keys.trunk_lease("c")}
    decision = route_initial_invite(invite(AGENT_IP, "+14155550100"), store, RT)
    assert isinstance(decision, Relay)
    assert decision.plan.current.label == "d 192.0.2.100:5060"
    assert decision.plan.held == keys.trunk_lease("d")
    assert decision.plan.full == [503, "Trunk Limit Reached: c", "trunk_limit", 7]
    assert store.released == []


def test_termination_uses_the_longest_prefix_only() -> None:
    store = lcr_store()
    store.route_table["+1415"] = [route("+1415", "b", "0.05")]
    decision = route_initial_invite(invite(AGENT_IP, "+14155550100"), store, RT)
    assert isinstance(decision, Relay)
    assert [t.trunk for t in decision.plan.targets] == ["b"]


def test_trunk_source_wins_over_agent_at_equal_prefix() -> None:
    store = make_store()
    store.agents["bot"] = Agent(name="bot", uris=("sip:h",), cidrs=("192.0.2.0/24",))
    decision = route_initial_invite(invite(CARRIER_IP, "+14155550100"), store, RT)
    assert isinstance(decision, Relay)
    assert decision.plan.direction == "origination"


def test_gateway_transport_tls_uses_sips() -> None:
    store = make_store()
    store.trunks["tls"] = Trunk(name="tls", gateways=(Gateway("gw.example.net", 5061, Transport.TLS),))
    store.route_table["+"] = [route("+", "tls", "0")]
    decision = route_initial_invite(invite(AGENT_IP, "+442079460000"), store, RT)
    assert isinstance(decision, Relay)
    assert decision.plan.targets[0].uri == "sips:+442079460000@gw.example.net:5061;transport=tls"


# -- gateway health ----------------------------------------------------------------


def test_termination_skips_gateways_marked_down() -> None:
    store = lcr_store()
    store.down = {keys.gateway_member("c", "192.0.2.99:5060"), keys.gateway_member("a", "gw.a.example:5070")}
    decision = route_initial_invite(invite(AGENT_IP, "+14155550100"), store, RT)
    assert isinstance(decision, Relay), decision
    assert [t.label for t in decision.plan.targets] == [
        "d 192.0.2.100:5060",
        "a 192.0.2.11:5060",
        "a 192.0.2.12:5060",
        "b 192.0.2.98:5060",
        "e 192.0.2.101:5060",
    ]
    assert decision.plan.held == keys.trunk_lease("d")


def test_termination_ignores_down_marks_of_trunks_not_probed() -> None:
    store = lcr_store()
    store.trunks["c"] = Trunk(**{**{f: getattr(store.trunks["c"], f) for f in Trunk.__slots__}, "probe": False})
    store.down = {keys.gateway_member("c", "192.0.2.99:5060")}
    decision = route_initial_invite(invite(AGENT_IP, "+14155550100"), store, RT)
    assert isinstance(decision, Relay)
    assert decision.plan.current.label == "c 192.0.2.99:5060"


def test_termination_with_every_gateway_down_gets_503_with_retry_after() -> None:
    store = lcr_store()
    store.down = {keys.gateway_member(t.trunk or "", t.label.split()[1]) for t in
                  route_initial_invite(invite(AGENT_IP, "+14155550100"), lcr_store(), RT).plan.targets}
    decision = route_initial_invite(invite(AGENT_IP, "+14155550100"), store, RT)
    assert_reject(decision, 503, "All Gateways Down", 7)
    assert decision.tag == "gateways_down"
    assert store.acquired == []  # refused before any slot is taken
# -- spend guardrails ---------------------------------------------------------------------


def guarded_store(**cheap: object) -> FakeStore:
    store = make_store()
    store.trunks["cheap"] = Trunk(name="cheap", gateways=(Gateway("192.0.2.60"),), billing_increment=(60, 60), **cheap)  # type: ignore[arg-type]
    store.route_table["+44"] = [route("+44", "cheap", "0.010"), route("+44", "telnyx", "0.020")]
    return store


def test_a_route_above_the_trunk_max_rate_is_skipped() -> None:
    store = guarded_store(max_rate=Decimal("0.005"))
    decision = route_initial_invite(invite(AGENT_IP, "+442071838750"), store, RT)
    assert isinstance(decision, Relay)
    assert [(t.trunk, t.rate, t.billing) for t in decision.plan.targets] == [("telnyx", "0.020", "1/1")]
    store.route_table["+44"] = [route("+44", "cheap", "0.010")]
    store.acquired.clear()
    decision = route_initial_invite(invite(AGENT_IP, "+442071838750"), store, RT)
    assert_reject(decision, 403, "Destination Rate Too High")
    assert isinstance(decision, Reject) and (decision.tag, decision.trunk, decision.agent) == ("rate_cap", "cheap", "bot")
    assert store.acquired == []  # refused before any slot is taken


def test_a_trunk_at_its_daily_spend_cap_is_skipped() -> None:
    store = guarded_store(daily_spend_cap=Decimal("5"))
    store.spent["cheap"] = 4_999_999  # micro-units: just below the cap
    decision = route_initial_invite(invite(AGENT_IP, "+442071838750"), store, RT)
    assert isinstance(decision, Relay)
    assert [t.trunk for t in decision.plan.targets] == ["cheap", "telnyx"]
    assert decision.plan.targets[0].billing == "60/60" and decision.plan.targets[0].rate == "0.010"
    store.spent["cheap"] = 5_000_000
    decision = route_initial_invite(invite(AGENT_IP, "+442071838750"), store, RT)
    assert isinstance(decision, Relay) and [t.trunk for t in decision.plan.targets] == ["telnyx"]
    store.route_table["+44"] = [route("+44", "cheap", "0.010")]
    decision = route_initial_invite(invite(AGENT_IP, "+442071838750"), store, RT)
    assert_reject(decision, 403, "Daily Spend Cap Reached: cheap")
    assert isinstance(decision, Reject) and decision.tag == "spend_cap"


def test_refusals_carry_what_the_edge_knew_for_the_call_record() -> None:
    store = make_store()
    decision = route_initial_invite(invite(CARRIER_IP, "+14155559999"), store, RT)
    assert isinstance(decision, Reject)
    assert (decision.direction, decision.trunk, decision.agent) == ("origination", "telnyx", "")
    decision = route_initial_invite(invite(AGENT_IP, "+81312345678"), store, RT)
    assert isinstance(decision, Reject)
    assert (decision.direction, decision.trunk, decision.agent) == ("termination", "", "bot")


def test_origination_targets_carry_the_trunk_inbound_rate() -> None:
    store = make_store()
    store.trunks["telnyx"] = Trunk(**{**{f: getattr(store.trunks["telnyx"], f) for f in Trunk.__slots__},
                                      "inbound_rate": Decimal("0.0085"), "billing_increment": (6, 6)})
    decision = route_initial_invite(invite(CARRIER_IP, "4155550100"), store, RT)
    assert isinstance(decision, Relay)
    assert {(t.rate, t.billing) for t in decision.plan.targets} == {("0.0085", "6/6")}


def test_plans_carry_number_caller_and_start_time() -> None:
    store = make_store()
    req = invite(CARRIER_IP, "4155550100")
    req = SipRequest(**{**{f: getattr(req, f) for f in req.__dataclass_fields__}, "received_ms": 1234})
    decision = route_initial_invite(req, store, RT)
    assert isinstance(decision, Relay)
    assert (decision.plan.number, decision.plan.caller) == ("+14155550100", "+12125550123")
    assert store.acquired[0]["facts"]["start_ms"] == "1234"


# -- the stage lists ------------------------------------------------------------------


def test_the_stage_lists_name_their_stages_in_order() -> None:
    assert [s.name for s in pipeline.ENTRY] == ["registration", "acl", "auth"]
    assert [s.name for s in pipeline.ORIGINATION] == ["direction", "did", "agent", "health", "limits", "caller", "targets"]
    assert [s.name for s in pipeline.TERMINATION] == ["number", "policy", "callerid", "route", "limits", "targets"]
    assert pipeline.ROUTING_STAGES == {s.name for s in (*pipeline.ENTRY, *pipeline.ORIGINATION, *pipeline.TERMINATION)}


@pytest.mark.parametrize("src, ruri_user, stages", [
    (CARRIER_IP, "+14155550100", ["acl", "direction", "did", "caller", "targets"]),
    (CARRIER_IP, "+14155550111", ["acl", "direction", "did", "agent"]),
    (AGENT_IP, "+14155550100", ["acl", "number", "policy", "route"]),
])
def test_the_trace_follows_the_stage_lists(src: str, ruri_user: str, stages: list[str]) -> None:
    """The steps come in the order of the lists (``limits`` steps are the dry-run store's own)."""
    trace: list = []
    route_initial_invite(invite(src, ruri_user), make_store(), RT, trace)
    assert [step.stage for step in trace] == stages
    order = [s.name for s in (*pipeline.ENTRY, *pipeline.ORIGINATION, *pipeline.TERMINATION)]
    assert all(order.index(a) <= order.index(b) for a, b in zip(stages, stages[1:]))
