"""``edgectl`` against the running edge: status, calls, config check, one-line errors; TCP signalling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.sipp import reject_uac_scenario, uac, uas
from tests.helpers import wait_until

from .conftest import AGENT_IP, CARRIER_A, DID, STRANGER, Edge



def edgectl(edge: Edge, *args: str, settings: Path | None = None, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    """``edgectl`` in a subprocess; ``columns``: the terminal width its tables are drawn for (rich's default 80)."""
    path = settings or Path(edge.settings.run_dir).parent / "settings.yaml"
    return subprocess.run(
        [str(Path(sys.executable).parent / "edgectl"), "--settings", str(path), *args],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": str(columns)} if columns else None,
    )


def provision(edge: Edge) -> None:
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, 5080)], max_calls=4)
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"], max_calls=2)
    edge.did(DID, "carrier-a", "bot")


def test_status_reports_every_service_up(clean_edge: Edge) -> None:
    result = edgectl(clean_edge, "status", "--json")
    assert result.returncode == 0, result.stderr
    states = {s["name"]: s for s in json.loads(result.stdout)}
    assert set(states) == {"redis", "rtpengine", "kamailio", "monitor"}
    assert all(s["healthy"] and s["pid"] for s in states.values())
    assert "200 OK" in states["kamailio"]["detail"]


def test_up_twice_leaves_running_services_alone(clean_edge: Edge) -> None:
    before = {s["name"]: s["pid"] for s in json.loads(edgectl(clean_edge, "status", "--json").stdout)}
    result = edgectl(clean_edge, "up", "--json")
    assert result.returncode == 0, result.stderr
    after = {s["name"]: s["pid"] for s in json.loads(result.stdout)}
    assert after == before


def test_calls_shows_active_call_per_trunk_and_agent(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, answer_ms=100)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, hold_ms=2500)
    wait_until(lambda: edge.active_leases() == 2, what="call up")
    result = edgectl(edge, "calls", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    counts = {(r["kind"], r["name"]): (r["active"], r["limit"]) for r in data["counts"]}
    assert counts[("trunk", "carrier-a")] == (1, 4)
    assert counts[("agent", "bot")] == (1, 2)
    assert [c["number"] for c in data["calls"]] == [DID]
    assert data["calls"][0]["direction"] == "origination"
    carrier.wait()
    agent.wait()


def test_call_over_tcp_from_carrier_to_udp_agent(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, answer_ms=100)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, hold_ms=500, extra=["-t", "t1"])
    assert carrier.wait() == 0, carrier.output()
    assert agent.wait() == 0, agent.output()
    invite = agent.received_requests("INVITE")[0]
    # double Record-Route: one per transport (RFC 5658); the TCP side's is masked by topology hiding
    assert invite.count("Record-Route:") == 2


def test_config_check_proves_the_plugin_loads(clean_edge: Edge) -> None:
    result = edgectl(clean_edge, "config", "check")
    assert result.returncode == 0, result.stderr
    assert "plugin loaded" in result.stdout


def test_settings_error_is_one_line_naming_the_field(clean_edge: Edge, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"sip": {"listen": [{"address": "127.0.0.1", "port": 99999}]}}))
    result = edgectl(clean_edge, "config", "render", settings=bad)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "sip.listen.0.port" in lines[0]


def test_address_not_on_host_is_refused_unless_advertised(clean_edge: Edge, tmp_path: Path) -> None:
    bad = tmp_path / "nat.yaml"
    bad.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"),
                                   "sip": {"listen": [{"address": "192.0.2.55", "port": 5060}]}}))
    result = edgectl(clean_edge, "config", "render", settings=bad)
    assert result.returncode != 0
    assert "sip.listen.0.address: 192.0.2.55 is not an address of this host" in result.stderr
    good = tmp_path / "nat-ok.yaml"
    good.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"),
                                    "sip": {"listen": [{"address": "127.0.0.1", "port": 5060, "advertise": "192.0.2.55"}]}}))
    result = edgectl(clean_edge, "config", "render", settings=good)
    assert result.returncode == 0, result.stderr
    assert "advertise 192.0.2.55:5060" in (tmp_path / "run" / "kamailio.cfg").read_text()


def test_rejected_call_is_logged_with_reason_tag(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    caller = uac(edge.workdir / "stranger", STRANGER, 5070, edge.sip, DID, scenario=reject_uac_scenario(edge.workdir))
    caller.wait()
    assert caller.final_status() == [(403, "Source Not Allowed")]
    wait_until(lambda: "reject 403 acl_source" in edge.log(), what="refusal logged with its reason tag")
