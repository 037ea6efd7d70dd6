"""Caller ID policy of termination calls (routing.call.callerid), alone and through the pipeline."""

from __future__ import annotations

from dataclasses import replace

import pytest

from routing.call import callerid
from routing.call.decision import Reject, Relay
from routing.call.pipeline import route_initial_invite
from routing.tables.model import Agent, CallerIdAction, CallerIdPolicy, Did, Gateway, RouteEntry, Trunk
from tests.unit.call.test_pipeline import AGENT_IP, RT, invite, make_store, route


@pytest.mark.parametrize(("caller", "allowed", "dids", "did_agent", "ok"), [
    ("+14155550123", (), False, None, True),  # no restriction
    ("+14155550123", ("+1415",), False, None, True),
    ("+12125550123", ("+1415",), False, None, False),
    ("+12125550123", (), True, "bot", True),  # one of the agent's DIDs
    ("+12125550123", (), True, "other", False),
    ("", ("+1",), False, None, False),  # anonymous From under a list
])
def test_agent_allows(caller: str, allowed: tuple, dids: bool, did_agent: str | None, ok: bool) -> None:
    assert callerid.agent_allows(caller, allowed, dids, did_agent, "bot") is ok


def _verdict(policy: CallerIdPolicy, action: CallerIdAction, caller: str, default: str = "+14155550100",
             verified: tuple = ()) -> callerid.TrunkVerdict:
    dids = {"+14155550100": "a", "+14155550101": "b"}
    return callerid.trunk_verdict("a", policy, action, verified, caller, default, dids.get)


def test_trunk_verdicts() -> None:
    assert _verdict(CallerIdPolicy.PASS, CallerIdAction.REFUSE, "+19995550000").presented == "+19995550000"
    owned = _verdict(CallerIdPolicy.OWNED, CallerIdAction.REFUSE, "+14155550100")
    assert owned.usable and owned.presented == "+14155550100"
    verified = _verdict(CallerIdPolicy.OWNED, CallerIdAction.REFUSE, "+16505550000", verified=("+16505550000",))
    assert verified.usable
    refused = _verdict(CallerIdPolicy.OWNED, CallerIdAction.REFUSE, "+14155550101")  # a DID of another trunk
    assert not refused.usable and "not owned on trunk a" in refused.why
    replaced = _verdict(CallerIdPolicy.OWNED, CallerIdAction.REPLACE, "+19995550000")
    assert replaced.usable and replaced.presented == "+14155550100"
    unowned_default = _verdict(CallerIdPolicy.OWNED, CallerIdAction.REPLACE, "+19995550000", default="+14155550101")
    assert not unowned_default.usable


def _termination_store(**trunk_a: object):
    store = make_store()
    store.trunks["a"] = Trunk("a", gateways=(Gateway("192.0.2.31"),), **trunk_a)  # type: ignore[arg-type]
    store.trunks["b"] = Trunk("b", gateways=(Gateway("192.0.2.32"),))
    store.route_table["+44"] = [route("+44", "a", "0.01"), route("+44", "b", "0.02")]
    store.dids["+14155550177"] = Did("+14155550177", "a", "bot")
    return store


def _call(store, from_user: str):
    return route_initial_invite(invite(AGENT_IP, "+442071838750", from_user=from_user), store, RT)


def test_an_owned_trunk_refusing_moves_the_call_to_a_passing_trunk() -> None:
    store = _termination_store(caller_id_policy=CallerIdPolicy.OWNED)
    decision = _call(store, "+19995550000")
    assert isinstance(decision, Relay), decision
    assert [t.trunk for t in decision.plan.targets] == ["b"] and decision.plan.present_caller == ""


def test_an_owned_trunk_replaces_by_the_agents_owned_default_and_the_call_presents_it() -> None:
    store = _termination_store(caller_id_policy=CallerIdPolicy.OWNED, caller_id_action=CallerIdAction.REPLACE)
    store.agents["bot"] = replace(store.agents["bot"], caller_id="+14155550177")
    decision = _call(store, "+19995550000")
    assert isinstance(decision, Relay), decision
    # a presents the default, so b (which would pass the agent's own) is skipped: one From per call
    assert [t.trunk for t in decision.plan.targets] == ["a"] and decision.plan.present_caller == "+14155550177"


def test_the_agents_own_owned_number_passes_unchanged() -> None:
    store = _termination_store(caller_id_policy=CallerIdPolicy.OWNED)
    decision = _call(store, "+14155550177")
    assert isinstance(decision, Relay) and [t.trunk for t in decision.plan.targets] == ["a", "b"]
    assert decision.plan.present_caller == ""


def test_an_agent_may_present_only_its_list_else_its_default_else_403() -> None:
    store = _termination_store()
    store.agents["bot"] = replace(store.agents["bot"], caller_ids=("+1415",))
    assert _call(store, "+12125550123") == Reject(403, "Caller ID Not Allowed", "caller_id")
    store.agents["bot"] = replace(store.agents["bot"], caller_id="+14155550177")
    decision = _call(store, "+12125550123")
    assert isinstance(decision, Relay) and decision.plan.present_caller == "+14155550177"
    assert _call(store, "+14155550199").plan.present_caller == ""  # type: ignore[union-attr]


def test_no_trunk_owning_the_caller_id_is_a_403() -> None:
    store = _termination_store(caller_id_policy=CallerIdPolicy.OWNED)
    store.trunks["b"] = replace(store.trunks["b"], caller_id_policy=CallerIdPolicy.OWNED)
    decision = _call(store, "+19995550000")
    assert isinstance(decision, Reject) and (decision.code, decision.reason) == (403, "Caller ID Not Allowed")
    assert store.acquired == []  # nothing admitted


def _signing(**fields: object) -> Trunk:
    return Trunk("carrier", stir_sign=True, verified_caller_ids=("+14155550199",), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("number", "agent", "attest"), [
    ("+14155550100", Agent("bot"), "A"),                              # a DID of the trunk
    ("+14155550199", Agent("bot"), "A"),                              # a verified number of the trunk
    ("+14155550123", Agent("bot", caller_ids=("+1415",)), "B"),       # the agent is restricted to it
    ("+14155550123", Agent("bot", present_dids=True), "B"),
    ("+12125550123", Agent("bot"), "C"),                              # an unrestricted agent's number
])
def test_shaken_attestation(number: str, agent: Agent, attest: str) -> None:
    did_trunk = {"+14155550100": "carrier"}.get
    signed = callerid.shaken(_signing(), agent, number, "+442071838750", did_trunk)
    assert signed == {"orig": number[1:], "dest": "442071838750", "attest": attest}


def test_nothing_is_signed_off_a_signing_trunk_or_for_a_number_that_is_no_e164() -> None:
    assert callerid.shaken(Trunk("carrier"), Agent("bot"), "+14155550100", "+442071838750", lambda n: None) is None
    assert callerid.shaken(_signing(), Agent("bot"), "anonymous", "+442071838750", lambda n: None) is None
