"""``edgectl apply``/``export`` against the running edge: a call follows the applied file; dry runs and
invalid files write nothing; export -> apply is a no-op."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from routing.tables import keys
from tests.sipp import reject_uac_scenario, uac, uas

from .conftest import AGENT_IP, CARRIER_A, DID, Edge
from .test_edgectl import edgectl

AGENT_PORT = 5090


def tables(agent_port: int = AGENT_PORT) -> dict:
    return {
        "trunks": [{
            "name": "carrier-a", "direction": "both", "max_calls": 4, "cidrs": [f"{CARRIER_A}/32"],
            "gateways": [{"host": CARRIER_A, "port": 5080}],
            "number_format": {"country_code": "1", "national_length": 10, "international_prefix": "011"},
        }],
        "agents": [{"name": "bot", "uris": [f"sip:{AGENT_IP}:{agent_port}"], "cidrs": [f"{AGENT_IP}/32"]}],
        "dids": [{"number": DID, "trunk": "carrier-a", "agent": "bot"}],
        "routes": [{"prefix": "+1", "trunk": "carrier-a", "rate": "0.004"}],
    }


def dump(edge: Edge, data: dict, name: str) -> Path:
    path = edge.workdir / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def everything(edge: Edge) -> dict:
    return edge.stored("edge:*")


def test_applied_file_routes_the_next_call(clean_edge: Edge) -> None:
    edge = clean_edge
    result = edgectl(edge, "apply", str(dump(edge, tables(), "tables.yaml")))
    assert result.returncode == 0, result.stderr
    # one bump (an empty database starts edge:version from the clock: docs/redis-schema.md)
    assert f"applied (edge:version {edge.redis.get(keys.VERSION)})" in result.stdout
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario="uas_answer.xml", answer_ms=100)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, "4155550100", scenario="uac_simple.xml", hold_ms=300)
    assert carrier.wait() == 0, carrier.output()
    assert agent.wait() == 0, agent.output()
    assert f"X-Edge-DID: {DID}" in agent.received_requests("INVITE")[0]

    # export -> apply --prune of the same data changes nothing, not even edge:version
    exported = edge.workdir / "exported.yaml"
    assert edgectl(edge, "export", "-o", str(exported)).returncode == 0
    before = everything(edge)
    result = edgectl(edge, "apply", str(exported), "--prune")
    assert result.returncode == 0, result.stderr
    assert "nothing to change" in result.stdout
    assert everything(edge) == before


def test_dry_run_and_invalid_file_write_nothing(clean_edge: Edge) -> None:
    edge = clean_edge
    assert edgectl(edge, "apply", str(dump(edge, tables(), "tables.yaml"))).returncode == 0
    before = everything(edge)
    version = edge.redis.get(keys.VERSION)

    moved = tables(agent_port=5091)
    result = edgectl(edge, "apply", str(dump(edge, moved, "moved.yaml")), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"    uris: [sip:{AGENT_IP}:{AGENT_PORT}] -> [sip:{AGENT_IP}:5091]" in result.stdout
    assert "dry run: nothing written" in result.stdout
    assert everything(edge) == before

    broken = tables(agent_port=5091)
    broken["dids"][0]["agent"] = "ghost"
    result = edgectl(edge, "apply", str(dump(edge, broken, "broken.yaml")))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: {edge.workdir / 'broken.yaml'}: dids[0] ({DID}): no agent 'ghost' in the file or in redis"
    ]
    assert everything(edge) == before
    assert edge.redis.get(keys.VERSION) == version

    # the edge still routes per the first file: the agent on 5091 never gets the call
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario="uas_answer.xml", answer_ms=100)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario="uac_simple.xml", hold_ms=200)
    assert carrier.wait() == 0, carrier.output()
    assert agent.wait() == 0, agent.output()

    # pruning the DID takes effect on the next call
    pruned = tables()
    pruned["dids"] = []
    result = edgectl(edge, "apply", str(dump(edge, pruned, "pruned.yaml")), "--prune")
    assert result.returncode == 0 and f"- did {DID}" in result.stdout, result.stdout + result.stderr
    caller = uac(edge.workdir / "refused", CARRIER_A, 5070, edge.sip, DID, scenario=reject_uac_scenario(edge.workdir))
    assert caller.wait() == 0, caller.output()
    assert caller.final_status() == [(404, "DID Not Found")]


def tls_cfg(edge: Edge) -> str:
    return (Path(edge.settings.run_dir) / "tls.cfg").read_text()


def test_applied_tls_ca_is_loaded_into_kamailio(clean_edge: Edge) -> None:
    """A trunk's tls_ca set by apply reaches tls.cfg and the running Kamailio, as with edgectl trunk add."""
    edge = clean_edge
    data = tables()
    data["trunks"][0]["tls_ca"] = str(edge.settings.tls_certificate)  # a PEM file: the edge's own certificate
    data["trunks"][0]["gateways"] = [{"host": CARRIER_A, "port": 5061, "transport": "tls"}]
    result = edgectl(edge, "apply", str(dump(edge, data, "tls.yaml")), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["applied"] is True  # the note about tls.cfg went to stderr
    assert "per-trunk CA profiles rewritten and reloaded" in result.stderr
    assert f"server_id = carrier-a\n" in tls_cfg(edge)
    assert f"ca_list = {edge.settings.tls_certificate}\n" in tls_cfg(edge)
    data["trunks"][0]["tls_ca"] = "/nonexistent/ca.pem"
    result = edgectl(edge, "apply", str(dump(edge, data, "bad-ca.yaml")))
    assert result.returncode == 1 and "tls_ca: /nonexistent/ca.pem is not a file" in result.stderr
    # back to no per-trunk CA: the profile is removed from the running Kamailio (later tests see none)
    del data["trunks"][0]["tls_ca"]
    result = edgectl(edge, "apply", str(dump(edge, data, "no-ca.yaml")))
    assert result.returncode == 0, result.stderr
    assert "server_id = carrier-a" not in tls_cfg(edge)
