"""Settings and rendering of topology hiding and registration trunks."""

from __future__ import annotations

from pathlib import Path

import yaml

from routing.render import render
from routing.runtime import load as load_runtime
from routing.secrets import create_key
from routing.settings import load_settings


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
