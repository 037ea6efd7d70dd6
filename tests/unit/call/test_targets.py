"""routing.call.targets: a DID's fallback to a number under the carriers' ``forwarded_caller_id`` and
caller ID policy, and under accounts (docs/identity.md#forwarded-calls, #accounts)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from routing.call.decision import Step
from routing.call.targets import fallback_targets
from routing.tables.model import Account, Agent, CallerIdPolicy, Did, ForwardedCallerId, Gateway, RouteEntry, Trunk
from routing.tables.model.did import parse_fallback
from routing.tables.store import Topology
from tests.unit.call.test_pipeline import RT

DID = Did("+14155550100", "carrier-a", "bot", parse_fallback("number:+442071838751", "test"))
BOT = Agent("bot", uris=("sip:bot@10.0.0.1",))


def targets(carrier: Trunk, shared: bool = False, agent: Agent = BOT) -> tuple[list, list[Step]]:
    topology = Topology(trunks={"carrier-a": Trunk("carrier-a"), carrier.name: carrier}, agents={"bot": agent},
                        accounts={"acme": Account("acme")})
    entry = RouteEntry("+44", carrier.name, Decimal("0.02"), shared=shared)
    trace: list[Step] = []
    found = fallback_targets(DID, agent, topology.trunks["carrier-a"], topology,
                             RT, trace, lambda number: ([entry], frozenset()))
    return found, trace


def test_a_forwarded_leg_names_the_did_in_diversion_unless_the_trunk_says_no() -> None:
    carrier = Trunk("carrier-b", gateways=(Gateway("192.0.2.20"),))
    [hop], _ = targets(carrier)
    assert hop.diverted_from == DID.number and hop.trunk == "carrier-b"
    [hop], _ = targets(replace(carrier, forwarded_caller_id=ForwardedCallerId.CALLER))
    assert hop.diverted_from == ""
    # did cannot change the carrier's From on a fallback branch: it names the DID as diversion does
    [hop], _ = targets(replace(carrier, forwarded_caller_id=ForwardedCallerId.DID))
    assert hop.diverted_from == DID.number


def test_an_owned_trunk_takes_a_forwarded_leg_only_when_it_names_a_did_owned_there() -> None:
    owned = Trunk("carrier-b", gateways=(Gateway("192.0.2.20"),), caller_id_policy=CallerIdPolicy.OWNED)
    found, trace = targets(owned)
    assert found == [] and "the caller ID policy is owned and +14155550100 is not owned there" in trace[0].detail
    assert trace[0].detail.endswith("trunk carrier-b skipped")
    [hop], trace = targets(replace(owned, verified_caller_ids=(DID.number,)))
    assert hop.diverted_from == DID.number and "a forward from an owned DID counts as owned" in trace[0].detail
    found, trace = targets(replace(owned, verified_caller_ids=(DID.number,), forwarded_caller_id=ForwardedCallerId.CALLER))
    assert found == [] and "without Diversion" in trace[0].detail


def test_a_forwarded_leg_uses_only_the_agents_account_trunks_or_shared_entries() -> None:
    other = Trunk("carrier-b", gateways=(Gateway("192.0.2.20"),), account="acme")
    assert targets(other)[0] == []  # bot is of no account
    assert len(targets(other, shared=True)[0]) == 1
    assert len(targets(other, agent=replace(BOT, account="acme"))[0]) == 1
