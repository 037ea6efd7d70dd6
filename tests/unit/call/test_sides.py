"""Per-side networks (carrier / agent): settings validation, rendering (checked by Kamailio itself)
and the pure choices of routing.call.sides (rtpengine interface flags per leg, send socket per hop)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from routing.call import sides
from routing.ops.hostcheck import check_addresses
from routing.ops.render import render, render_to_dir, runtime_settings
from routing.ops.runtime import ENV_VAR
from routing.ops.settings import Settings, SettingsError, load_settings

KAMAILIO = Path("/usr/sbin/kamailio")

SIDED = {
    "sip": {"listen": [
        {"transport": "udp", "address": "10.0.1.10", "port": 5060, "advertise": "203.0.113.10", "side": "carrier"},
        {"transport": "tls", "address": "10.0.1.10", "port": 5061, "advertise": "203.0.113.10", "side": "carrier"},
        {"transport": "udp", "address": "10.0.2.10", "port": 5060, "side": "agent"},
        {"transport": "tcp", "address": "10.0.2.10", "port": 5060, "side": "agent"},
    ]},
    "rtpengine": {"sides": {"carrier": {"address": "10.0.1.10", "advertise": "203.0.113.10"},
                            "agent": {"address": "10.0.2.10"}}},
    "security": {"topology_mask_ip": "192.0.2.1"},
}


def load(tmp_path: Path, data: dict) -> Settings:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), **data}), encoding="utf-8")
    return load_settings(path)


# -- routing.call.sides -------------------------------------------------------------------------


@pytest.mark.parametrize("direction, from_caller, expected", [
    ("origination", True, ("direction=carrier", "direction=agent")),   # carrier's offer, agent's re-INVITE answer
    ("origination", False, ("direction=agent", "direction=carrier")),  # agent's answer / re-INVITE / delayed offer
    ("termination", True, ("direction=agent", "direction=carrier")),
    ("termination", False, ("direction=carrier", "direction=agent")),
])
def test_direction_flags_name_the_sender_side_first(direction: str, from_caller: bool,
                                                     expected: tuple[str, str]) -> None:
    assert sides.direction_flags(direction, from_caller, enabled=True) == expected


def test_no_direction_flags_on_a_single_interface() -> None:
    assert sides.direction_flags("origination", True, enabled=False) == ()


@pytest.mark.parametrize("uri, transport", [
    ("sip:+1415@10.0.2.21:5080", "udp"),
    ("sip:+1415@10.0.2.21:5080;transport=TCP", "tcp"),
    ("sip:a@gw.example.net;lr;transport=tls", "tls"),
    ("sips:a@gw.example.net", "tls"),
])
def test_uri_transport(uri: str, transport: str) -> None:
    assert sides.uri_transport(uri) == transport


def test_side_sockets_prefer_the_sides_own_listener_then_both() -> None:
    rows = [("udp", "10.0.0.1", 5060, "both"), ("udp", "10.0.1.10", 5060, "carrier"),
            ("tcp", "10.0.0.1", 5060, "both"), ("udp", "10.0.2.10", 5070, "agent")]
    socks = sides.side_sockets(rows)
    assert socks == {
        "carrier": {"udp": "udp:10.0.1.10:5060", "tcp": "tcp:10.0.0.1:5060"},
        "agent": {"udp": "udp:10.0.2.10:5070", "tcp": "tcp:10.0.0.1:5060"},
    }
    assert sides.send_socket(socks, "agent", "sip:bot@10.0.2.21:5080") == "udp:10.0.2.10:5070"
    assert sides.send_socket(socks, "carrier", "sip:+1@gw;transport=tcp") == "tcp:10.0.0.1:5060"
    assert sides.send_socket(socks, "carrier", "sip:+1@gw;transport=tls") is None  # Kamailio chooses


def test_no_side_sockets_on_a_one_network_edge() -> None:
    assert sides.side_sockets([("udp", "127.0.0.1", 5060, "both"), ("tcp", "127.0.0.1", 5060, "both")]) == {}


# -- settings ------------------------------------------------------------------------------


def test_default_settings_have_no_sides() -> None:
    rt = runtime_settings(Settings())
    assert rt.media_sides is False and rt.sip_sockets is None
    conf = render(Settings())["rtpengine.conf"]
    assert "interface = 127.0.0.1\n" in conf and "carrier/" not in conf


def test_a_missing_side_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"sip: .*none serves the agent side"):
        load(tmp_path, {"sip": {"listen": [{"address": "10.0.1.10", "side": "carrier"}]}})
    with pytest.raises(SettingsError, match=r"rtpengine\.sides\.agent: Field required"):
        load(tmp_path, {"rtpengine": {"sides": {"carrier": {"address": "10.0.1.10"}}}})
    with pytest.raises(SettingsError, match=r"sip\.listen\.0\.side: Input should be 'both', 'carrier' or 'agent'"):
        load(tmp_path, {"sip": {"listen": [{"address": "10.0.1.10", "side": "public"}]}})
    # a side's listener of another family than its media interface: both fields named
    with pytest.raises(SettingsError, match=r"sip\.listen\.2\.address 10\.0\.2\.10 \(side agent\) and "
                                            r"rtpengine\.sides\.agent\.address fd00::10 must be of the same IP family"):
        load(tmp_path, {**SIDED, "rtpengine": {"sides": {"carrier": {"address": "10.0.1.10"},
                                                         "agent": {"address": "fd00::10"}}}})
    with pytest.raises(SettingsError, match=r"security\.topology_mask_ip"):
        load(tmp_path, {"security": {"topology_mask_ip": "not-an-ip"}})


def test_a_both_listener_serves_the_missing_side(tmp_path: Path) -> None:
    settings = load(tmp_path, {"sip": {"listen": [{"address": "10.0.1.10", "side": "carrier"},
                                                  {"address": "10.0.0.10", "port": 5070}]}})
    assert runtime_settings(settings).sip_sockets == {"carrier": {"udp": "udp:10.0.1.10:5060"},
                                                      "agent": {"udp": "udp:10.0.0.10:5070"}}


def test_sided_settings_render(tmp_path: Path) -> None:
    settings = load(tmp_path, SIDED)
    out = render(settings)
    conf = out["rtpengine.conf"]
    # one key: rtpengine's config file keeps only the last of repeated keys
    assert "interface = carrier/10.0.1.10!203.0.113.10;agent/10.0.2.10\n" in conf
    assert conf.count("interface =") == 1
    assert "interface = 127.0.0.1" not in conf
    cfg = out["kamailio.cfg"]
    assert "listen=udp:10.0.1.10:5060 advertise 203.0.113.10:5060\n" in cfg
    assert "listen=udp:10.0.2.10:5060\n" in cfg
    assert 'modparam("rr", "enable_double_rr", 1)' in cfg
    assert 'modparam("topoh", "mask_ip", "192.0.2.1")' in cfg
    rt = runtime_settings(settings)
    assert rt.media_sides is True
    assert rt.sip_sockets == {"carrier": {"udp": "udp:10.0.1.10:5060", "tls": "tls:10.0.1.10:5061"},
                              "agent": {"udp": "udp:10.0.2.10:5060", "tcp": "tcp:10.0.2.10:5060"}}
    # registrations to carriers name the carrier side's public address
    assert dict(rt.reg_contacts)["udp"] == "203.0.113.10:5060"
    errors = check_addresses(settings)
    assert any(e.startswith("rtpengine.sides.carrier.address: 10.0.1.10") for e in errors)
    assert any(e.startswith("rtpengine.sides.agent.address: 10.0.2.10") for e in errors)
    assert not any(e.startswith("rtpengine.address") for e in errors)


#: IPv4 carriers, IPv6 agents: each side's listeners and media interface in its own family
MIXED = {
    "sip": {"listen": [
        {"transport": "udp", "address": "10.0.1.10", "port": 5060, "advertise": "203.0.113.10", "side": "carrier"},
        {"transport": "udp", "address": "fd00::10", "port": 5060, "side": "agent"},
        {"transport": "tcp", "address": "fd00::10", "port": 5060, "side": "agent"},
    ]},
    "rtpengine": {"sides": {"carrier": {"address": "10.0.1.10", "advertise": "203.0.113.10"},
                            "agent": {"address": "fd00::10"}}},
    "security": {"topology_mask_ip": "192.0.2.1"},
}


def test_sides_of_different_ip_families_render(tmp_path: Path) -> None:
    out = render(load(tmp_path, MIXED))
    assert "interface = carrier/10.0.1.10!203.0.113.10;agent/fd00::10\n" in out["rtpengine.conf"]
    assert "listen=udp:[fd00::10]:5060\n" in out["kamailio.cfg"]
    assert runtime_settings(load(tmp_path, MIXED)).sip_sockets == {
        "carrier": {"udp": "udp:10.0.1.10:5060"}, "agent": {"udp": "udp:[fd00::10]:5060", "tcp": "tcp:[fd00::10]:5060"}}


def test_kamailio_accepts_the_sided_config(tmp_path: Path) -> None:
    assert KAMAILIO.is_file() and os.access(KAMAILIO, os.X_OK), f"{KAMAILIO} is not installed"
    data = {**SIDED, "sip": {"listen": [
        {"transport": "udp", "address": "127.0.0.1", "port": 5090, "advertise": "203.0.113.10", "side": "carrier"},
        {"transport": "udp", "address": "127.0.0.2", "port": 5090, "side": "agent"},
    ]}}
    run_dir = render_to_dir(load(tmp_path, data))
    result = subprocess.run([str(KAMAILIO), "-c", "-f", str(run_dir / "kamailio.cfg")], capture_output=True,
                            text=True, timeout=60, env={**os.environ, ENV_VAR: str(run_dir / "routing.json")})
    assert result.returncode == 0 and "config file ok" in result.stdout + result.stderr, result.stdout + result.stderr


# -- traffic the edge starts toward carriers ---------------------------------------------------


def test_registrations_and_probes_use_the_carrier_side(tmp_path: Path) -> None:
    from routing.monitor import prober
    from routing.call import registration
    from routing.tables.model import Registration, Transport, Trunk

    data = {**SIDED, "sip": {"listen": [
        {"transport": "udp", "address": "10.0.2.10", "port": 5060, "side": "agent"},  # listed first on purpose
        {"transport": "tcp", "address": "10.0.2.10", "port": 5060, "side": "agent"},
        {"transport": "udp", "address": "10.0.1.10", "port": 5060, "advertise": "203.0.113.10", "side": "carrier"},
    ]}}
    settings = load(tmp_path, data)
    rt = runtime_settings(settings)
    assert dict(rt.reg_contacts) == {"udp": "203.0.113.10:5060"}  # no agent-only address, no tcp contact
    assert prober.source_address(settings, "udp") == "10.0.1.10"
    assert prober.source_address(settings, "tcp") == "10.0.1.10"  # the carrier side, not the agent tcp socket
    reg = Registration("203.0.113.5:5060", "edge0123456789abcdef", transport=Transport.UDP)
    records, problems = registration.wanted([Trunk("reg", register=reg)], {"reg": ("u", "t")},
                                            dict(rt.reg_contacts), rt.sip_sockets["carrier"])
    (record,) = records.values()
    assert record.socket == "udp:10.0.1.10:5060" and record.rpc_params("pw")[13] == "udp:10.0.1.10:5060"
    unsided, _ = registration.wanted([Trunk("reg", register=reg)], {"reg": ("u", "t")}, dict(rt.reg_contacts))
    assert unsided[reg.contact_user].rpc_params("pw")[13] == ""  # one network: Kamailio chooses
    assert unsided[reg.contact_user].fingerprint != record.fingerprint  # a new socket re-adds the registration
