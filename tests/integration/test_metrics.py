"""Metrics end to end: a real Prometheus scrapes the running edge (Kamailio xhttp_prom, rtpengine
/metrics, the edge exporter) with the documented scrape config while SIPp calls flow, and every
panel query of the Grafana dashboard shows what the test drove: the counts it placed, per label,
in Kamailio and in Prometheus; a non-zero rate, quantile or gauge for every series it moved; and
the exact value of every gauge it set (limits, gateway and registration state).  The one panel
the test does not drive is named in :data:`PANELS` with the reason."""

from __future__ import annotations

import json
from decimal import Decimal
import math
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from routing.tables import admin
from routing.tables.model import AuthMode, Direction, Registration, Trunk
from routing.ops.secrets import SecretBox, create_key
from routing.ops.settings import REPO_ROOT
from tests.sipp import gateway_scenario, reject_uac_scenario, uac, uas
from tests.helpers import free_port, wait_until

from .conftest import AGENT_IP, CARRIER_A, CARRIER_B, CARRIER_C, DID, EDGE_IP, NET, Edge

DASHBOARD = REPO_ROOT / "monitoring" / "grafana" / "byoc-edge.json"
SCRAPE_CONFIG = REPO_ROOT / "monitoring" / "prometheus.yml"
GW_PORT = 5080
PBX_IP = f"{NET}.31"
PASSWORD = "metrics-Pa55-4711"
REG_PASSWORD = "metrics-reg-Pa55-0815"
REGISTRAR_PORT = 5099
#: how long the held call lasts (ms): the active-call panels are read while it is up
HOLD_MS = 8000

#: Kamailio series (name, sorted labels) -> what the test adds: two batches of :func:`traffic`
#: plus the held call (an answered origination).  Every counter and histogram count the test
#: moves, and nothing else may move (histogram buckets and sums follow their counts).
ORIG = 'agent="bot",direction="origination",trunk="carrier-b"'
EXPECTED_ADDED = {
    ("byoc_edge_calls_attempted_total", ORIG): 3,
    ("byoc_edge_calls_attempted_total", 'agent="bot",direction="termination",trunk="carrier-a"'): 2,
    ("byoc_edge_calls_attempted_total", 'agent="bot",direction="termination",trunk="carrier-c"'): 2,
    ("byoc_edge_calls_answered_total", ORIG): 3,
    ("byoc_edge_calls_answered_total", 'agent="bot",direction="termination",trunk="carrier-b"'): 2,
    ("byoc_edge_failovers_total", 'direction="termination",trunk="carrier-a"'): 2,
    ("byoc_edge_calls_failed_total", 'direction="termination",result="4xx",trunk="carrier-c"'): 2,
    ("byoc_edge_rejections_total", 'reason="bad_number"'): 2,
    ("byoc_edge_rejections_total", 'reason="no_route"'): 2,
    ("byoc_edge_registrations_total", 'result="accepted",trunk="pbx"'): 2,
    ("byoc_edge_post_dial_delay_seconds_count", 'direction="origination",trunk="carrier-b"'): 3,
    ("byoc_edge_post_dial_delay_seconds_count", 'direction="termination",trunk="carrier-b"'): 2,
    ("byoc_edge_setup_time_seconds_count", 'direction="origination",trunk="carrier-b"'): 3,
    ("byoc_edge_setup_time_seconds_count", 'direction="termination",trunk="carrier-b"'): 2,
    ("byoc_edge_call_duration_seconds_count", ORIG): 3,
    ("byoc_edge_call_duration_seconds_count", 'agent="bot",direction="termination",trunk="carrier-b"'): 2,
    # the held call's agent (a SIPp callee) sends no RTP for longer than media.dead_air_s
    ("byoc_edge_dead_air_total", ORIG): 1,
}

POSITIVE = "> 0"
#: answered / (answered + failed) by trunk, a trunk with only one of the two counting 0 of the other
ASR_PANEL = ("{a} / ({a} + {f})".format(
    a="(sum by (trunk) (rate(byoc_edge_calls_answered_total[1m])) or sum by (trunk) (rate(byoc_edge_calls_failed_total[1m])) * 0)",
    f="(sum by (trunk) (rate(byoc_edge_calls_failed_total[1m])) or sum by (trunk) (rate(byoc_edge_calls_answered_total[1m])) * 0)"))
#: a quality panel the SIPp peers of this test cannot drive (no RTP): it must answer, with no series
NO_RTP = "no RTP: proven in tests/integration/test_call_quality.py"
#: every panel query of the dashboard ($__rate_interval as 1m) -> (the labels a series is told
#: apart by, {their values: the value required}) where the value is a number or POSITIVE (a
#: number above zero, never NaN), or the reason why the test does not drive it.  Series of other
#: label values (left by earlier tests in the session) are not judged.
PANELS: dict[str, tuple[tuple[str, ...], dict[tuple[str, ...], float | str]] | str] = {
    "sum by (direction) (rate(byoc_edge_calls_attempted_total[1m]))":
        (("direction",), {("origination",): POSITIVE, ("termination",): POSITIVE}),
    "sum by (trunk) (rate(byoc_edge_calls_answered_total[1m]))": (("trunk",), {("carrier-b",): POSITIVE}),
    "sum by (result) (rate(byoc_edge_calls_failed_total[1m]))": (("result",), {("4xx",): POSITIVE}),
    "sum by (reason) (rate(byoc_edge_rejections_total[1m]))":
        (("reason",), {("bad_number",): POSITIVE, ("no_route",): POSITIVE}),
    # read while the held call is up (see HELD_PANELS)
    "sum by (trunk) (byoc_edge_trunk_active_calls)": (("trunk",), {("carrier-b",): 1}),
    "sum by (trunk) (byoc_edge_trunk_max_calls)": (("trunk",), {("carrier-a",): 10}),
    "sum by (agent) (byoc_edge_agent_active_calls)": (("agent",), {("bot",): 1}),
    "sum by (agent) (byoc_edge_agent_max_calls)": (("agent",), {("bot",): 5}),
    "histogram_quantile(0.95, sum by (le, trunk) (rate(byoc_edge_post_dial_delay_seconds_bucket[1m])))":
        (("trunk",), {("carrier-b",): POSITIVE}),
    "histogram_quantile(0.5, sum by (le, trunk) (rate(byoc_edge_post_dial_delay_seconds_bucket[1m])))":
        (("trunk",), {("carrier-b",): POSITIVE}),
    "histogram_quantile(0.95, sum by (le, trunk) (rate(byoc_edge_setup_time_seconds_bucket[1m])))":
        (("trunk",), {("carrier-b",): POSITIVE}),
    "histogram_quantile(0.5, sum by (le, trunk) (rate(byoc_edge_setup_time_seconds_bucket[1m])))":
        (("trunk",), {("carrier-b",): POSITIVE}),
    "sum by (trunk) (rate(byoc_edge_failovers_total[1m]))": (("trunk",), {("carrier-a",): POSITIVE}),
    "byoc_edge_gateway_up": (("trunk", "gateway"), {
        ("carrier-a", f"{CARRIER_A}:{GW_PORT}"): 1, ("carrier-b", f"{CARRIER_B}:{GW_PORT}"): 1,
        ("carrier-c", f"{CARRIER_C}:{GW_PORT}"): 1, ("carrier-c", f"{CARRIER_C}:{GW_PORT + 1}"): 0}),
    "byoc_edge_gateway_options_rtt_seconds": (("trunk", "gateway"), {
        ("carrier-a", f"{CARRIER_A}:{GW_PORT}"): POSITIVE, ("carrier-b", f"{CARRIER_B}:{GW_PORT}"): POSITIVE,
        ("carrier-c", f"{CARRIER_C}:{GW_PORT}"): POSITIVE}),
    "sum by (node) (rtpengine_transcoded_media)":
        "not driven: the SIPp peers here offer and answer PCMU without RTP, so nothing is transcoded and 0 is "
        "the true value; transcoding with real audio, and rtpengine's own count of it, is proven in "
        "tests/integration/test_media.py",
    "sum by (trunk, result) (rate(byoc_edge_registrations_total[1m]))":
        (("trunk", "result"), {("pbx", "accepted"): POSITIVE}),
    "byoc_edge_registration_up": (("trunk",), {("regcarrier",): 1}),
    'up{job=~"byoc-edge-.*"}': (("job",), {
        ("byoc-edge-kamailio",): 1, ("byoc-edge-rtpengine",): 1, ("byoc-edge-exporter",): 1}),
    "byoc_edge_redis_up": ((), {(): 1}),
    ASR_PANEL: (("trunk",), {("carrier-b",): 1, ("carrier-c",): 0}),
    "sum by (trunk) (rate(byoc_edge_call_duration_seconds_sum[1m])) / sum by (trunk) "
    "(rate(byoc_edge_call_duration_seconds_count[1m]))": (("trunk",), {("carrier-b",): POSITIVE}),
    "sum by (trunk) (byoc_edge_trunk_spend_today)": (("trunk",), {("carrier-b",): POSITIVE}),
    "sum by (trunk) (byoc_edge_trunk_daily_spend_cap)": (("trunk",), {("carrier-b",): 100}),
    # the SIPp peers here send no RTP: no stream is scored, so these answer with no series at all;
    # tests/integration/test_call_quality.py drives them with real audio (baresip) and induced loss
    "histogram_quantile(0.5, sum by (le, trunk, side) (rate(byoc_edge_call_mos_score_bucket[1m])))": NO_RTP,
    "histogram_quantile(0.95, sum by (le, trunk, side) (rate(byoc_edge_call_packet_loss_ratio_bucket[1m])))": NO_RTP,
    "histogram_quantile(0.95, sum by (le, agent, side) (rate(byoc_edge_call_jitter_seconds_bucket[1m])))": NO_RTP,
    "histogram_quantile(0.95, sum by (le, agent) (rate(byoc_edge_time_to_first_audio_seconds_bucket[1m])))": NO_RTP,
    "sum by (agent) (byoc_edge_dead_air_total)": (("agent",), {("bot",): POSITIVE}),
}
#: the panels read while the held call is up
HELD_PANELS = ("sum by (trunk) (byoc_edge_trunk_active_calls)", "sum by (agent) (byoc_edge_agent_active_calls)")


@pytest.fixture(scope="module")
def prometheus(edge: Edge, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus (Debian package `prometheus`) scraping this edge every second with the
    jobs of monitoring/prometheus.yml, pointed at the test edge's ports; yields its base URL."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (scripts/bootstrap installs the Debian package)"
    workdir = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    m = edge.settings.metrics
    ports = {"byoc-edge-kamailio": m.kamailio_port, "byoc-edge-rtpengine": m.rtpengine_port,
             "byoc-edge-exporter": m.exporter_port}
    assert {job["job_name"] for job in config["scrape_configs"]} == set(ports)
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    for job in config["scrape_configs"]:
        job["static_configs"][0]["targets"] = [f"{m.address}:{ports[job['job_name']]}"]
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(SCRAPE_CONFIG.parent / "alerts.yml", workdir / "alerts.yml")  # rule_files: the alerting rules
    listen = f"{EDGE_IP}:{free_port(EDGE_IP)}"
    log = open(workdir / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address={listen}", "--storage.tsdb.retention.time=1h"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    log.close()
    url = f"http://{listen}"

    def ready() -> bool:
        assert proc.poll() is None, (workdir / "prometheus.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False

    try:
        wait_until(ready, timeout=60, interval=0.2, what="prometheus ready")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def query(url: str, expr: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, Grafana's $__rate_interval as 1m."""
    dashboard = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dashboard["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            out.append((panel["title"], target["expr"].replace("$__rate_interval", "1m")))
    return out


def panel_shortfalls(url: str, expr: str) -> list[str]:
    """What the panel query ``expr`` lacks against :data:`PANELS` (empty when it shows it all)."""
    labels, wanted = PANELS[expr]
    got = {tuple(s["metric"].get(name, "") for name in labels): float(s["value"][1]) for s in query(url, expr)}
    missing = []
    for key, value in wanted.items():
        have = got.get(key)
        if have is None or math.isnan(have) or (have <= 0 if value == POSITIVE else have != value):
            missing.append(f"{dict(zip(labels, key))} = {have}, wanted {value}")
    return missing


def prometheus_value(url: str, name: str, labels: str) -> float | None:
    """The value Prometheus holds for one Kamailio series (its job and instance labels summed away)."""
    found = query(url, f"sum({name}{{{labels}}})")
    return float(found[0]["value"][1]) if found else None


def kamailio_samples(edge: Edge) -> dict[tuple[str, str], float]:
    """Kamailio's /metrics as {(name, sorted labels): value} (xhttp_prom appends a timestamp)."""
    out = {}
    for line in edge.metrics("kamailio").splitlines():
        match = re.match(r"^([a-z_]+)(?:\{(.*)\})? ([0-9.e+-]+|NaN)(?: \d+)?$", line)
        if match:
            labels = ",".join(sorted(p.strip() for p in (match.group(2) or "").split(",") if p.strip()))
            out[(match.group(1), labels)] = float(match.group(3))
    return out


def provision(edge: Edge) -> None:
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, GW_PORT)], max_calls=10)
    edge.trunk("carrier-b", [f"{CARRIER_B}/32"], [(CARRIER_B, GW_PORT)], daily_spend_cap=Decimal("100"))
    edge.trunk("carrier-c", [f"{CARRIER_C}/32"], [(CARRIER_C, GW_PORT), (CARRIER_C, GW_PORT + 1)])
    # a SIPp callee that answers INVITEs only: not probed (the monitor here pings every agent URI)
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"], max_calls=5, probe=False)
    edge.route("+44", "carrier-a", "0.0100")  # answers 503: fails over to carrier-b
    edge.route("+44", "carrier-b", "0.0200")
    edge.route("+33", "carrier-c", "0.0100")  # answers 486; its second gateway is dead (down)
    edge.did(DID, "carrier-b", "bot")
    admin.put_trunk(edge.redis, Trunk("pbx", Direction.BOTH, auth=AuthMode.DIGEST))
    create_key(edge.settings.secret_key_path)
    box = SecretBox(edge.settings.secret_key_path)
    admin.set_trunk_password(edge.redis, box, "pbx", "pbx-user", PASSWORD)
    # a registration trunk: the edge registers to the SIPp registrar of the test (one registration,
    # valid long after the test)
    admin.put_trunk(edge.redis, Trunk("regcarrier", Direction.BOTH,
                                      register=Registration(f"{CARRIER_A}:{REGISTRAR_PORT}", "edge0badc0ffee0001",
                                                            expires_s=600)))
    admin.set_trunk_password(edge.redis, box, "regcarrier", "reg-user", REG_PASSWORD)


def traffic(edge: Edge, batch: int) -> None:
    """One answered origination, one termination answered after a failover, one failed with 486,
    two refusals (bad number, no route) and one registration (a digest trunk exists, so an
    unknown source would be challenged rather than refused)."""
    d = edge.workdir / f"batch{batch}"
    expect = reject_uac_scenario(d)
    runs = [
        (uac(d / "orig", CARRIER_B, 5070, edge.sip, DID, scenario=expect), (200, "OK")),
        (uac(d / "term", AGENT_IP, 5070, edge.sip, "+442071838750", scenario=expect), (200, "OK")),
        (uac(d / "busy", AGENT_IP, 5071, edge.sip, "+33142685300", scenario=expect), (486, "Test Reply 486")),
        (uac(d / "badnumber", AGENT_IP, 5073, edge.sip, "not-a-number", scenario=expect),
         (484, "Invalid Destination Number")),
        (uac(d / "noroute", AGENT_IP, 5072, edge.sip, "+81312345678", scenario=expect), (404, "No Route")),
        (uac(d / "register", PBX_IP, 5070, edge.sip, "pbx", scenario="uac_register.xml",
             extra=["-au", "pbx-user", "-ap", PASSWORD]), None),
    ]
    for run, final in runs:
        assert run.wait() == 0, run.output()
        if final is not None:
            assert run.final_status() == [final]


def test_every_dashboard_panel_shows_what_the_test_drove_in_a_real_prometheus(
        probing_edge: Edge, clean_edge: Edge, prometheus: str) -> None:
    edge = clean_edge
    titles = {expr: title for title, expr in panel_queries()}
    assert set(PANELS) == {expr for _, expr in panel_queries()}, "PANELS must name every panel query, no other"
    registrar = uas(edge.workdir / "registrar", CARRIER_A, REGISTRAR_PORT, scenario="uas_registrar.xml", calls=1,
                    rtp_echo=False, extra=["-key", "authusername", "reg-user", "-key", "authpassword", REG_PASSWORD,
                                           "-key", "expires", "600"])
    provision(edge)
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario="uas_answer.xml", calls=3, answer_ms=200)
    for ip, invite_code in ((CARRIER_A, 503), (CARRIER_B, 200), (CARRIER_C, 486)):
        uas(edge.workdir / f"gw-{ip}", ip, GW_PORT, scenario=gateway_scenario(edge.workdir, 200, invite_code),
            calls=100000, answer_ms=200)
    # the dead gateway is marked down, the others up, before the calls
    expected = {(CARRIER_A, GW_PORT, "carrier-a", 1), (CARRIER_B, GW_PORT, "carrier-b", 1),
                (CARRIER_C, GW_PORT, "carrier-c", 1), (CARRIER_C, GW_PORT + 1, "carrier-c", 0)}
    wait_until(lambda: all(f'byoc_edge_gateway_up{{gateway="{ip}:{port}",trunk="{trunk}"}} {up}.0'
                           in edge.metrics("exporter") for ip, port, trunk, up in expected),
               timeout=20, what="gateway health settled")

    before = kamailio_samples(edge)
    traffic(edge, 1)
    # counters exist in Prometheus before the second batch, so rates and quantiles are real numbers
    wait_until(lambda: query(prometheus, 'byoc_edge_calls_answered_total{trunk="carrier-b"}'), timeout=30,
               interval=0.5, what="first batch scraped")
    traffic(edge, 2)

    # a call held up while the active-call panels are read: carrier-b -> DID -> bot
    held = uac(edge.workdir / "held", CARRIER_B, 5074, edge.sip, DID, scenario="uac_simple.xml", hold_ms=HOLD_MS)
    for expr in HELD_PANELS:
        wait_until(lambda: not panel_shortfalls(prometheus, expr), timeout=HOLD_MS / 1000 - 2, interval=0.25,
                   what=f"{expr} with the held call: {panel_shortfalls(prometheus, expr)}")
    assert held.wait() == 0, held.output()
    assert agent.wait() == 0, agent.output()
    assert registrar.wait() == 0, registrar.output()

    # Kamailio's own view (shared memory, whatever worker handled each call): exactly what the test added
    text = edge.metrics("kamailio")
    after = kamailio_samples(edge)
    added = {key: value - before.get(key, 0) for key, value in after.items()
             if value != before.get(key, 0) and not key[0].endswith(("_bucket", "_sum"))}
    assert added == EXPECTED_ADDED
    assert "call-" not in text.lower() and "@" not in text  # never a Call-ID or an address as a label
    # ... and Prometheus holds the same numbers, once it scraped after the last call
    for name, labels in EXPECTED_ADDED:
        wait_until(lambda: prometheus_value(prometheus, name, labels) == after[(name, labels)], timeout=15,
                   interval=0.25, what=f"{name}{{{labels}}} = {after[(name, labels)]} in Prometheus: "
                                       f"{prometheus_value(prometheus, name, labels)}")

    # every other panel, polled together (one slow panel must not age the others' 1m windows)
    judged = [expr for expr, want in PANELS.items() if not isinstance(want, str) and expr not in HELD_PANELS]
    for expr, want in PANELS.items():
        if want == NO_RTP:
            # no value from this test's calls; a series an earlier test's call left in Kamailio (histograms live
            # until Kamailio restarts) has no rate now: NaN, no value either
            assert [s for s in query(prometheus, expr) if s["value"][1] != "NaN"] == [], expr

    def shortfalls() -> dict[str, list[str]]:
        return {expr: missing for expr in judged if (missing := panel_shortfalls(prometheus, expr))}

    try:
        wait_until(lambda: not shortfalls(), timeout=30, interval=0.5, what="every panel")
    except AssertionError:
        pass
    failing = shortfalls()
    assert not failing, "\n".join(f"{titles[expr]}: {expr}: {missing}" for expr, missing in failing.items())
    # the one panel not driven still answers (with its true 0)
    for expr, reason in PANELS.items():
        if isinstance(reason, str) and reason != NO_RTP:
            assert [float(s["value"][1]) for s in query(prometheus, expr)] == [0.0], (expr, reason)
    # the alerting rules of monitoring/alerts.yml load and evaluate in the real Prometheus
    with urllib.request.urlopen(f"{prometheus}/api/v1/rules", timeout=5) as reply:
        rules = [r for g in json.loads(reply.read())["data"]["groups"] for r in g["rules"]]
    assert len(rules) == 11 and all(r["health"] == "ok" for r in rules), rules


def test_http_on_a_sip_port_is_refused_and_only_metrics_is_served(clean_edge: Edge) -> None:
    edge = clean_edge
    m = edge.settings.metrics
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://{edge.sip}/metrics", timeout=5)
    refused.value.close()
    assert refused.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://{m.address}:{m.kamailio_port}/other", timeout=5)
    missing.value.close()
    assert missing.value.code == 404
