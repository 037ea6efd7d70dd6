"""Config rendering from the settings (checked by Kamailio itself)."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Iterator

import jinja2
import pytest
import yaml

import routing
from routing.ops import render as render_mod
from routing.kamailio import callstate
from routing.ops.render import ENTRY_SCRIPT, OUTPUTS, render, render_to_dir
from routing.ops.runtime import ENV_VAR, load as load_runtime
from routing.ops.hostcheck import check_addresses
from routing.ops.settings import REPO_ROOT, Listener, RtpEngine, Settings, SettingsError, Sip, load_settings
from tests.unit.kamailio.fakeksr import forget_plugin

KAMAILIO = Path("/usr/sbin/kamailio")


def write_yaml(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


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
        "capture": {"enabled": False},  # siptrace sends HEP from a UDP socket
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
    assert f'modparam("ctl", "binrpc", "unix:{custom.run_dir}/kamailio_ctl")' in cfg
    assert 'modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:2299")' in cfg
    assert f'modparam("app_python3", "load", "{ENTRY_SCRIPT}")' in cfg
    # native routes: the plugin is reached with python_exec, dialog and HTTP events by event_route
    assert not any(line.startswith("cfgengine") or line.startswith("kemi.") for line in cfg)
    assert not any('"event_callback"' in line for line in cfg)
    assert "event_route[dialog:end] {" in cfg and "event_route[dialog:failed] {" in cfg
    assert "event_route[xhttp:request] {" in cfg


#: route blocks of a native Kamailio config: ``kind[name] {`` (request_route and reply_route have no name)
_BLOCK = re.compile(r"^\s*(route|request_route|branch_route|failure_route|onreply_route|reply_route|event_route)"
                    r"\s*(?:\[([^\]]+)\])?\s*\{", re.M)
_PYTHON_EXEC = re.compile(r'python_exec\(\s*"([^"]+)"((?:\s*,\s*"[^"]*")*)\s*\)')
#: route names the cfg itself arms or calls, with the kind of block each must name
_CFG_ARMED = {"t_on_failure": "failure_route", "t_on_reply": "onreply_route", "t_on_branch": "branch_route",
              "route": "route"}


@pytest.fixture
def plugin_entry(monkeypatch: pytest.MonkeyPatch) -> Iterator[type]:
    """routing.kamailio.entry.Edge, imported against an empty stand-in for Kamailio's ``KSR`` module."""
    monkeypatch.setitem(sys.modules, "KSR", types.ModuleType("KSR"))
    forget_plugin()
    try:
        yield importlib.import_module("routing.kamailio.entry").Edge
    finally:
        forget_plugin()


def _blocks(cfg: str) -> set[tuple[str, str]]:
    """(kind, name) of every route block; a duplicate name of one kind fails."""
    found = [(kind, name or "") for kind, name in _BLOCK.findall(cfg)]
    assert len(found) == len(set(found)), f"a route block is defined twice: {sorted(found)}"
    return set(found)


@pytest.mark.parametrize("features", ["default", "everything", "nothing optional"])
def test_every_plugin_entry_and_route_name_of_the_cfg_exists(features: str, plugin_entry: type,
                                                             tmp_path: Path) -> None:
    """The native routes (templates/kamailio.routes.j2) and the plugin (routing.kamailio) name each
    other by strings: every ``python_exec`` names a callable of the entry object (Edge) that takes its
    arguments, and every route the plugin arms (tm ``t_on_*``, the dialog's ``timeout_route``,
    ``KSR.route``) or the cfg arms or runs (``t_on_*``, ``route()``, rtimer) is a block of its kind."""
    data: dict[str, object] = {"run_dir": str(tmp_path)}
    if features == "everything":  # TLS (its in-dialog profile), the loop socket, the DTMF log
        data["sip"] = {"listen": [{"transport": "udp", "address": "127.0.0.1", "port": 5060},
                                  {"transport": "tls", "address": "127.0.0.1", "port": 5061}]}
        data["dtmf"] = {"log_port": 2224}
    elif features == "nothing optional":  # no UDP listener (no loop socket), no DTMF log, no capture
        data["sip"] = {"listen": [{"transport": "tcp", "address": "127.0.0.1", "port": 5060}]}
        data["dtmf"] = {"log_port": 0}
        data["capture"] = {"enabled": False}
    cfg = render(Settings.model_validate(data))["kamailio.cfg"]
    code = "\n".join(line.split("#", 1)[0] for line in cfg.splitlines())  # comments name routes too
    blocks = _blocks(code)
    assert ("request_route", "") in blocks

    calls = _PYTHON_EXEC.findall(code)
    assert calls, "the cfg never calls the plugin"
    for name, arg_text in calls:
        args = re.findall(r'"([^"]*)"', arg_text)
        method = getattr(plugin_entry, name, None)
        assert callable(method), f'python_exec("{name}"): routing.kamailio.entry.Edge has no such method'
        # app_python3 calls method(msg, *args); the entry guard hands its function (self, msg, *args)
        try:
            inspect.signature(method).bind(None, None, *args)
        except TypeError as exc:
            pytest.fail(f'python_exec("{name}", {", ".join(args)}) does not fit Edge.{name}: {exc}')
        if name == "ksr_refuse":
            assert args and args[0] in ("too_many_hops", "no_dialog", "not_allowed"), args

    # names the plugin arms: routing/kamailio/callstate.py, and KSR.route(...) in the plugin's source
    plugin_source = "\n".join(path.read_text(encoding="utf-8") for path in
                               (REPO_ROOT / "routing" / "kamailio").glob("*.py"))
    called = {"CALL_STARTED", *re.findall(r'KSR\.route\(\s*"([^"]+)"', plugin_source)}
    for constant in re.findall(r'KSR\.route\(\s*(?:cs\.|callstate\.)?([A-Z][A-Z0-9_]*)\s*\)', plugin_source):
        called.add(getattr(callstate, constant))
    wanted = {("failure_route", callstate.ON_FAILURE), ("onreply_route", callstate.ON_REPLY),
              ("branch_route", callstate.ON_BRANCH), ("route", callstate.DIALOG_TIMEOUT_ROUTE),
              ("failure_route", callstate.ON_REFER_FAILURE), ("onreply_route", callstate.ON_BRIDGED_REPLY),
              *(("route", name) for name in called)}
    # names the cfg arms or runs itself
    for function, name in re.findall(r'\b(t_on_failure|t_on_reply|t_on_branch|route)\(\s*"?([A-Za-z0-9_]+)"?\s*\)', code):
        wanted.add((_CFG_ARMED[function], name))
    for name in re.findall(r'modparam\("rtimer",\s*"exec",\s*"[^"]*\broute=([A-Za-z0-9_]+)', code):
        wanted.add(("route", name))
    missing = sorted(wanted - blocks)
    assert not missing, f"route blocks missing from the rendered kamailio.cfg: {missing}"


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
        capture={"address": "::1"},
    )
    run_dir = render_to_dir(settings)
    result = subprocess.run(
        [str(KAMAILIO), "-c", "-f", str(run_dir / "kamailio.cfg")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


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
    assert context["overload"] == {"max_cps": 300, "max_calls": 2000, "max_transactions": 5000, "retry_after_s": 2,
                                   "shed_backlog_kb": 64, "resume_backlog_kb": 16}
    runtime = render_mod.runtime_settings(Settings.model_validate(
        {"sip": {"listen": [{"transport": "udp", "address": "127.0.0.9", "port": 5070},
                            {"transport": "tcp", "address": "127.0.0.9", "port": 5070}]}}))
    assert (runtime.shed_high_bytes, runtime.shed_low_bytes) == (64 * 1024, 16 * 1024)
    assert runtime.shed_sockets == (("127.0.0.9", 5070),)  # UDP listeners only: a stream has no datagram backlog


def test_backlog_thresholds_must_be_ordered(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="resume_backlog_kb must be below shed_backlog_kb"):
        load_settings(write_yaml(tmp_path / "edge.yaml", {"overload": {"shed_backlog_kb": 8, "resume_backlog_kb": 8}}))
    off = load_settings(write_yaml(tmp_path / "off.yaml", {"overload": {"shed_backlog_kb": 0, "resume_backlog_kb": 16}}))
    assert "ksr_shed_tick" not in render_mod.render(off)["kamailio.cfg"]


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


# -- drain ----------------------------------------------------------------------------------------


def test_drain_flag_is_declared_then_imported_from_the_run_directory(tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path)
    cfg = render(settings)["kamailio.cfg"]
    declared = cfg.index('modparam("pv", "shvset", "edge_drain=i:0")')
    imported = cfg.index(f'import_file "{tmp_path}/drain.cfg"')
    assert declared < imported  # the file's value, when there is one, is the last word


def test_draining_node_answers_new_invites_and_options_503_with_its_retry_after() -> None:
    cfg = render(Settings.model_validate({"drain": {"retry_after_s": 45}}))["kamailio.cfg"]
    request_route = cfg[cfg.index("request_route {"):cfg.index("\n}\n", cfg.index("request_route {"))]
    # after in-dialog requests and CANCEL are handled, before OPTIONS are answered 200
    assert request_route.index("route(WITHINDLG)") < request_route.index("route(DRAINING)") \
        < request_route.index('sl_send_reply("200", "OK")')
    assert 'if ($shv(edge_drain) != 0 && is_method("INVITE|OPTIONS"))' in request_route
    drain_route = cfg[cfg.index("route[DRAINING] {"):cfg.index("route[WITHINDLG] {")]
    assert 'append_to_reply("Retry-After: 45\\r\\n")' in drain_route
    assert 'sl_send_reply("503", "Node Draining")' in drain_route
    assert 'prom_counter_inc("byoc_edge_rejections_total", "1", "node_draining")' in drain_route
    assert 'prom_gauge_set("byoc_edge_draining", "1")' in cfg


def test_drain_settings_errors_name_the_field(tmp_path: Path) -> None:
    assert Settings().drain.retry_after_s == 30
    with pytest.raises(SettingsError, match=r"drain\.retry_after_s:"):
        load_settings(write_yaml(tmp_path / "edge.yaml", {"drain": {"retry_after_s": 0}}))


def test_a_sentinels_config_carries_the_timing_that_admits_calls_within_10_s() -> None:
    text = render_mod.render_sentinel("10.0.0.5", 6380, port=26380, bind="10.0.0.11", data_dir="/var/lib/x",
                                      master_password="pw", announce_ip="192.0.2.7")
    conf = lines(text)
    for line in ("port 26380", "bind 10.0.0.11", "dir /var/lib/x", "sentinel announce-ip 192.0.2.7",
                 "sentinel monitor byoc-edge 10.0.0.5 6380 2", "sentinel auth-pass byoc-edge pw",
                 "sentinel down-after-milliseconds byoc-edge 2000", "sentinel failover-timeout byoc-edge 10000"):
        assert line in conf, line
    assert not any(l.startswith("requirepass") for l in conf)
    assert "sentinel sentinel-pass s3" in lines(render_mod.render_sentinel("h", 1, sentinel_password="s3"))


def test_sip_capture_mirrors_every_message_as_hep3_to_the_collector() -> None:
    cfg = render(Settings.model_validate({"capture": {"port": 9999, "capture_id": 42}}))["kamailio.cfg"]
    assert 'loadmodule "siptrace.so"' in cfg
    for param, value in (("trace_on", "1"), ("trace_mode", "1"), ("trace_init_mode", "1"), ("trace_to_database", "0"),
                         ("hep_mode_on", "1"), ("hep_version", "3"), ("hep_capture_id", "42"),
                         ("duplicate_uri", '"sip:127.0.0.1:9999"')):
        assert f'modparam("siptrace", "{param}", {value})' in cfg, param
    off = render(Settings.model_validate({"capture": {"enabled": False}}))["kamailio.cfg"]
    assert "siptrace" not in off


def test_capture_to_an_ipv6_collector_names_the_address_in_brackets() -> None:
    settings = Settings.model_validate({"sip": {"listen": [{"address": "::1", "port": 5077}]},
                                        "capture": {"address": "::1"}})
    assert 'modparam("siptrace", "duplicate_uri", "sip:[::1]:9064")' in render(settings)["kamailio.cfg"]
