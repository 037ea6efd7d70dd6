"""``edgectl explain`` against the running edge: refused calls (stranger 403, unknown DID 404, limit 503)
explained by Call-ID with the right stage and reason, a synthetic request explained without taking a
slot, and every refusal logged with the reason code of its metric label."""

from __future__ import annotations

import json
import re

from routing.tables import admin
from routing.tables.model import Did
from tests.sipp import reject_uac_scenario, uac, uas
from tests.helpers import wait_until

from .conftest import AGENT_IP, CARRIER_A, DID, STRANGER, Edge
from .test_edgectl import edgectl


def provision(edge: Edge, trunk_max: int | None = None) -> None:
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, 5080)], max_calls=trunk_max)
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"])
    edge.did(DID, "carrier-a", "bot")


def refused_call(edge: Edge, name: str, source: str, number: str) -> tuple[tuple[int, str], str]:
    """Place one call that is refused; returns its final status and its Call-ID."""
    caller = uac(edge.workdir / name, source, 5070, edge.sip, number, scenario=reject_uac_scenario(edge.workdir))
    assert caller.wait() == 0, caller.output()
    finals = caller.final_status()
    assert len(finals) == 1, caller.messages()
    call_id = re.search(r"^Call-ID:\s*(\S+)", caller.messages(), re.M | re.I).group(1)
    return finals[0], call_id


def explained(edge: Edge, *args: str) -> dict:
    result = edgectl(edge, "explain", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_refused_calls_are_explained_by_call_id(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, trunk_max=0)  # max_calls 0: the trunk refuses every call (a drained trunk)
    cases = [
        ("stranger", STRANGER, DID, (403, "Source Not Allowed"), "acl_source", "acl"),
        ("unknown-did", CARRIER_A, "+14155550199", (404, "DID Not Found"), "did_not_found", "did"),
        ("limit", CARRIER_A, DID, (503, "Trunk Limit Reached: carrier-a"), "trunk_limit", "limits"),
    ]
    for name, source, number, status, tag, stage in cases:
        final, call_id = refused_call(edge, name, source, number)
        assert final == status
        # the refusal is logged with its reason code (the metric label), then recorded for explain
        wait_until(lambda: f"edge: reject {status[0]} {tag} request call-id={call_id} " in edge.log(),
                   what=f"log line of the {tag} refusal")
        data = explained(edge, call_id)
        refusal = data["refusal"]
        assert (refusal["code"], refusal["reason"], refusal["tag"], refusal["stage"]) == (*status, tag, stage)
        assert refusal["src"].startswith(f"{source}:")
        replay = data["replay"]
        assert (replay["code"], replay["tag"], replay["stage"]) == (status[0], tag, stage)
        assert replay["steps"][-1]["stage"] == stage and not replay["steps"][-1]["ok"]
        # the call record of the attempt carries the same tag
        cdrs = wait_until(lambda: explained(edge, call_id)["cdrs"], what="call record of the refusal")
        assert [(c["status"], c["sip_code"], c["reject_tag"]) for c in cdrs] == [("rejected", status[0], tag)]

    # the human form names the stage too
    text = edgectl(edge, "explain", call_id).stdout
    assert "answer:  503 Trunk Limit Reached: carrier-a [trunk_limit] at stage limits" in text
    assert "trunk carrier-a: 0 of 0 calls: full" in text


def test_synthetic_request_runs_the_stages_without_taking_a_slot(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, trunk_max=2)
    before = edge.stored()
    data = explained(edge, "--source", f"{CARRIER_A}:5060", "--to", "sip:+14155550100@edge.example",
                     "--from", "sip:+14155550123@carrier")
    assert data["outcome"] == "relay"
    assert data["targets"] == [f"sip:{DID}@{AGENT_IP}:5090"]
    assert [s["stage"] for s in data["steps"]] == ["acl", "direction", "did", "limits", "limits", "caller", "targets"]
    assert data["steps"][3]["detail"] == "trunk carrier-a: 0 of 2 calls: a slot is free"
    assert edge.stored() == before  # dry run: nothing taken or written

    # a synthetic refusal; then a Call-ID nobody knows is a one-line error
    data = explained(edge, "--source", STRANGER, "--to", DID)
    assert (data["code"], data["tag"], data["stage"]) == (403, "acl_source", "acl")
    result = edgectl(edge, "explain", "no-such-call@nowhere")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "no record of call-id 'no-such-call@nowhere'" in result.stderr


def test_answered_call_is_explained_from_its_call_record(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario="uas_answer.xml", answer_ms=100)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario="uac_simple.xml", hold_ms=300)
    assert carrier.wait() == 0, carrier.output()
    assert agent.wait() == 0, agent.output()
    call_id = re.search(r"^Call-ID:\s*(\S+)", carrier.messages(), re.M | re.I).group(1)
    # the record may sit in a worker's spool a moment (replayed within 2 s) when an earlier test stopped redis
    data = wait_until(lambda: (r := edgectl(edge, "explain", call_id, "--json")).returncode == 0
                      and (d := json.loads(r.stdout))["cdrs"] and d, what="call record of the call")
    assert data["refusal"] is None
    (cdr,) = data["cdrs"]
    assert (cdr["status"], cdr["trunk"], cdr["agent"], cdr["number"]) == ("answered", "carrier-a", "bot", DID)
    text = edgectl(edge, "explain", call_id).stdout
    assert f"call record {cdr['id']}: answered origination" in text and "hung up by caller" in text


def test_explain_replays_against_the_current_tables(clean_edge: Edge) -> None:
    """After the fix (the DID is provisioned), the recorded refusal replays as admitted."""
    edge = clean_edge
    provision(edge)
    _, call_id = refused_call(edge, "before-fix", CARRIER_A, "+14155550177")
    admin.put_did(edge.redis, Did("+14155550177", "carrier-a", "bot"))
    data = explained(edge, call_id)
    assert data["refusal"]["tag"] == "did_not_found"
    assert data["replay"]["outcome"] == "relay"
