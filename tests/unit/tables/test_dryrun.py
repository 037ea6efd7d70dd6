"""routing.tables.dryrun against a real redis: the pipeline's stages with the trace hook, a dry admission that
writes nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest
import redis

from routing.tables import admin, keys
from routing.call import explain, pipeline
from routing.tables import dryrun
from routing.tables.model import Agent, AuthMode, Did, Direction, Gateway, RouteEntry, Trunk
from routing.call.request import SipRequest
from routing.ops.runtime import RuntimeSettings
from routing.tables.store import Lease, RedisStore

RT = RuntimeSettings(node="n1", blocked_prefixes=("+1900",))


def req(src: str, ruri: str, call_id: str = "c1", **extra: object) -> SipRequest:
    return SipRequest(method="INVITE", call_id=call_id, src_ip=src, src_port=5060, proto="udp", ruri_user=ruri,
                      to_user=ruri, from_user="+14155550123", **extra)  # type: ignore[arg-type]


@pytest.fixture
def tables(redis_client: redis.Redis) -> RedisStore:
    admin.put_trunk(redis_client, Trunk("carrier-a", cidrs=("192.0.2.0/24",), max_calls=1,
                                        gateways=(Gateway("192.0.2.10"),)))
    admin.put_trunk(redis_client, Trunk("carrier-b", cidrs=("198.51.100.0/24",), direction=Direction.INBOUND,
                                        gateways=(Gateway("198.51.100.10"),)))
    admin.put_trunk(redis_client, Trunk("carrier-c", cidrs=("198.18.0.0/24",), direction=Direction.OUTBOUND))
    admin.put_agent(redis_client, Agent("bot", uris=("sip:bot@203.0.113.20",), cidrs=("203.0.113.0/24",)))
    admin.put_did(redis_client, Did("+14155550100", "carrier-a", "bot"))
    admin.put_route(redis_client, RouteEntry("+44", "carrier-a", Decimal("0.01")))
    admin.put_route(redis_client, RouteEntry("+44", "carrier-b", Decimal("0.001")))
    return RedisStore(redis_client, "n1")


def everything(client: redis.Redis) -> dict:
    return {k: client.dump(k) for k in client.keys("*")}


def stages(result: explain.Explanation) -> list[tuple[str, bool]]:
    return [(s.stage, s.ok) for s in result.steps]


def test_origination_admitted_shows_every_stage_and_writes_nothing(tables: RedisStore) -> None:
    before = everything(tables.client)
    result = dryrun.explain_request(tables, RT, req("192.0.2.7", "+14155550100"))
    assert result.outcome == "relay" and result.targets == ["sip:bot@203.0.113.20"]
    assert stages(result) == [("acl", True), ("direction", True), ("did", True), ("limits", True), ("limits", True),
                              ("caller", True), ("targets", True)]
    assert "matches trunk carrier-a (192.0.2.0/24): origination" in result.steps[0].detail
    assert result.steps[3].detail == "trunk carrier-a: 0 of 1 calls: a slot is free"
    assert everything(tables.client) == before


@pytest.mark.parametrize(
    ("request_", "code", "tag", "stage", "detail"),
    [
        (req("10.9.9.9", "+14155550100"), 403, "acl_source", "acl", "source 10.9.9.9 is in no trunk's or agent's CIDRs"),
        (req("192.0.2.7", "+14155550199"), 404, "did_not_found", "did", "'+14155550199' -> +14155550199: the DID is not provisioned"),
        (req("198.18.0.3", "+14155550100"), 403, "trunk_direction", "direction", "trunk carrier-c is outbound-only"),
        (req("203.0.113.5", "+19005550100"), 403, "destination_policy", "policy", "+19005550100 is blocked for agent bot"),
        (req("203.0.113.5", "+33155550100"), 404, "no_route", "route", "no route prefix matches +33155550100"),
        (req("203.0.113.5", "12"), 484, "bad_number", "number", "'12' is not an E.164 destination"),
    ],
)
def test_refusals_name_their_stage(tables: RedisStore, request_: SipRequest, code: int, tag: str, stage: str,
                                   detail: str) -> None:
    result = dryrun.explain_request(tables, RT, request_)
    assert (result.outcome, result.code, result.tag, result.stage) == ("reject", code, tag, stage)
    refused = [s for s in result.steps if not s.ok]
    assert refused and refused[-1].stage == stage and refused[-1].detail.startswith(detail), result.steps


def test_full_trunk_is_reported_without_taking_a_slot(tables: RedisStore) -> None:
    real = tables.acquire("busy", [pipeline.trunk_lease(Trunk("carrier-a", max_calls=1))], 60)
    assert real.admitted
    before = everything(tables.client)
    result = dryrun.explain_request(tables, RT, req("192.0.2.7", "+14155550100"))
    assert (result.code, result.reason, result.tag, result.stage) == (503, "Trunk Limit Reached: carrier-a",
                                                                      "trunk_limit", "limits")
    assert result.steps[-1].detail == "trunk carrier-a: 1 of 1 calls: full"
    assert everything(tables.client) == before


def test_termination_lists_skipped_trunks_and_carriers_in_order(tables: RedisStore) -> None:
    result = dryrun.explain_request(tables, RT, req("203.0.113.5", "+442071838750"))
    assert result.outcome == "relay"
    details = [s.detail for s in result.steps]
    assert "longest prefix +44: carrier-b (rate 0.001, priority 10), carrier-a (rate 0.01, priority 10)" in details
    assert "trunk carrier-b skipped: it is inbound-only" in details
    assert result.targets == ["sip:+442071838750@192.0.2.10:5060"]


def test_empty_cps_bucket_is_reported(tables: RedisStore) -> None:
    lease = Lease(keys.trunk_lease("x"), None, "trunk x", cps=1.0, bucket=keys.trunk_cps("x"))
    assert tables.acquire("a", [lease], 60).admitted  # takes the only token
    steps: list = []
    admission = dryrun.DryRunStore(tables, steps).acquire("b", [lease], 60)
    assert not admission.admitted and admission.paced and admission.tag == "trunk_cps"
    assert "CPS bucket empty" in steps[0].detail


def test_digest_trunk_is_explained_as_authenticated(tables: RedisStore, redis_client: redis.Redis) -> None:
    admin.put_trunk(redis_client, Trunk("pbx", cidrs=("192.0.2.128/25",), auth=AuthMode.BOTH))
    result = dryrun.explain_request(tables, RT, req("192.0.2.200", "+14155550100"))
    assert ("auth", False) in stages(result) and result.tag == "auth_failed"  # no credentials stored
    result = dryrun.explain_request(tables, RT, req("10.9.9.9", "+14155550100"))
    assert result.outcome == "reject"  # no digest-only trunk: strangers are refused by the ACL
