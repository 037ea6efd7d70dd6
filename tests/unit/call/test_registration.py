"""Registration trunks: the model's text form, the table derived from trunks, the sync plan,
the published state and the inbound match (pure functions, no Kamailio)."""

from __future__ import annotations

import pytest

from routing.call import pipeline, registration
from routing.call.decision import Reject, Relay
from routing.tables.model import Agent, DataError, Did, Gateway, Registration, Transport, Trunk
from routing.call.request import SipRequest
from routing.ops.runtime import RuntimeSettings
from tests.fakes import FakeStore

REG = Registration("203.0.113.5:5060", "edge0123456789abcdef", Transport.TCP, 600, "acct-1")


def test_registration_round_trips_through_its_redis_text() -> None:
    trunk = Trunk("reg", register=REG)
    back = Trunk.from_redis("reg", trunk.to_redis(), [], {})
    assert back.register == REG
    assert "register" not in Trunk("plain").to_redis()
    assert Registration.parse("", "x") is None
    single = Registration.parse("registrar=h.example;contact=edge0123456789;nodes=one", "x")
    assert single is not None and single.single and "nodes=one" in single.to_redis()
    assert "nodes" not in REG.to_redis() and not REG.single


@pytest.mark.parametrize("text, field", [
    ("transport=udp;contact=edge0123456789", "registrar"),
    ("registrar=bad host;contact=edge0123456789", "registrar"),
    ("registrar=h.example;contact=short", "contact"),
    ("registrar=h.example;contact=edge0123456789;expires=10", "expires"),
    ("registrar=h.example;contact=edge0123456789;transport=sctp", "transport"),
    ("registrar=h.example;contact=edge0123456789;colour=red", "unknown"),
    ("registrar=h.example;contact=edge0123456789;nodes=two", "nodes"),
])
def test_bad_registration_names_the_field(text: str, field: str) -> None:
    with pytest.raises(DataError, match=field):
        Registration.parse(text, "edge:trunk:t register")


def test_wanted_records_and_problems() -> None:
    trunks = [Trunk("reg", register=REG), Trunk("nocreds", register=Registration("h.example", "edgeaaaaaaaaaaaa")),
              Trunk("plain")]
    records, problems = registration.wanted(trunks, {"reg": ("user-1", "tok")}, {"udp": "192.0.2.1:5060"})
    assert list(records) == [] and problems["nocreds"] == registration.NO_CREDENTIALS
    assert "tcp listener" in problems["reg"]
    records, _ = registration.wanted(trunks, {"reg": ("user-1", "tok")}, {"tcp": "192.0.2.1:5060"})
    rec = records["edge0123456789abcdef"]
    assert rec.to_uri == "sip:acct-1@203.0.113.5:5060"
    assert rec.contact_addr == "192.0.2.1:5060;transport=tcp"
    params = rec.rpc_params("pw")
    assert len(params) == 15 and params[7] == "pw" and params[9] == "sip:203.0.113.5:5060;transport=tcp"
    assert "pw" not in rec.fingerprint


def test_sync_plan_adds_removes_and_replaces_changed_records() -> None:
    records, _ = registration.wanted([Trunk("reg", register=REG)], {"reg": ("u", "t1")}, {"tcp": "192.0.2.1:5060"})
    fp = records[REG.contact_user].fingerprint
    assert registration.sync_plan(records, {}) == ([], [REG.contact_user])
    assert registration.sync_plan(records, {REG.contact_user: fp}) == ([], [])
    assert registration.sync_plan(records, {REG.contact_user: "old", "gone": ""}) == (
        ["edge0123456789abcdef", "gone"], ["edge0123456789abcdef"])


def test_state_of_each_uac_reg_condition() -> None:
    now = 1_000_000
    online = {"flags": registration.UAC_REG_ONLINE | 16, "timer_expires": now + 600}
    assert registration.state_of(online, "200|OK|1", now, 10) == {
        "state": "registered", "code": "200", "reason": "OK", "expires_at": str(now + 600),
        "next_refresh": str(now + 587), "updated": str(now)}
    failed = registration.state_of({"flags": 16, "timer_expires": now + 60}, "403|Forbidden|1", now, 10)
    assert (failed["state"], failed["code"], failed["next_refresh"]) == ("failed", "403", str(now + 47))
    assert registration.state_of({"flags": registration.UAC_REG_ONGOING}, "", now, 10)["state"] == "registering"
    assert registration.state_of(None, "", now, 10)["state"] == "pending"
    lapsed = registration.state_of({"flags": 16, "timer_expires": now - 5}, "200|OK|1", now, 10)
    assert lapsed["state"] == "failed" and lapsed["reason"] == "registration lapsed"


def _req(ruri: str, src: str, to: str = "+14155550100") -> SipRequest:
    return SipRequest("INVITE", "c1", src, 5060, "udp", ruri, to, "+14155550123")


def test_inbound_match_needs_contact_and_a_known_source() -> None:
    trunk = Trunk("reg", cidrs=("198.51.100.0/24",), gateways=(Gateway("192.0.2.50"),), register=REG)
    by_name = Trunk("dns", register=Registration("sip.carrier.example:5060", "edgedns000000000"))
    trunks = [trunk, by_name]
    assert registration.match_inbound(REG.contact_user, "203.0.113.5", trunks) is trunk  # registrar
    assert registration.match_inbound(REG.contact_user, "192.0.2.50", trunks) is trunk  # gateway
    assert registration.match_inbound(REG.contact_user, "198.51.100.9", trunks) is trunk  # cidr
    assert registration.match_inbound(REG.contact_user, "203.0.113.99", trunks) is None  # stranger
    assert registration.match_inbound("someoneelse", "203.0.113.5", trunks) is None
    asked = []
    resolve = lambda name: asked.append(name) or ["192.0.2.77"]  # noqa: E731
    assert registration.match_inbound("edgedns000000000", "192.0.2.77", trunks, resolve) is by_name
    assert asked == ["dns"]


def test_pipeline_routes_a_registered_call_by_the_to_user() -> None:
    store = FakeStore(
        trunks={"reg": Trunk("reg", register=REG)},
        agents={"bot": Agent("bot", uris=("sip:bot@192.0.2.21:5090",))},
        dids={"+14155550100": Did("+14155550100", "reg", "bot")},
    )
    decision = pipeline.route_initial_invite(_req(REG.contact_user, "203.0.113.5"), store, RuntimeSettings())
    assert isinstance(decision, Relay) and decision.plan.current.uri == "sip:bot@192.0.2.21:5090"
    assert decision.headers["X-Edge-Trunk"] == "reg"
    refused = pipeline.route_initial_invite(_req(REG.contact_user, "203.0.113.99"), store, RuntimeSettings())
    assert isinstance(refused, Reject) and refused.code == 403
