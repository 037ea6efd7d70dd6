"""routing.ops.drain over a fake Kamailio RPC: the flag, the file that keeps a node drained across a
restart, the calls left, the wait; routing.ops.kamrpc's parsing of kamcmd output."""

from __future__ import annotations

from pathlib import Path

import pytest

from routing.ops import drain, kamrpc
from routing.ops.settings import Settings


class FakeKamailio:
    """The two RPCs drain uses, on a shared variable and a dialog count; ``running=False``: no answer."""

    def __init__(self) -> None:
        self.flag = 0
        self.dialogs: list[int] = [0]
        self.running = True
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def __call__(self, run_dir: object, method: str, *params: object, **_: object) -> str:
        self.calls.append((method, params))
        if not self.running:
            raise kamrpc.RpcError("kamailio did not answer")
        if method == "pv.shvGet":
            return f"{{\n\tname: edge_drain\n\ttype: int\n\tvalue: {self.flag}\n}}\n"
        if method == "pv.shvSet":
            assert params[:2] == ("edge_drain", "int")
            self.flag = int(params[2])  # type: ignore[arg-type]
            return ""
        if method == "dlg.stats_active":
            left = self.dialogs.pop(0) if len(self.dialogs) > 1 else self.dialogs[0]
            return f"{{\n\tstarting: 0\n\tconnecting: 0\n\tanswering: 0\n\tongoing: {left}\n\tall: {left}\n}}\n"
        raise AssertionError(method)


@pytest.fixture
def kamailio(monkeypatch: pytest.MonkeyPatch) -> FakeKamailio:
    fake = FakeKamailio()
    monkeypatch.setattr(kamrpc, "call", fake)
    return fake


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(run_dir=tmp_path)


def test_drain_sets_the_flag_to_its_start_time_and_writes_the_file_kamailio_imports(
        kamailio: FakeKamailio, settings: Settings) -> None:
    kamailio.dialogs = [2]
    state = drain.drain(settings, now_s=lambda: 1700000000.5)
    assert state == drain.DrainState(True, 1700000000, 2, True, True)
    assert kamailio.flag == 1700000000
    text = (settings.run_dir / "drain.cfg").read_text()
    assert 'modparam("pv", "shvset", "edge_drain=i:1700000000")' in text
    assert oct((settings.run_dir / "drain.cfg").stat().st_mode & 0o777) == "0o644"


def test_a_second_drain_keeps_the_first_start_time(kamailio: FakeKamailio, settings: Settings) -> None:
    drain.drain(settings, now_s=lambda: 100)
    assert drain.drain(settings, now_s=lambda: 200).since_s == 100
    assert [m for m, _ in kamailio.calls].count("pv.shvSet") == 1


def test_undrain_removes_the_file_and_clears_the_flag(kamailio: FakeKamailio, settings: Settings) -> None:
    drain.drain(settings, now_s=lambda: 100)
    state = drain.undrain(settings)
    assert state == drain.DrainState(False, None, 0, False, True)
    assert not (settings.run_dir / "drain.cfg").exists()


def test_a_stopped_kamailio_is_drained_through_the_file(kamailio: FakeKamailio, settings: Settings) -> None:
    kamailio.running = False
    state = drain.drain(settings, now_s=lambda: 100)
    assert (state.draining, state.persisted, state.running, state.calls_left) == (True, True, False, None)
    assert drain.state(settings).draining
    with pytest.raises(kamrpc.RpcError):
        drain.undrain(settings)  # no RPC answer: said so, but the file is gone (it starts in service)
    assert not drain.state(settings).draining


def test_wait_needs_two_readings_of_zero(kamailio: FakeKamailio, settings: Settings) -> None:
    kamailio.dialogs = [3, 1, 0, 1, 0, 0]
    slept: list[float] = []
    assert drain.wait_drained(settings, timeout_s=60, clock=lambda: 0.0, sleep=slept.append) == 0
    assert len(slept) == 5


def test_wait_gives_up_at_the_timeout_with_the_calls_left(kamailio: FakeKamailio, settings: Settings) -> None:
    kamailio.dialogs = [4]
    now = iter([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert drain.wait_drained(settings, timeout_s=2, clock=lambda: next(now), sleep=lambda s: None) == 4


def test_fields_of_a_kamcmd_struct() -> None:
    out = "{\n\tstarting: 0\n\tall: 7\n\tname: edge drain x\n}\n"
    assert kamrpc.fields(out) == {"starting": "0", "all": "7", "name": "edge drain x"}


def test_rpc_errors_are_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import subprocess

    def run(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        assert argv[1:4] == ["-s", f"unix:{tmp_path}/kamailio_ctl", "pv.shvSet"] and argv[4:] == ["s:edge_drain", "s:int", "5"]
        return subprocess.CompletedProcess(argv, 0, "error: 404 - Variable not found\n", "")

    monkeypatch.setattr(subprocess, "run", run)
    with pytest.raises(kamrpc.RpcError, match="pv.shvSet .* failed: error: 404 - Variable not found$"):
        kamrpc.call(tmp_path, "pv.shvSet", "edge_drain", "int", 5)
