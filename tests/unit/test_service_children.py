"""Stopping one node's service never touches the same service of another node started by the
same Python process (a test run or a tool that starts several nodes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from routing.ops import services


def _started(run_dir: Path, name: str, own: bool) -> subprocess.Popen:
    """A stand-in service process with its pid file in ``run_dir``; ``own`` registers it as a
    child of this process, as ``services._start`` does."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    (run_dir / "pids").mkdir(parents=True, exist_ok=True)
    (run_dir / "pids" / f"{name}.pid").write_text(f"{proc.pid}\n")
    if own:
        services._CHILDREN[proc.pid] = proc
    return proc


def test_stopping_another_nodes_service_leaves_our_child_running(tmp_path: Path) -> None:
    ours = _started(tmp_path / "a", "kamailio", own=True)
    theirs = _started(tmp_path / "b", "kamailio", own=False)  # started by another process (edgectl up)
    try:
        assert services._stop(tmp_path / "b", "kamailio", timeout_s=5.0)
        theirs.wait(timeout=5)
        assert ours.poll() is None, "our node's kamailio was killed by stopping the other node's"
        assert ours.pid in services._CHILDREN
        assert services._stop(tmp_path / "a", "kamailio", timeout_s=5.0)
        assert ours.poll() is not None and ours.pid not in services._CHILDREN
    finally:
        for proc in (ours, theirs):
            proc.kill()
            proc.wait()
        services._CHILDREN.pop(ours.pid, None)
