"""Settings and rendering of topology hiding and registration trunks."""

from __future__ import annotations

from pathlib import Path

import yaml

from routing.ops.render import render
from routing.ops.runtime import load as load_runtime
from routing.ops.secrets import create_key
from routing.ops.settings import load_settings


def settings_file(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), **data}))
    return path


def test_topoh_is_rendered_with_a_key_derived_from_the_secret(tmp_path: Path) -> None:
    settings = load_settings(settings_file(tmp_path, {}))
    cfg = render(settings)["kamailio.cfg"]
    assert 'loadmodule "topoh.so"' in cfg and 'modparam("topoh", "mask_ip", "127.0.0.1")' in cfg
    key = cfg.split('modparam("topoh", "mask_key", "', 1)[1].split('"', 1)[0]
    assert len(key) == 64 and key == render(settings)["kamailio.cfg"].split('"mask_key", "')[1].split('"')[0]
    create_key(settings.secret_key_path)
    assert key not in render(settings)["kamailio.cfg"]  # a new secret, a new mask key
    plain = render(load_settings(settings_file(tmp_path, {"security": {"topology_hiding": False}})))["kamailio.cfg"]
    assert 'loadmodule "topoh.so"' not in plain and 'modparam("topoh"' not in plain


def test_registration_settings_reach_the_uac_module_and_the_plugin(tmp_path: Path) -> None:
    settings = load_settings(settings_file(tmp_path, {
        "sip": {"listen": [{"transport": "udp", "address": "127.0.0.1", "port": 5070, "advertise": "203.0.113.9"},
                           {"transport": "tcp", "address": "127.0.0.1", "port": 5071}]},
        "registration": {"timer_interval_s": 7, "retry_interval_s": 30, "sync_interval_s": 2},
    }))
    files = render(settings)
    cfg = files["kamailio.cfg"]
    assert 'modparam("uac", "reg_contact_addr", "203.0.113.9:5070")' in cfg
    assert 'modparam("uac", "reg_timer_interval", 7)' in cfg
    assert 'modparam("uac", "reg_retry_interval", 40)' in cfg  # 30 + 7 + 3: uac_reg retries that much early
    assert "name=regsync;interval=2;" in cfg
    (tmp_path / "routing.json").write_text(files["routing.json"])
    rt = load_runtime(str(tmp_path / "routing.json"))
    assert rt.reg_contacts == (("udp", "203.0.113.9:5070"), ("tcp", "127.0.0.1:5071"))
    assert (rt.reg_timer_interval_s, rt.reg_sync_interval_s) == (7, 2)


def test_tls_profiles_per_trunk_with_its_own_ca(tmp_path: Path) -> None:
    from routing.tables.model import Gateway, Transport, Trunk
    from routing.ops.tlsprofiles import client_profiles, refresh

    trunks = [Trunk("b-tls", gateways=(Gateway("sip.b.example", 5061, Transport.TLS),), tls_ca="/etc/b.pem"),
              Trunk("a-udp", gateways=(Gateway("192.0.2.1"),), tls_ca="/etc/a.pem"),  # no tls gateway
              Trunk("c-default", gateways=(Gateway("192.0.2.3", 5061, Transport.TLS),))]  # node-wide CA
    profiles = client_profiles(trunks)
    assert [(p.trunk, p.ca_list) for p in profiles] == [("b-tls", "/etc/b.pem")]
    settings = load_settings(settings_file(tmp_path, {"sip": {"listen": [
        {"transport": "udp", "address": "127.0.0.1", "port": 5060},
        {"transport": "tls", "address": "127.0.0.1", "port": 5061}]}}))
    (tmp_path / "run").mkdir()
    assert refresh(settings, trunks, reload=False) is True
    text = (tmp_path / "run" / "tls.cfg").read_text()
    section = text.split("[client:any]", 1)[1]
    assert "server_id = b-tls" in section and "server_name = b-tls.trunk.byoc-edge.invalid" in section
    assert "ca_list = /etc/b.pem" in section and "verify_certificate = yes" in section
    assert refresh(settings, trunks, reload=False) is False  # unchanged: not rewritten, not reloaded
    assert 'modparam("tls", "xavp_cfg", "tls")' in render(settings)["kamailio.cfg"]


def test_trunk_tls_ca_must_be_an_absolute_path() -> None:
    import pytest

    from routing.tables.model import DataError, Trunk

    with pytest.raises(DataError, match="tls_ca"):
        Trunk.from_redis("t", {"tls_ca": "relative/ca.pem"}, [], {})
