"""routing.call.accounts through routing.call.pipeline over an in-memory store: an agent terminates only
over its account's trunks (or shared route entries), a DID's agent is of its trunk's account, the
account's slot joins the admission, its spend cap refuses, and a deployment without accounts takes
no account lease and reads no account spend."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from tests.fakes import FakeStore
from tests.unit.call.test_pipeline import AGENT_IP, CARRIER_IP, RT, assert_reject, invite, make_store, route

from routing.call.decision import Relay, STAGE_OF_TAG
from routing.call.pipeline import route_initial_invite
from routing.tables import keys
from routing.tables.model import Account, Agent, Trunk


def accounts_store(shared: bool = False) -> FakeStore:
    """telnyx (account acme) and twilio (account globex) both route +1; bot is of acme, other of globex."""
    store = make_store()
    telnyx = replace(store.trunks["telnyx"], account="acme")
    twilio = Trunk(name="twilio", gateways=telnyx.gateways, account="globex")
    store.trunks.update(telnyx=telnyx, twilio=twilio)
    store.agents["bot"] = replace(store.agents["bot"], account="acme")
    store.agents["other"] = Agent(name="other", uris=("sip:other@10.7.0.2",), cidrs=("10.7.0.0/24",), account="globex")
    store.accounts = {"acme": Account("acme", max_calls=3, max_cps=2.0), "globex": Account("globex")}
    store.route_table["+1"] = [route("+1", "telnyx", "0.001"), replace(route("+1", "twilio", "0.002"), shared=shared)]
    return store


def test_an_agent_reaches_only_its_accounts_trunk() -> None:
    store = accounts_store()
    decision = route_initial_invite(invite(AGENT_IP, "+14155550123"), store, RT)
    assert isinstance(decision, Relay) and [t.trunk for t in decision.plan.targets] == ["telnyx"]
    assert decision.plan.account == "acme"


def test_an_agent_of_another_account_is_refused_403_at_stage_route() -> None:
    store = accounts_store()
    store.route_table["+1"] = [route("+1", "telnyx", "0.001")]  # only acme's trunk serves +1
    decision = route_initial_invite(invite("10.7.0.9", "+14155550123"), store, RT)
    assert_reject(decision, 403, "Trunk Of Another Account")
    assert STAGE_OF_TAG[decision.tag] == "route" and decision.account == "globex"  # type: ignore[union-attr]
    assert decision.trunk == ""  # type: ignore[union-attr]  # acme's trunk is not named in globex's record
    assert store.acquired == []  # refused before any slot


def test_a_shared_route_entry_is_open_to_every_account() -> None:
    store = accounts_store(shared=True)
    decision = route_initial_invite(invite("10.7.0.9", "+14155550123"), store, RT)
    assert isinstance(decision, Relay) and [t.trunk for t in decision.plan.targets] == ["twilio"]


def test_the_accounts_slot_joins_the_agents_admission() -> None:
    store = accounts_store()
    route_initial_invite(invite(AGENT_IP, "+14155550123"), store, RT)
    first = store.acquired[0]
    assert [lease.key for lease in first["leases"]] == [keys.agent_lease("bot"), keys.account_lease("acme")]  # type: ignore[union-attr]
    account = first["leases"][1]  # type: ignore[index]
    assert (account.limit, account.cps, account.bucket) == (3, 2.0, keys.account_cps("acme"))
    assert first["facts"]["account"] == "acme"  # type: ignore[index]


def test_a_full_account_is_refused_503_naming_it() -> None:
    store = accounts_store()
    store.full_keys.add(keys.account_lease("acme"))
    decision = route_initial_invite(invite(AGENT_IP, "+14155550123"), store, RT)
    assert_reject(decision, 503, "Account Limit Reached: acme", 7)
    assert STAGE_OF_TAG[decision.tag] == "limits"  # type: ignore[union-attr]
    store.full_keys.clear()
    store.paced_keys[keys.account_lease("acme")] = 1500
    assert_reject(route_initial_invite(invite(AGENT_IP, "+14155550123"), store, RT), 503,
                  "Account CPS Limit Reached: acme", 2)


def test_an_account_at_its_spend_cap_is_refused_403() -> None:
    store = accounts_store()
    store.accounts["acme"] = Account("acme", daily_spend_cap=Decimal("1.50"))
    store.spent["account:acme"] = 1_499_999
    assert isinstance(route_initial_invite(invite(AGENT_IP, "+14155550123"), store, RT), Relay)
    store.spent["account:acme"] = 1_500_000
    decision = route_initial_invite(invite(AGENT_IP, "+14155550123", call_id="c2"), store, RT)
    assert_reject(decision, 403, "Account Spend Cap Reached: acme")
    assert STAGE_OF_TAG[decision.tag] == "route"  # type: ignore[union-attr]


def test_origination_takes_the_trunks_account_slot_and_refuses_an_agent_of_another_account() -> None:
    store = accounts_store()
    decision = route_initial_invite(invite(CARRIER_IP, "4155550100"), store, RT)
    assert isinstance(decision, Relay) and decision.plan.account == "acme"
    assert keys.account_lease("acme") in [lease.key for lease in store.acquired[0]["leases"]]  # type: ignore[union-attr]
    store.agents["bot"] = replace(store.agents["bot"], account="globex")  # a hand edit edgectl refuses
    decision = route_initial_invite(invite(CARRIER_IP, "4155550100", call_id="c2"), store, RT)
    assert_reject(decision, 403, "Agent Of Another Account")
    assert STAGE_OF_TAG[decision.tag] == "agent"  # type: ignore[union-attr]


class CountingStore(FakeStore):
    """Records the account each route lookup asked the spend of."""

    asked: list[str]

    def route_lookup(self, number, spend_of=(), account=""):  # type: ignore[no-untyped-def]
        self.asked.append(account)
        return super().route_lookup(number, spend_of, account)


def test_a_deployment_without_accounts_takes_no_account_lease_and_reads_no_account_spend() -> None:
    base = make_store()
    store = CountingStore(trunks=base.trunks, agents=base.agents, dids=base.dids)
    store.asked = []
    store.route_table["+1"] = [route("+1", "telnyx", "0.001")]
    decision = route_initial_invite(invite(AGENT_IP, "+14155550123"), store, RT)
    assert isinstance(decision, Relay) and decision.plan.account == ""
    assert store.asked == [""]
    assert all(not lease.key.startswith(keys.account_lease("")[:-1]) for a in store.acquired for lease in a["leases"])  # type: ignore[union-attr]
    assert "account" not in store.acquired[0]["facts"]  # type: ignore[operator]
