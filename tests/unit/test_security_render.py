"""Settings and rendering of topology hiding and registration trunks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from routing.render import render
from routing.runtime import load as load_runtime
from routing.settings import SettingsError, load_settings


def settings_file(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), **data}))
    return path


def test_topos_database_must_differ_from_the_routing_database(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="topology_redis_db must differ from redis.db"):
        load_settings(settings_file(tmp_path, {"redis": {"db": 1}}))
    load_settings(settings_file(tmp_path, {"redis": {"db": 1}, "security": {"topology_hiding": False}}))


def test_topos_is_rendered_with_its_redis_and_without_cseq_tracking(tmp_path: Path) -> None:
    cfg = render(load_settings(settings_file(tmp_path, {"redis": {"port": 6399, "password": "pw"}})))["kamailio.cfg"]
    assert 'loadmodule "topos.so"' in cfg and 'modparam("topos", "storage", "redis")' in cfg
    assert "name=topos;addr=127.0.0.1;port=6399;db=1;pass=pw" in cfg
    assert 'modparam("dialog", "track_cseq_updates", 0)' in cfg
    plain = render(load_settings(settings_file(tmp_path, {"security": {"topology_hiding": False}})))["kamailio.cfg"]
    assert 'loadmodule "topos.so"' not in plain and 'modparam("topos"' not in plain and "ndb_redis" not in plain
    assert 'modparam("dialog", "track_cseq_updates", 1)' in plain


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
