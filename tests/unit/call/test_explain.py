"""routing.call.explain: a recorded refusal replays to the same request; the trace hook of the
pipeline changes no decision."""

from __future__ import annotations

import json
from decimal import Decimal

from routing.call import explain, pipeline
from routing.call.decision import Reject, Relay
from routing.call.request import SipRequest
from routing.ops.runtime import RuntimeSettings
from routing.tables.model import Agent, Did, Gateway, RouteEntry, Trunk

from tests.fakes import FakeStore

RT = RuntimeSettings(node="n1", blocked_prefixes=("+1900",))


def req(src: str, ruri: str, call_id: str = "c1", **extra: object) -> SipRequest:
    return SipRequest(method="INVITE", call_id=call_id, src_ip=src, src_port=5060, proto="udp", ruri_user=ruri,
                      to_user=ruri, from_user="+14155550123", **extra)  # type: ignore[arg-type]


def test_trace_hook_changes_no_decision() -> None:
    store = FakeStore(
        trunks={"t": Trunk("t", cidrs=("192.0.2.0/24",), gateways=(Gateway("192.0.2.1"),))},
        agents={"a": Agent("a", uris=("sip:a@203.0.113.1",), cidrs=("203.0.113.0/24",))},
        dids={"+14155550100": Did("+14155550100", "t", "a")},
        route_table={"+1": [RouteEntry("+1", "t", Decimal("0.01"))]},
    )
    for request_ in (req("192.0.2.9", "+14155550100"), req("192.0.2.9", "+14155550111"), req("203.0.113.9", "+15551234567"),
                     req("10.0.0.1", "+1")):
        plain = pipeline.route_initial_invite(request_, store, RT)
        traced = pipeline.route_initial_invite(request_, store, RT, [])
        assert type(plain) is type(traced)
        if isinstance(plain, Reject):
            assert plain == traced
        else:
            assert isinstance(plain, Relay) and plain.plan.targets == traced.plan.targets


def test_refusal_record_replays_to_the_same_request() -> None:
    original = req("192.0.2.7", "4155550100", call_id="abc@h", auth_user="u1")
    record = json.loads(explain.refusal_record(original, Reject(404, "DID Not Found", "did_not_found"), "n1", "request"))
    assert record["stage"] == "did" and record["src"] == "192.0.2.7:5060"
    again = explain.replay_request(record, "abc@h")
    assert (again.src_ip, again.src_port, again.ruri_user, again.from_user, again.auth_user) == (
        "192.0.2.7", 5060, "4155550100", "+14155550123", "u1")
