"""Where the edge's Python CPU goes, per call: every plugin entry point timed and profiled inside
the running Kamailio workers.

A copy of the edge's code (``rungs.build_tree``) gets a wrapper appended to its KEMI entry script
(``kamailio/edge.py``): each ``Edge.ksr_*`` callback (routing/kamailio/entry.py) runs under ``cProfile`` (timer: thread CPU time) and its thread CPU
time (``time.thread_time``: user + system of the worker while in Python, including the KSR calls
and the redis client's socket calls) is summed per entry point.  Each worker writes its totals to
``<out>/pyprof-<pid>.json`` every 20 entries (``.pstats`` every 100).  The bench then runs one fixed-rate
step and folds the files into CPU ms per call: per entry point, per top-level function of the
plugin (cProfile cumulative time, scaled to the measured thread CPU), and the rest of each worker's
CPU (Kamailio's C code outside Python).

Used by ``ladder.py`` (phase ``pyprof``); standalone: ``.venv/bin/python bench/pyprof.py [cps]``.
"""

from __future__ import annotations

import json
import os
import pstats
import shutil
import sys
import time
from pathlib import Path

import rungs
import steps
import sysinfo

WRAPPER = r'''

# ---- appended by bench/pyprof.py: per-entry-point CPU and cProfile, per worker (bench only)
import cProfile as _cprofile
import json as _json
import time as _time

_PROF_DIR = os.environ.get("BYOC_BENCH_PYPROF", "")
# BYOC_BENCH_PYPROF_TIMING=1: thread CPU per entry point only, without cProfile's own cost
_PROFILE = os.environ.get("BYOC_BENCH_PYPROF_TIMING", "") != "1"
_mod_init = mod_init


def mod_init():  # noqa: F811
    router = _mod_init()
    state = {"pid": None}

    def _reset():
        state.update(pid=os.getpid(), prof=_cprofile.Profile(_time.thread_time), cpu={}, n={}, entries=0)

    def _dump(stats):
        base = os.path.join(_PROF_DIR, f"pyprof-{state['pid']}")
        if stats:
            state["prof"].dump_stats(base + ".pstats")
        with open(base + ".json", "w") as handle:
            _json.dump({"cpu_s": state["cpu"], "n": state["n"]}, handle)

    for _name in [n for n in dir(router) if n.startswith("ksr_")]:
        _fn = getattr(router, _name)

        def _wrapped(*args, _fn=_fn, _name=_name):
            if state["pid"] != os.getpid():
                _reset()
            t0 = _time.thread_time()
            if _PROFILE:
                state["prof"].enable()
            try:
                return _fn(*args)
            finally:
                if _PROFILE:
                    state["prof"].disable()
                state["cpu"][_name] = state["cpu"].get(_name, 0.0) + _time.thread_time() - t0
                state["n"][_name] = state["n"].get(_name, 0) + 1
                state["entries"] += 1
                if state["entries"] % 20 == 0:
                    _dump(_PROFILE and state["entries"] % 100 == 0)

        setattr(router, _name, _wrapped)
    return router
'''

#: plugin functions whose cumulative CPU is reported (the first of them on each stack counts)
FUNCTIONS = (
    ("pipeline.py", "route_initial_invite", "routing decision (pipeline: topology, DID, admission)"),
    ("kamailio/worker.py", "snapshot", "request snapshot (KSR pv reads, header names)"),
    ("kamailio/invite.py", "relay", "relay (headers, dialog, call state, t_relay with the branch's rtpengine offer)"),
    ("kamailio/replies.py", "_answered", "answer in Python: call state, call_update.lua"),
    ("kamailio/dialogs.py", "drain_ended", "call end (drain): ng delete, finish.lua, call records (cdr_add.lua)"),
    ("kamailio/indialog.py", "in_dialog", "in-dialog requests (ACK, BYE)"),
    ("kamailio/screening.py", "flood", "screening (the trust check of a source pike flagged)"),
    ("kamailio/replies.py", "onreply", "replies (rtpengine answer, early media)"),
)


def patch_tree(src: Path) -> None:
    """Append the profiling wrapper to ``src``'s KEMI entry script."""
    entry = src / "kamailio" / "edge.py"
    entry.write_text(entry.read_text() + WRAPPER)


def collect(out: Path, calls: int, worker_cpu_s: float) -> dict:
    """Fold the workers' dumps into CPU ms per call."""
    cpu: dict[str, float] = {}
    entries: dict[str, int] = {}
    stats = None
    for path in sorted(out.glob("pyprof-*.json")):
        data = json.loads(path.read_text())
        for k, v in data["cpu_s"].items():
            cpu[k] = cpu.get(k, 0.0) + v
        for k, v in data["n"].items():
            entries[k] = entries.get(k, 0) + v
        pst = path.with_suffix(".pstats")
        if pst.exists():
            stats = pstats.Stats(str(pst)) if stats is None else (stats.add(str(pst)) or stats)
    total_py = sum(cpu.values())
    funcs: dict[str, float] = {}
    if stats is not None:
        prof_total = sum(tt for (_f, _l, _n), (_cc, _nc, tt, _ct, _c) in stats.stats.items())
        scale = total_py / prof_total if prof_total else 0.0
        for file_, fn, label in FUNCTIONS:
            cum = sum(ct for (f, _l, n), (_cc, _nc, _tt, ct, _c) in stats.stats.items()
                      if n == fn and f.endswith(file_))
            funcs[label] = round(1000 * cum * scale / max(1, calls), 3)
        # the costliest leaf functions (own time), for the hot spots inside
        top = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:15]
        leaves = [{"function": f"{Path(f).name}:{n}", "ms_per_call": round(1000 * tt * scale / max(1, calls), 4)}
                  for (f, _l, n), (_cc, _nc, tt, _ct, _c) in top]
    else:
        leaves = []
    return {
        "calls": calls,
        "python_ms_per_call": round(1000 * total_py / max(1, calls), 3),
        "kamailio_ms_per_call": round(1000 * worker_cpu_s / max(1, calls), 3),
        "outside_python_ms_per_call": round(1000 * (worker_cpu_s - total_py) / max(1, calls), 3),
        "entry_points": {k: {"ms_per_call": round(1000 * v / max(1, calls), 3), "entries_per_call":
                             round(entries.get(k, 0) / max(1, calls), 2)} for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])},
        "functions": funcs,
        "top_own_time": leaves,
    }


def measure(base: Path, out: Path, rate: int = 150, seconds: float = 10, ref: str | None = "HEAD") -> dict:
    """Start the profiled edge on the bench's addresses, run one step at ``rate`` CPS, fold."""
    src = rungs.build_tree(base / "src-pyprof", ref)
    patch_tree(src)
    prof_dir = base / "pyprof"
    shutil.rmtree(prof_dir, ignore_errors=True)
    prof_dir.mkdir(parents=True)
    os.environ["BYOC_BENCH_PYPROF"] = str(prof_dir)
    edge = rungs.Edge(base / "pyprof-edge")
    edge.base.mkdir(parents=True, exist_ok=True)
    try:
        # the edge rung's settings: SIP capture off (its HEP copies of every message are the
        # edge-capture rung's cost, not the call path's)
        edge.up(src=src, capture=False if (src / "routing" / "capture").is_dir() else None)
        edge.provision()
        time.sleep(1)
        leader = edge.pid("kamailio")
        procs = sysinfo.session_pids(leader)  # every Kamailio process: workers, timers, rtimers
        c0 = sysinfo.cpu_seconds(procs)
        for p in prof_dir.glob("pyprof-*"):
            p.unlink()  # the warm-up (provisioning, first timers) is not counted
        kam = sysinfo.Group("kamailio", leader=leader)
        tgt = steps.Target("edge", f"{rungs.EDGE_IP}:{rungs.SIP_PORT}", [kam], ("kamailio",))
        res = steps.run_step(out / "pyprof-step", tgt, rate, seconds, 500)
        time.sleep(2)
        c1 = sysinfo.cpu_seconds(procs)
        # the last dump of each worker may miss up to 199 entries: scale by the entries counted
        result = collect(prof_dir, res["successful"], c1 - c0)
        result.update(rate=rate, passed=res["passed"], failed=res["failed"], step_cpu_ms_per_call=res.get("cpu_ms_per_call"))
        for p in prof_dir.glob("pyprof-*.pstats"):
            shutil.copy(p, out)
        return result
    finally:
        edge.down()
        os.environ.pop("BYOC_BENCH_PYPROF", None)


def main() -> int:
    rate = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(f"/tmp/byoc-pyprof-{stamp}")
    out = base / "out"
    out.mkdir(parents=True)
    print(json.dumps(measure(base, out, rate), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
