"""The alerting rules of monitoring/alerts.yml, with the real Prometheus tool: valid (`promtool check
rules`), loaded by the shipped scrape config, and each alert firing on the series that should fire
it and not before (`promtool test rules tests/monitoring/alerts_test.yml`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "monitoring" / "alerts.yml"
TESTS = ROOT / "tests" / "monitoring" / "alerts_test.yml"


def _promtool() -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed (scripts/bootstrap installs the Debian package prometheus)"
    return binary


def test_rules_are_valid() -> None:
    done = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 11 rules found" in done.stdout


def test_every_alert_is_unit_tested_and_fires_as_its_test_says() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tested = {t["alertname"] for case in yaml.safe_load(TESTS.read_text())["tests"] for t in case["alert_rule_test"]}
    assert alerts == tested
    done = subprocess.run([_promtool(), "test", "rules", TESTS.name], cwd=TESTS.parent, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_scrape_config_loads_the_rules() -> None:
    config = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
