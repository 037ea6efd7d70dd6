"""routing.call.metrics: names by Prometheus conventions, xhttp_prom declarations, label helpers."""

from __future__ import annotations

import re

import pytest

from routing.call import metrics
from routing.ops.render import render
from routing.ops.settings import Settings


def test_names_follow_prometheus_conventions() -> None:
    for m in metrics.KAMAILIO_METRICS:
        assert re.fullmatch(r"byoc_edge_[a-z_]+", m.name)
        assert m.name.endswith("_total") == (m.kind == "counter"), m.name
        assert m.kind != "histogram" or m.name.endswith(("_seconds", "_ratio", "_score"))  # a base unit, or none
        assert len(m.labels) <= 3  # xhttp_prom's limit
        assert set(m.labels) <= {"direction", "trunk", "agent", "result", "reason", "mode", "side"}


def test_declarations_are_rendered_into_kamailio_cfg() -> None:
    cfg = render(Settings())["kamailio.cfg"]
    assert 'modparam("xhttp_prom", "prom_counter", "name=byoc_edge_rejections_total; label=reason;")' in cfg
    assert ('modparam("xhttp_prom", "prom_histogram", "name=byoc_edge_setup_time_seconds; label=direction:trunk; '
            'buckets=0.1:0.25:0.5:1:2:3:5:8:13:20:30:60;")') in cfg
    listens = [line for line in cfg.splitlines() if line.startswith("listen=")]
    assert listens[-1] == "listen=tcp:127.0.0.1:9161"  # after the SIP listeners: never used to send SIP
    assert "listen-http = 127.0.0.1:9162" in render(Settings())["rtpengine.conf"]


@pytest.mark.parametrize("code,cls", [(180, "1xx"), (200, "2xx"), (487, "4xx"), (503, "5xx"), (603, "6xx"),
                                      (0, "unknown"), (700, "unknown")])
def test_sip_class(code: int, cls: str) -> None:
    assert metrics.sip_class(code) == cls


def test_metrics_ports_must_differ() -> None:
    with pytest.raises(ValueError, match="must differ"):
        Settings.model_validate({"metrics": {"kamailio_port": 9000, "rtpengine_port": 9000}})


def test_quality_observations_name_the_sender_side_and_skip_silent_sides() -> None:
    media = {"media_caller_mos": "4.4", "media_caller_packets": "500", "media_caller_loss_pct": "2.5",
             "media_caller_jitter_ms": "3", "media_callee_packets": "0", "media_callee_loss_pct": "0",
             "media_callee_jitter_ms": "", "media_callee_mos": ""}
    assert metrics.quality_observations("origination", media) == [
        (metrics.CALL_MOS, 4.4, "carrier"), (metrics.CALL_PACKET_LOSS, 0.025, "carrier"),
        (metrics.CALL_JITTER, 0.003, "carrier")]
    assert [side for _, _, side in metrics.quality_observations("termination", media)] == ["agent"] * 3
    assert metrics.quality_observations("origination", {}) == []
