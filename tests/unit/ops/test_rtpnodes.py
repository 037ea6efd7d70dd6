"""rtpengine.nodes settings and their rendering (routing/ops/rtpnodes.py, templates/kamailio.cfg.j2)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from routing.ops.render import render, render_to_dir
from routing.ops.runtime import ENV_VAR
from routing.ops.settings import Settings, SettingsError, load_settings
from routing.ops.rtpnodes import node_url, sock_param, RtpNode

KAMAILIO = Path("/usr/sbin/kamailio")
SET = {"nodes": [{"address": "10.0.0.5", "ng_port": 2223, "weight": 2}, {"address": "2001:db8::6", "ng_port": 2224}],
       "disable_s": 7}


def test_node_urls_are_the_modules_names() -> None:
    assert node_url("10.0.0.5", 2223) == "udp:10.0.0.5:2223"
    assert node_url("2001:db8::6", 2224) == "udp6:[2001:db8::6]:2224"
    assert sock_param([RtpNode(address="10.0.0.5", weight=2), RtpNode(address="10.0.0.6", ng_port=9)]) \
        == "udp:10.0.0.5:2223=2 udp:10.0.0.6:9=1"


def test_bad_nodes_are_refused_naming_the_field(tmp_path: Path) -> None:
    for bad, field in (({"address": "host.example"}, "address"), ({"address": "10.0.0.1", "weight": 0}, "weight"),
                       ({"address": "10.0.0.1", "ng_port": 70000}, "ng_port"), ({"address": "10.0.0.1", "x": 1}, "x")):
        path = tmp_path / "edge.yaml"
        path.write_text(json.dumps({"rtpengine": {"nodes": [bad]}}))
        with pytest.raises(SettingsError, match=field):
            load_settings(path)


def test_without_nodes_the_local_rtpengine_is_the_only_socket() -> None:
    cfg = render(Settings())["kamailio.cfg"]
    assert 'modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:2223")' in cfg
    assert "rtp_inst_pvar" not in cfg and "rtpnode" not in cfg and "hash_algo" not in cfg
    assert json.loads(render(Settings())["routing.json"])["rtpengine_nodes"] == []


def test_a_set_is_one_weighted_module_set_with_the_node_of_each_call_kept() -> None:
    out = render(Settings.model_validate({"rtpengine": SET}))
    cfg = out["kamailio.cfg"]
    assert 'modparam("rtpengine", "rtpengine_sock", "udp:10.0.0.5:2223=2 udp6:[2001:db8::6]:2224=1")' in cfg
    assert 'modparam("rtpengine", "rtpengine_disable_tout", 7)' in cfg
    assert 'modparam("rtpengine", "rtp_inst_pvar", "$avp(edge_rtpinst)")' in cfg
    assert 'modparam("rtpengine", "hash_algo", 2)' in cfg  # CRC-32 of the Call-ID, as rtpset.pick
    assert "127.0.0.1:2223" not in cfg
    assert "$sht(rtpnode=>$ci) = $avp(edge_rtpinst);" in cfg  # the branch route keeps the offer's node
    routing = json.loads(out["routing.json"])
    assert routing["rtpengine_nodes"] == [["10.0.0.5", 2223, 2], ["2001:db8::6", 2224, 1]]
    assert routing["rtpengine_disable_s"] == 7


def test_kamailio_accepts_a_set(tmp_path: Path) -> None:
    assert KAMAILIO.is_file(), f"{KAMAILIO} is not installed"
    run_dir = render_to_dir(Settings.model_validate({"run_dir": str(tmp_path / "run"), "rtpengine": SET}))
    result = subprocess.run([str(KAMAILIO), "-c", "-f", str(run_dir / "kamailio.cfg")], capture_output=True,
                            text=True, timeout=60, env={**os.environ, ENV_VAR: str(run_dir / "routing.json")})
    assert result.returncode == 0, result.stdout + result.stderr
