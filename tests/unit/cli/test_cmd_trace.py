"""``edgectl trace`` over a capture directory (no edge running): the ladder, exports, --failed, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from routing.capture.hep import build
from routing.capture.store import CaptureStore
from routing.cli import main
from tests.unit.capture.samples import CALL_ID, NONCE, RESPONSE, answered_call, refused_call


@pytest.fixture
def settings(tmp_path: Path) -> Path:
    path = tmp_path / "edge.yaml"
    path.write_text(f"run_dir: {tmp_path / 'run'}\nsip: {{listen: [{{address: 192.0.2.1, port: 5060}}]}}\n")
    store = CaptureStore(tmp_path / "run" / "captures", 10**6, 3600)
    store.open()
    for packet in answered_call():
        store.append(CALL_ID, build(packet), 1.0)
    for i in range(3):
        for packet in refused_call(f"refused-{i}@x", ts=200.0 + i):
            store.append(f"refused-{i}@x", build(packet), 2.0 + i)
    import os

    for i in range(3):  # the refusals' files were written after the answered call's, in order
        os.utime(store.call(f"refused-{i}@x").path, (1000 + i, 1000 + i))
    return path


def run(settings: Path, *args: str):
    return CliRunner().invoke(main, ["--settings", str(settings), "trace", *args])


def test_the_ladder_in_the_terminal(settings: Path) -> None:
    result = run(settings, CALL_ID)
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"Call-ID {CALL_ID}: 11 SIP messages" in out
    assert "192.0.2.11:5070 → 192.0.2.1:5060 (edge)" in out and "192.0.2.1:5060 (edge) → 192.0.2.21:5090" in out
    assert "X-Edge-Trunk: pbx" in out and 'response="***"' in out
    assert RESPONSE not in out and NONCE not in out
    full = run(settings, CALL_ID, "--full").output
    assert "Via: SIP/2.0/UDP" in full and RESPONSE not in full


def test_json_and_exports(settings: Path, tmp_path: Path) -> None:
    result = run(settings, CALL_ID, "--json", "--pcap", str(tmp_path / "c.pcap"), "--html", str(tmp_path / "c.html"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [m["message"] for m in data["messages"]][:3] == ["INVITE", "100 Trying", "INVITE"]
    assert (tmp_path / "c.pcap").stat().st_size > 0
    assert (tmp_path / "c.html").read_text().count('<g class="msg"') == 11


def test_failed_lists_the_latest_failed_calls_first(settings: Path) -> None:
    result = run(settings, "--failed", "--last", "2", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["call_id"] for r in rows] == ["refused-2@x", "refused-1@x"]
    assert rows[0]["status"] == 403 and rows[0]["source"] == "192.0.2.99:5070"
    table = run(settings, "--failed").output
    assert "refused-0@x" in table and "403 Source Not Allowed" in table and CALL_ID not in table


@pytest.mark.parametrize("args, message", [
    (("no-such@call",), "Error: no capture of Call-ID 'no-such@call' in "),
    ((), "missing CALL-ID (or --failed)"),
    ((CALL_ID, "--failed"), "give a CALL-ID or --failed, not both"),
])
def test_bad_input_is_one_line_and_a_non_zero_exit(settings: Path, args: tuple[str, ...], message: str) -> None:
    result = run(settings, *args)
    assert result.exit_code != 0
    assert message in result.output
