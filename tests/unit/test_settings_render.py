"""Settings loading, config rendering (checked by Kamailio itself) and host address checks."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

from routing import render as render_mod
from routing.hostcheck import check_addresses
from routing.render import ENTRY_SCRIPT, OUTPUTS, render, render_to_dir
from routing.runtime import ENV_VAR, load as load_runtime
from routing.settings import REPO_ROOT, Listener, RtpEngine, Settings, SettingsError, Sip, load_settings

KAMAILIO = Path("/usr/sbin/kamailio")


def write_yaml(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# -- load_settings ---------------------------------------------------------------------


def test_no_file_gives_the_embedded_default() -> None:
    settings = load_settings(None)
    assert settings == Settings()
    assert [(l.transport, l.address, l.port) for l in settings.sip.listen] == [
        ("udp", "127.0.0.1", 5060),
        ("tcp", "127.0.0.1", 5060),
    ]


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("", encoding="utf-8")
    assert load_settings(path).sip == Settings().sip


def test_errors_name_the_field_path(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "edge.yaml", {"sip": {"listen": [{"port": 70000}]}})
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "sip.listen.0.port: Input should be less than or equal to 65535" in message


def test_every_bad_field_is_named(tmp_path: Path) -> None:
    data = {
        "node": "bad node!",
        "sip": {"listen": [{"address": "127.0.0.1"}, {"address": "not-an-ip"}], "workers": 0},
        "redis": {"db": 99},
    }
    with pytest.raises(SettingsError) as info:
        load_settings(write_yaml(tmp_path / "edge.yaml", data))
    message = str(info.value)
    for field in ("node:", "sip.listen.1.address:", "sip.workers:", "redis.db:"):
        assert field in message, (field, message)
    assert "sip.listen.0" not in message


def test_model_validator_errors_name_the_section(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "edge.yaml", {"rtpengine": {"port_min": 30000, "port_max": 30050}})
    with pytest.raises(SettingsError, match=r"rtpengine: Value error, port_max must be at least port_min \+ 100"):
        load_settings(path)


def test_stranger_retention_cannot_outlast_the_retention(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "edge.yaml", {"cdr": {"retention_days": 3, "stranger_retention_days": 7}})
    with pytest.raises(SettingsError, match=r"cdr: Value error, stranger_retention_days must not exceed retention_days"):
        load_settings(path)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"bogus": 1}, "bogus"),
        ({"sip": {"listen_on": []}}, "sip.listen_on"),
        ({"sip": {"listen": [{"address": "127.0.0.1", "prot": 5060}]}}, "sip.listen.0.prot"),
        ({"redis": {"host": "127.0.0.1", "passwd": "x"}}, "redis.passwd"),
    ],
)
def test_unknown_keys_are_rejected(tmp_path: Path, data: dict[str, object], field: str) -> None:
    with pytest.raises(SettingsError, match=rf"{field}: Extra inputs are not permitted"):
        load_settings(write_yaml(tmp_path / "edge.yaml", data))


def test_relative_run_dir_is_resolved_against_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(write_yaml(conf_dir / "edge.yaml", {"run_dir": "state/run"}))
    assert settings.run_dir == (conf_dir / "state" / "run").resolve()
    assert settings.run_dir.is_absolute()
    settings = load_settings(write_yaml(conf_dir / "edge2.yaml", {"run_dir": "../shared"}))
    assert settings.run_dir == (tmp_path / "shared").resolve()


def test_absolute_run_dir_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "run"
    settings = load_settings(write_yaml(tmp_path / "edge.yaml", {"run_dir": str(target)}))
    assert settings.run_dir == target


def test_yaml_syntax_error_is_one_settings_error(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("sip:\n  listen: [\n  workers: 3\n", encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not valid YAML: ")
    assert "line 2" in message
    assert "\n" not in message  # one line for the CLI
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="expected a mapping at the top level"):
        load_settings(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(SettingsError, match=rf"^{path}: No such file or directory$"):
        load_settings(path)


# -- render ----------------------------------------------------------------------------------------


@pytest.fixture
def custom(tmp_path: Path) -> Settings:
    """Non-default values everywhere a template reads them."""
    return load_settings(
        write_yaml(
            tmp_path / "edge.yaml",
            {
                "node": "edge-x",
                "run_dir": "run",
                "sip": {
                    "listen": [
                        {"transport": "udp", "address": "127.0.0.1", "port": 5070},
                        {"transport": "tcp", "address": "0.0.0.0", "port": 5071, "advertise": "203.0.113.7"},
                    ],
                    "workers": 3,
                    "tcp_workers": 5,
                    "failover_timeout_ms": 4500,
                    "ringing_timeout_ms": 30000,
                    "max_call_duration_s": 3600,
                    "log_level": 1,
                },
                "rtpengine": {
                    "address": "127.0.0.1",
                    "advertise": "203.0.113.8",
                    "ng_port": 2299,
                    "cli_port": 9911,
                    "port_min": 31000,
                    "port_max": 32000,
                    "media_timeout_s": 45,
                },
                "redis": {"port": 6390, "password": "s3cret", "timeout_ms": 150, "connect_timeout_ms": 120},
                "limits": {"retry_after_s": 9},
            },
        )
    )


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def test_render_produces_every_output(custom: Settings) -> None:
    assert set(render(custom)) == set(OUTPUTS) == {
        "kamailio.cfg", "rtpengine.conf", "redis.conf", "routing.json", "tls.cfg", "monitor.json",
    }


def test_tls_listener_loads_the_tls_module_with_verified_gateways(tmp_path: Path) -> None:
    settings = Settings.model_validate({
        "run_dir": str(tmp_path),
        "sip": {"listen": [{"transport": "tls", "address": "127.0.0.1", "port": 5061}]},
    })
    out = render(settings)
    cfg = lines(out["kamailio.cfg"])
    assert "enable_tls=yes" in cfg and 'loadmodule "tls.so"' in cfg and "listen=tls:127.0.0.1:5061" in cfg
    tls = out["tls.cfg"]
    client = tls.split("[client:default]", 1)[1]
    assert "verify_certificate = yes" in client and "require_certificate = yes" in client
    assert f"certificate = {tmp_path}/tls/edge.crt" in tls


def test_kamailio_cfg_listen_and_globals(custom: Settings) -> None:
    cfg = lines(render(custom)["kamailio.cfg"])
    assert "listen=udp:127.0.0.1:5070" in cfg
    assert "listen=tcp:0.0.0.0:5071 advertise 203.0.113.7:5071" in cfg
    assert 'alias="203.0.113.7"' in cfg
    assert "children=3" in cfg and "tcp_children=5" in cfg and "debug=1" in cfg
    assert render(custom)["kamailio.cfg"].startswith("#!KAMAILIO\n")


def test_kamailio_cfg_modparams(custom: Settings) -> None:
    cfg = lines(render(custom)["kamailio.cfg"])
    assert 'modparam("tm", "fr_timer", 4500)' in cfg
    assert 'modparam("tm", "fr_inv_timer", 30000)' in cfg
    # the call clock ends calls at 3600 s; the dialog timer is a backstop a minute later
    assert 'modparam("dialog", "default_timeout", 3660)' in cfg
    assert 'modparam("rtimer", "exec", "timer=callclock;route=ksr_call_clock")' in cfg
    assert 'modparam("dialog", "event_callback", "ksr_dialog_event")' in cfg
    assert f'modparam("ctl", "binrpc", "unix:{custom.run_dir}/kamailio_ctl")' in cfg
    assert 'modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:2299")' in cfg
    assert f'modparam("app_python3", "load", "{ENTRY_SCRIPT}")' in cfg
    assert 'cfgengine "python"' in cfg


def test_app_python3_loads_the_repository_entry_script() -> None:
    assert ENTRY_SCRIPT == REPO_ROOT / "kamailio" / "edge.py"
    assert ENTRY_SCRIPT.is_file()
    assert f'"{REPO_ROOT}/kamailio/edge.py"' in render(Settings())["kamailio.cfg"]


def test_rtpengine_conf(custom: Settings) -> None:
    conf = lines(render(custom)["rtpengine.conf"])
    assert "interface = 127.0.0.1!203.0.113.8" in conf
    assert "listen-ng = 127.0.0.1:2299" in conf
    assert "listen-cli = 127.0.0.1:9911" in conf
    assert "port-min = 31000" in conf and "port-max = 32000" in conf
    assert "timeout = 45" in conf
    assert "final-timeout = 3660" in conf
    assert f"pidfile = {custom.run_dir}/rtpengine.pid" in conf


def test_rtpengine_conf_without_advertise() -> None:
    conf = lines(render(Settings())["rtpengine.conf"])
    assert "interface = 127.0.0.1" in conf
    assert "port-min = 30000" in conf and "port-max = 40000" in conf


def test_redis_conf(custom: Settings) -> None:
    conf = lines(render(custom)["redis.conf"])
    assert "port 6390" in conf and "bind 127.0.0.1" in conf and "requirepass s3cret" in conf
    assert not any(line.startswith("requirepass") for line in lines(render(Settings())["redis.conf"]))


def test_routing_json(custom: Settings, tmp_path: Path) -> None:
    data = json.loads(render(custom)["routing.json"])
    assert data["node"] == "edge-x"
    assert (data["redis_host"], data["redis_port"], data["redis_db"]) == ("127.0.0.1", 6390, 0)
    assert data["redis_password"] == "s3cret"
    assert (data["redis_timeout_ms"], data["redis_connect_timeout_ms"]) == (150, 120)
    assert data["lease_ttl_s"] == 3600 + 60
    assert data["retry_after_s"] == 9
    assert data["python_paths"][0] == str(REPO_ROOT)
    # the plugin reads back exactly what was rendered
    path = tmp_path / "routing.json"
    path.write_text(render(custom)["routing.json"], encoding="utf-8")
    rt = load_runtime(str(path))
    assert (rt.node, rt.redis_port, rt.lease_ttl_s, rt.retry_after_s) == ("edge-x", 6390, 3660, 9)
    assert rt.python_paths == tuple(data["python_paths"])


def test_strict_undefined_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ok.j2").write_text("node={{ node }} port={{ sip.listen[0].port }}\n", encoding="utf-8")
    (tmp_path / "missing.j2").write_text("x={{ sip.no_such_setting }}\n", encoding="utf-8")
    (tmp_path / "missing_top.j2").write_text("{% if undefined_flag %}on{% endif %}\n", encoding="utf-8")
    monkeypatch.setattr(render_mod, "TEMPLATE_DIR", tmp_path)
    monkeypatch.setattr(render_mod, "OUTPUTS", {"ok.cfg": "ok.j2"})
    assert render(Settings()) == {"ok.cfg": "node=edge1 port=5060\n"}  # the patched loader is in use
    for template in ("missing.j2", "missing_top.j2"):
        monkeypatch.setattr(render_mod, "OUTPUTS", {"out.cfg": template})
        with pytest.raises(jinja2.UndefinedError):
            render(Settings())


@pytest.mark.parametrize("which", ["default", "custom"])
def test_kamailio_accepts_the_rendered_config(which: str, custom: Settings, tmp_path: Path) -> None:
    assert KAMAILIO.is_file() and os.access(KAMAILIO, os.X_OK), f"{KAMAILIO} is not installed"
    settings = custom if which == "custom" else Settings(run_dir=tmp_path / "default-run")
    run_dir = render_to_dir(settings)
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(OUTPUTS)
    env = {**os.environ, ENV_VAR: str(run_dir / "routing.json")}
    result = subprocess.run(
        [str(KAMAILIO), "-c", "-f", str(run_dir / "kamailio.cfg")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "config file ok" in result.stdout + result.stderr


def test_kamailio_accepts_ipv6_listeners(tmp_path: Path) -> None:
    """Settings accept IPv6 listen addresses, so the rendered config must be valid for them too."""
    assert KAMAILIO.is_file(), f"{KAMAILIO} is not installed"
    settings = Settings(
        run_dir=tmp_path / "run6",
        sip=Sip(listen=[Listener(address="::1", port=5077), Listener(transport="tcp", address="::", port=5078)]),
    )
    run_dir = render_to_dir(settings)
    result = subprocess.run(
        [str(KAMAILIO), "-c", "-f", str(run_dir / "kamailio.cfg")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- hostcheck --------------------------------------------------------------------------------------


def with_listeners(*listeners: Listener, rtp: str = "127.0.0.1") -> Settings:
    return Settings(sip=Sip(listen=list(listeners)), rtpengine=RtpEngine(address=rtp))


def test_loopback_and_wildcards_are_accepted() -> None:
    settings = with_listeners(
        Listener(address="127.0.0.1"),
        Listener(transport="tcp", address="127.0.0.77"),
        Listener(address="0.0.0.0", port=5070),
        Listener(address="::", port=5071),
        Listener(address="::1", port=5072),
    )
    assert check_addresses(settings) == []


def test_foreign_address_is_rejected_naming_the_field() -> None:
    errors = check_addresses(with_listeners(Listener(address="192.0.2.55")))
    assert len(errors) == 1
    assert errors[0].startswith("sip.listen.0.address: 192.0.2.55 is not an address of this host")
    assert "advertise" in errors[0]


def test_second_listener_and_media_address_are_named() -> None:
    errors = check_addresses(with_listeners(Listener(), Listener(address="192.0.2.55", port=5070), rtp="192.0.2.56"))
    assert [e.split(":")[0] for e in errors] == ["sip.listen.1.address", "rtpengine.address"]


def test_foreign_address_is_fine_as_advertise() -> None:
    settings = with_listeners(Listener(address="127.0.0.1", advertise="192.0.2.55"))
    assert check_addresses(settings) == []


def test_silence_filling_and_keepalives_are_rendered() -> None:
    settings = Settings.model_validate({"media": {"fill_delay_ms": 60, "comfort_noise_dbov": 65,
                                                  "keepalive_interval_s": 45, "keepalive_failures": 3}})
    conf = lines(render(settings)["rtpengine.conf"])
    assert {"dtx-delay = 60", "max-dtx = 0", "silence-detect = 0.01", "cn-payload = 65"} <= set(conf)
    cfg = lines(render(settings)["kamailio.cfg"])
    assert 'modparam("dialog", "ka_interval", 45)' in cfg and 'modparam("dialog", "ka_failed_limit", 3)' in cfg
    assert json.loads(render(settings)["routing.json"])["media_fill"] is True
    off = Settings.model_validate({"media": {"fill_delay_ms": 0}})
    assert not any(line.startswith("dtx-delay") for line in lines(render(off)["rtpengine.conf"]))
    assert json.loads(render(off)["routing.json"])["media_fill"] is False


def test_keepalive_interval_below_the_dialog_modules_minimum_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("media: {keepalive_interval_s: 10}\n")
    with pytest.raises(SettingsError, match="keepalive_interval_s"):
        load_settings(path)


# -- overload ----------------------------------------------------------------------------


def test_overload_defaults_and_template_context() -> None:
    settings = Settings()
    assert (settings.overload.max_cps, settings.overload.max_calls) == (0, 0)  # no limit unless set
    assert (settings.overload.max_transactions, settings.overload.retry_after_s) == (5000, 2)
    context = render_mod._context(Settings.model_validate({"overload": {"max_cps": 300, "max_calls": 2000}}))
    assert context["overload"] == {"max_cps": 300, "max_calls": 2000, "max_transactions": 5000, "retry_after_s": 2}


def test_overload_errors_name_the_field(tmp_path: Path) -> None:
    data = {"overload": {"max_cps": -1, "retry_after_s": 0, "max_transactions": "many", "queue": 3}}
    with pytest.raises(SettingsError) as info:
        load_settings(write_yaml(tmp_path / "edge.yaml", data))
    message = str(info.value)
    for field in ("overload.max_cps:", "overload.retry_after_s:", "overload.max_transactions:", "overload.queue:"):
        assert field in message, (field, message)


def test_unanswered_calls_hold_slots_one_hop_long_and_early_dialogs_no_longer() -> None:
    """The admission lease lasts one hop's fr_timer + fr_inv_timer (rounded up) + 30 s; the dialog
    module drops early dialogs after as long, and 2xx without ACK after 64*T1 (RFC 3261 13.3.1.4)."""
    settings = Settings.model_validate({"sip": {"failover_timeout_ms": 1500, "ringing_timeout_ms": 10000}})
    assert render_mod.runtime_settings(settings).admission_ttl_s == 2 + 10 + 30
    assert json.loads(render(settings)["routing.json"])["admission_ttl_s"] == 42
    cfg = lines(render(settings)["kamailio.cfg"])
    assert 'modparam("dialog", "early_timeout", 42)' in cfg
    assert 'modparam("dialog", "noack_timeout", 32)' in cfg
    assert render_mod.runtime_settings(Settings()).admission_ttl_s == 93
