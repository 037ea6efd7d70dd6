"""Gateway health: `edgectl trunk probe`, continuous OPTIONS pings by the monitor, LCR skipping
down gateways, and the state in `edgectl trunk show` and in the exporter's metrics."""

from __future__ import annotations

import json

from routing.tables import keys
from tests.sipp import gateway_scenario, reject_uac_scenario, uac, uas
from tests.helpers import wait_until

from .conftest import AGENT_IP, CARRIER_A, CARRIER_B, CARRIER_C, EDGE_IP, Edge
from .replies import final_invite_responses, header_values, status_line
from .test_edgectl import edgectl

GW_PORT = 5080
DEST = "+442071838750"


def gateway(edge: Edge, ip: str, options_code: int = 200, invite_code: int = 200):
    return uas(edge.workdir / f"gw-{ip}", ip, GW_PORT, scenario=gateway_scenario(edge.workdir, options_code, invite_code),
               calls=100000, answer_ms=100)


def place(edge: Edge, name: str) -> tuple[int, str]:
    return status_line(call(edge, name))


def call(edge: Edge, name: str) -> str:
    """One call from the agent; the final response it got, whole."""
    caller = uac(edge.workdir / name, AGENT_IP, 5070, edge.sip, DEST, scenario=reject_uac_scenario(edge.workdir))
    assert caller.wait() == 0, caller.output()
    [final] = final_invite_responses(caller)
    return final


def state(edge: Edge, trunk: str) -> dict[str, str]:
    return {a: dict(p.split("=", 1) for p in v.split(";"))["state"]
            for a, v in edge.redis.hgetall(keys.gateway_health(trunk)).items()}


def test_trunk_probe_reports_status_and_round_trip_per_gateway(clean_edge: Edge) -> None:
    edge = clean_edge
    up = gateway(edge, CARRIER_A)
    gateway(edge, CARRIER_C, options_code=503)
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, GW_PORT), (CARRIER_B, GW_PORT), (CARRIER_C, GW_PORT)])
    result = edgectl(edge, "trunk", "probe", "carrier-a", "--timeout", "400", "--json")
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: 2 of 3 gateway(s) of trunk 'carrier-a' failed the probe"
    rows = {r["gateway"]: r for r in json.loads(result.stdout)}
    a, b, c = (rows[f"{ip}:{GW_PORT}"] for ip in (CARRIER_A, CARRIER_B, CARRIER_C))
    assert (a["code"], a["reason"], a["ok"]) == (200, "Options 200", True) and 0 < a["rtt_ms"] < 400
    assert (b["code"], b["reason"], b["ok"], b["rtt_ms"]) == (0, "timeout", False, None)
    assert (c["code"], c["ok"]) == (503, False)
    [options] = up.received_requests("OPTIONS")
    assert f"Via: SIP/2.0/UDP {EDGE_IP}:" in options  # sent from the edge's own SIP address
    text = edgectl(edge, "trunk", "probe", "nope")
    assert text.returncode == 1 and text.stderr.strip() == "Error: no trunk 'nope'"


def test_down_gateway_is_skipped_by_lcr_and_shown_until_it_recovers(probing_edge: Edge, clean_edge: Edge) -> None:
    edge = clean_edge
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, GW_PORT)])
    edge.trunk("carrier-b", [f"{CARRIER_B}/32"], [(CARRIER_B, GW_PORT)])
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"])
    edge.route("+44", "carrier-a", "0.0100")  # cheapest, but nothing answers its OPTIONS
    edge.route("+44", "carrier-b", "0.0200")
    carrier_b = gateway(edge, CARRIER_B)
    version = int(edge.redis.get(keys.VERSION) or 0)
    wait_until(lambda: state(edge, "carrier-a") == {f"{CARRIER_A}:{GW_PORT}": "down"}
               and state(edge, "carrier-b") == {f"{CARRIER_B}:{GW_PORT}": "up"}, timeout=15, what="carrier-a down")
    assert edge.redis.smembers(keys.GATEWAYS_DOWN) == {f"carrier-a/{CARRIER_A}:{GW_PORT}"}
    assert int(edge.redis.get(keys.VERSION)) > version
    shown = json.loads(edgectl(edge, "trunk", "show", "carrier-a", "--json").stdout)["health"]
    assert shown[f"{CARRIER_A}:{GW_PORT}"]["state"] == "down" and shown[f"{CARRIER_A}:{GW_PORT}"]["code"] == 0
    text = edgectl(edge, "trunk", "show", "carrier-b", columns=200).stdout  # the health line unwrapped
    assert "health: up (last OPTIONS: 200 Options 200" in text
    metrics = edge.metrics("exporter")
    assert f'byoc_edge_gateway_up{{gateway="{CARRIER_A}:{GW_PORT}",trunk="carrier-a"}} 0.0' in metrics
    assert f'byoc_edge_gateway_up{{gateway="{CARRIER_B}:{GW_PORT}",trunk="carrier-b"}} 1.0' in metrics
    assert 'byoc_edge_gateway_probes_total{gateway="%s:%d",result="failed",trunk="carrier-a"}' % (CARRIER_A, GW_PORT) in metrics

    # the call goes straight to carrier-b: carrier-a is never tried (no failover delay)
    failovers = edge.log().count("edge: failover")
    assert place(edge, "call-1") == (200, "OK")
    assert len(carrier_b.received_requests("INVITE")) == 1
    assert edge.log().count("edge: failover") == failovers

    # every gateway down: a clear 503 with Retry-After, and no slot taken
    carrier_b.stop()
    wait_until(lambda: state(edge, "carrier-b") == {f"{CARRIER_B}:{GW_PORT}": "down"}, timeout=15, what="carrier-b down")
    final = call(edge, "call-2")
    assert status_line(final) == (503, "All Gateways Down")
    assert header_values(final, "Retry-After") == ["7"]  # limits.retry_after_s

    # carrier-a comes back: up after 2 answered probes, and takes the next call
    carrier_a = gateway(edge, CARRIER_A)
    wait_until(lambda: state(edge, "carrier-a") == {f"{CARRIER_A}:{GW_PORT}": "up"}, timeout=15, what="carrier-a up")
    assert place(edge, "call-3") == (200, "OK")
    assert len(carrier_a.received_requests("INVITE")) == 1


def test_trunk_without_probing_is_never_pinged_nor_skipped(probing_edge: Edge, clean_edge: Edge) -> None:
    edge = clean_edge
    silent = gateway(edge, CARRIER_C, options_code=503)  # a carrier that refuses OPTIONS but takes calls
    edge.trunk("carrier-c", [f"{CARRIER_C}/32"], [(CARRIER_C, GW_PORT)], probe=False)
    edge.trunk("carrier-b", [f"{CARRIER_B}/32"], [(CARRIER_B, GW_PORT)])
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"])
    edge.route("+44", "carrier-c", "0.0100")
    wait_until(lambda: state(edge, "carrier-b") == {f"{CARRIER_B}:{GW_PORT}": "down"}, timeout=15,
               what="a probe round after provisioning")
    assert not silent.received_requests("OPTIONS")
    assert not edge.redis.exists(keys.gateway_health("carrier-c"))
    assert place(edge, "call") == (200, "OK")
