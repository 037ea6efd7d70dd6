"""Caller ID policy of termination calls (routing.call.callerid), alone and through the pipeline."""

from __future__ import annotations

from dataclasses import replace

import pytest

from routing.call import callerid
from routing.call.decision import Reject, Relay
from routing.call.pipeline import route_initial_invite, terminate
from routing.tables.model import (Agent, CallerIdAction, CallerIdPolicy, Did, ForwardedCallerId, Gateway, RouteEntry,
                                  Trunk)
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


CALLER, DID_A, DID_B = "+12125550123", "+14155550100", "+14155550101"
_DIDS = {DID_A: "a", DID_B: "b"}


def _forwarded(mode: ForwardedCallerId = ForwardedCallerId.DIVERSION, policy: CallerIdPolicy = CallerIdPolicy.OWNED,
               action: CallerIdAction = CallerIdAction.REFUSE, caller: str = CALLER, did: str = DID_A,
               fixed: bool = False, default: str = "", verified: tuple = ()) -> callerid.TrunkVerdict:
    trunk = Trunk("a", forwarded_caller_id=mode, caller_id_policy=policy, caller_id_action=action,
                  verified_caller_ids=verified)
    return callerid.forwarded_verdict(trunk, callerid.Forward(caller, did, fixed), default, _DIDS.get)


def test_a_forward_naming_an_owned_did_counts_as_owned() -> None:
    """The owned rule of forwarded legs (issue 14): under ``owned`` the original caller (not owned)
    is neither replaced nor refused when the leg's Diversion names a DID owned on the trunk."""
    v = _forwarded()
    assert (v.usable, v.presented, v.diverted_from) == (True, CALLER, DID_A)
    assert "a forward from an owned DID counts as owned" in v.why and "Diversion naming +14155550100" in v.why
    v = _forwarded(did=DID_B, verified=(DID_B,))  # a DID of another trunk that this one verified
    assert (v.usable, v.presented, v.diverted_from) == (True, CALLER, DID_B)
    # the same with replace and an owned default: still the original caller, not replaced
    v = _forwarded(action=CallerIdAction.REPLACE, default=DID_A)
    assert (v.usable, v.presented) == (True, CALLER)


def test_a_forward_from_a_did_owned_elsewhere_or_without_diversion_is_not_owned() -> None:
    v = _forwarded(did=DID_B)
    assert not v.usable and "the caller ID policy is owned and +14155550101 is not owned there" in v.why
    v = _forwarded(mode=ForwardedCallerId.CALLER)
    assert not v.usable and v.why.endswith(f"{CALLER} is not owned there")
    v = _forwarded(mode=ForwardedCallerId.CALLER, verified=(CALLER,))  # the caller itself verified there
    assert v.usable and v.diverted_from == ""
    # replace: the agent's owned default, without Diversion; never on a leg whose From is fixed
    v = _forwarded(did=DID_B, action=CallerIdAction.REPLACE, default=DID_A)
    assert (v.usable, v.presented, v.diverted_from) == (True, DID_A, "") and "replaced by the agent's default" in v.why
    assert not _forwarded(did=DID_B, action=CallerIdAction.REPLACE, default=DID_A, fixed=True).usable


def test_forwarded_caller_id_modes_on_a_passing_trunk() -> None:
    pass_ = CallerIdPolicy.PASS
    assert (_forwarded(policy=pass_).presented, _forwarded(policy=pass_).diverted_from) == (CALLER, DID_A)
    assert _forwarded(policy=pass_).why.endswith("the trunk passes any caller ID")
    caller = _forwarded(ForwardedCallerId.CALLER, pass_)
    assert (caller.presented, caller.diverted_from) == (CALLER, "")
    did = _forwarded(ForwardedCallerId.DID, pass_)
    assert (did.presented, did.diverted_from) == (DID_A, "")
    # a DID's fallback keeps the carrier's From: did acts as diversion there
    fixed = _forwarded(ForwardedCallerId.DID, pass_, fixed=True)
    assert (fixed.presented, fixed.diverted_from) == (CALLER, DID_A)
    # an anonymous transferee: the DID, without Diversion; a fallback keeps it anonymous, with Diversion
    anon = _forwarded(policy=pass_, caller="anonymous")
    assert (anon.presented, anon.diverted_from) == (DID_A, "")
    anon = _forwarded(policy=pass_, caller="anonymous", fixed=True)
    assert (anon.presented, anon.diverted_from) == ("anonymous", DID_A)
    # under owned, a DID presented itself is owned by the usual rule
    assert _forwarded(ForwardedCallerId.DID).usable and not _forwarded(ForwardedCallerId.DID, did=DID_B).usable


def test_diversion_header_value() -> None:
    assert callerid.diversion(DID_A, "192.0.2.1", "deflection") == "<sip:+14155550100@192.0.2.1>;reason=deflection;counter=1"


def test_a_transfer_leg_through_the_pipeline_keeps_the_original_caller_on_an_owned_trunk() -> None:
    """The edge's transfer leg routed as the agent's termination call with a :class:`Forward`: an
    ``owned`` trunk owning the DID takes it with the original caller and the DID as Diversion (no
    replacement, though the agent restricts its caller IDs); a trunk that does not own it is
    skipped; the trace names the rule."""
    store = _termination_store(caller_id_policy=CallerIdPolicy.OWNED)
    store.trunks["b"] = replace(store.trunks["b"], caller_id_policy=CallerIdPolicy.OWNED)
    agent = replace(store.agents["bot"], caller_ids=("+1415",), caller_id="+14155550177")
    trace: list = []
    leg = invite("127.0.0.1", "+442071838750", from_user=CALLER)
    decision = terminate(leg, agent, store.topology(), store, RT, trace, callerid.Forward(CALLER, "+14155550177"))
    assert isinstance(decision, Relay), decision
    assert [(t.trunk, t.diverted_from) for t in decision.plan.targets] == [("a", "+14155550177")]
    assert decision.plan.present_caller == ""  # the From goes as the edge wrote it: the original caller
    assert any("a forward from an owned DID counts as owned" in s.detail and s.stage == "callerid" for s in trace)
    assert any(s.stage == "route" and "trunk b skipped" in s.detail for s in trace)
    # a DID owned nowhere on the route: no trunk takes it
    refused = terminate(leg, agent, store.topology(), store, RT, None, callerid.Forward(CALLER, "+19995550000"))
    assert isinstance(refused, Reject) and (refused.code, refused.reason) == (403, "Caller ID Not Allowed")


def test_a_transfer_leg_over_a_did_trunk_presents_the_did_and_skips_a_trunk_that_needs_another() -> None:
    store = _termination_store(forwarded_caller_id=ForwardedCallerId.DID)
    decision = terminate(invite("127.0.0.1", "+442071838750", from_user=CALLER), store.agents["bot"], store.topology(),
                         store, RT, None, callerid.Forward(CALLER, "+14155550177"))
    assert isinstance(decision, Relay), decision
    # a presents the DID, b would present the caller: one From per call
    assert [(t.trunk, t.diverted_from) for t in decision.plan.targets] == [("a", "")]
    assert decision.plan.present_caller == "+14155550177"


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
