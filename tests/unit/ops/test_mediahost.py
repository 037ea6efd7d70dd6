"""rtpengine.conf of an rtpengine host (routing.ops.mediahost), rendered by the edge's own template."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from routing.ops.mediahost import main, media_host_settings, render_media_host
from routing.ops.render import render, render_rtpengine
from routing.ops.settings import REPO_ROOT, Settings, SettingsError

#: what the Ansible role composes for a host: the edge's extra settings, then the host's own values
HOST = {
    "node": "media-1",
    "run_dir": "/var/lib/byoc-edge/run",
    "sip": {"max_call_duration_s": 7200},
    "rtpengine": {"address": "10.0.2.11", "advertise": "198.51.100.11", "ng_port": 2223, "cli_port": 9900,
                  "port_min": 40000, "port_max": 49999, "media_timeout_s": 90, "log_level": 6},
    "media": {"fill_delay_ms": 60},
    "metrics": {"address": "10.0.2.11", "kamailio_port": 9161, "rtpengine_port": 9162, "exporter_port": 9163},
}


def lines(conf: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in conf.splitlines() if " = " in line and not line.startswith("#"))


def test_the_host_listens_for_ng_and_cli_on_its_address_and_relays_on_its_interface() -> None:
    conf = lines(render_media_host(HOST, "10.0.2.11"))
    assert conf["interface"] == "10.0.2.11!198.51.100.11"
    assert conf["listen-ng"] == "10.0.2.11:2223"
    assert conf["listen-cli"] == "10.0.2.11:9900"
    assert (conf["port-min"], conf["port-max"]) == ("40000", "49999")
    assert conf["listen-http"] == "10.0.2.11:9162"


def test_the_rtpengine_options_are_those_the_edge_renders_for_its_own_rtpengine() -> None:
    host = lines(render_media_host(HOST, "10.0.2.11"))
    edge = lines(render(Settings.model_validate({**HOST, "dtmf": {"log_port": 0}}))["rtpengine.conf"])
    # only the control listeners differ from the edge's local rtpengine of the same settings
    assert {k: v for k, v in host.items() if v != edge.get(k)} == {"listen-ng": "10.0.2.11:2223",
                                                                   "listen-cli": "10.0.2.11:9900"}
    assert edge["listen-ng"] == "127.0.0.1:2223"
    for key, value in {"timeout": "90", "silent-timeout": "90", "final-timeout": "7260", "log-level": "6",
                       "dtx-delay": "60", "table": "-1"}.items():
        assert host[key] == value, key


def test_digits_seen_by_a_remote_host_are_not_sent_to_its_own_loopback() -> None:
    assert "dtmf-log-dest" not in render_media_host({**HOST, "dtmf": {"log_port": 2224}}, "10.0.2.11")
    assert media_host_settings(HOST).dtmf.log_port == 0
    # the edge's own rtpengine reports them (the default port)
    assert "dtmf-log-dest = 127.0.0.1:2224" in render(Settings.model_validate(HOST))["rtpengine.conf"]


def test_an_ipv6_ng_address_is_written_in_brackets() -> None:
    conf = lines(render_rtpengine(Settings.model_validate(HOST), "fd00:2::11"))
    assert conf["listen-ng"] == "[fd00:2::11]:2223"
    assert conf["listen-cli"] == "[fd00:2::11]:9900"


@pytest.mark.parametrize("data, ng_address, message", [
    ({**HOST, "rtpengine": {**HOST["rtpengine"], "port_max": 40050}}, "10.0.2.11",
     "rtpengine host settings: rtpengine: Value error, port_max must be at least port_min + 100"),
    ({**HOST, "rtpengine": {**HOST["rtpengine"], "address": "media.internal"}}, "10.0.2.11",
     "rtpengine host settings: rtpengine.address:"),
    (HOST, "media.internal", "ng address 'media.internal' is not an IP address literal"),
])
def test_bad_settings_name_the_field(data: dict, ng_address: str, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        render_media_host(data, ng_address)
    assert str(err.value).startswith(message), str(err.value)


def test_the_cli_reads_json_settings_and_writes_the_config(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(HOST)))
    assert main(["--ng-address", "10.0.2.11"]) == 0
    assert capsys.readouterr().out == render_media_host(HOST, "10.0.2.11")


@pytest.mark.parametrize("stdin, error", [
    ("{", "mediahost: settings on stdin are not JSON: "),
    ("[]", "mediahost: settings on stdin must be a JSON object"),
    (json.dumps({**HOST, "rtpengine": {"ng_port": 0}}), "mediahost: rtpengine host settings: rtpengine.ng_port: "),
])
def test_the_cli_fails_with_one_line(stdin: str, error: str) -> None:
    # as Ansible runs it: a module of the checkout, on the controller's python
    proc = subprocess.run([sys.executable, "-m", "routing.ops.mediahost", "--ng-address", "10.0.2.11"], input=stdin,
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith(error) and proc.stderr.count("\n") == 1, proc.stderr
