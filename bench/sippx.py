"""SIPp runs for the bench: callee (UAS), fixed-rate caller, ramp; parsing of -trace_stat / -trace_rtt."""

from __future__ import annotations

import csv
import glob
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCEN = BENCH / "scenarios"

COMMON = ["-nostdin", "-timer_resol", "1", "-max_recv_loops", "10000", "-max_sched_loops", "10000",
          "-buff_size", "4194304"]


def _popen(argv: list[str], workdir: Path, log: str) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    out = open(workdir / log, "wb")
    proc = subprocess.Popen(argv, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    out.close()
    return proc


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.returncode is None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGUSR1)  # sipp: dump stats and quit
            proc.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


@dataclass
class Uas:
    proc: subprocess.Popen
    workdir: Path


def start_uas(workdir: Path, ip: str, port: int, media_port: int, scenario: str = "uas_cps.xml",
              rtp_echo: bool = False, extra: list[str] | None = None) -> Uas:
    argv = ["sipp", "-sf", str(SCEN / scenario), "-i", ip, "-p", str(port), "-mi", ip, "-mp", str(media_port),
            "-trace_err", "-trace_stat", "-fd", "1", "-stf", "uas_stat.csv"] + COMMON
    if rtp_echo:
        argv.append("-rtp_echo")
    proc = _popen(argv + (extra or []), workdir, "uas_stdout.txt")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sipp UAS exited: {(workdir / 'uas_stdout.txt').read_text()[-2000:]}")
        if _udp_bound(ip, port):
            return Uas(proc, workdir)
        time.sleep(0.02)
    raise RuntimeError("sipp UAS did not bind")


def _udp_bound(ip: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((ip, port))
        except OSError:
            return True
    return False


def uac_argv(scenario: str, ip: str, port: int, media_port: int, target: str, number: str, rate: float,
             calls: int, hold_ms: int, limit: int, extra: list[str] | None = None) -> list[str]:
    return ["sipp", "-sf", str(SCEN / scenario), "-i", ip, "-p", str(port), "-mi", ip, "-mp", str(media_port),
            "-s", number, "-r", f"{rate:g}", "-rp", "1000", "-m", str(calls), "-d", str(hold_ms), "-l", str(limit),
            "-trace_stat", "-fd", "1", "-stf", "uac_stat.csv", "-trace_rtt", "-rtt_freq", "1",
            "-trace_err", "-trace_screen", "-recv_timeout", "10000"] + COMMON + (extra or []) + [target]


def start_uac(workdir: Path, argv: list[str]) -> subprocess.Popen:
    return _popen(argv, workdir, "uac_stdout.txt")


# ------------------------------------------------------------------ parsing


def read_stat(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    if not rows:
        return []
    head = rows[0]
    return [dict(zip(head, r)) for r in rows[1:] if len(r) >= len(head) - 1]


def _i(row: dict[str, str], key: str) -> int:
    try:
        return int(float(row.get(key, "0") or 0))
    except ValueError:
        return 0


def summarize_stat(rows: list[dict[str, str]]) -> dict:
    """Totals from the last -trace_stat row, plus the per-second creation rates."""
    if not rows:
        return {"created": 0, "successful": 0, "failed": 0, "retransmissions": 0, "rates": []}
    last = rows[-1]
    failures = {k[:-3]: _i(last, k) for k in last if k.startswith("Failed") and k.endswith("(C)") and _i(last, k)}
    return {
        "created": _i(last, "TotalCallCreated"),
        "successful": _i(last, "SuccessfulCall(C)"),
        "failed": _i(last, "FailedCall(C)"),
        "failures": failures,
        "retransmissions": _i(last, "Retransmissions(C)"),
        "dead_msgs": _i(last, "DeadCallMsgs(C)"),
        "out_of_call_msgs": _i(last, "OutOfCallMsgs(C)"),
        "watchdog_major": _i(last, "WatchdogMajor(C)"),
        "watchdog_minor": _i(last, "WatchdogMinor(C)"),
        "rates": [_i(r, "OutgoingCall(P)") for r in rows],
        "current": [_i(r, "CurrentCall") for r in rows],
        "failed_p": [_i(r, "FailedCall(P)") for r in rows],
        "retrans_p": [_i(r, "Retransmissions(P)") for r in rows],
    }


def read_rtt(workdir: Path) -> dict[int, list[float]]:
    """-trace_rtt samples (ms) by rtd number."""
    out: dict[int, list[float]] = {}
    for path in glob.glob(str(workdir / "*_rtt.csv")):
        with open(path) as handle:
            next(handle, None)
            for line in handle:
                parts = line.strip().split(";")
                if len(parts) >= 3:
                    try:
                        out.setdefault(int(parts[2]), []).append(float(parts[1]))
                    except ValueError:
                        pass
    return out


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    data = sorted(values)
    k = (len(data) - 1) * q
    f = int(k)
    c = min(f + 1, len(data) - 1)
    return data[f] + (data[c] - data[f]) * (k - f)
