"""One measured step: a SIPp callee + caller pair at a fixed rate (or a ramp) against one rung,
with CPU accounting of every process group and the kernel's UDP counters."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import rungs
import sippx
import sysinfo

MIN_PASS_RATIO = 0.95  # achieved creation rate / offered rate


@dataclass
class Target:
    """Where a rung's caller sends its INVITEs, and which processes belong to the rung."""

    name: str
    address: str  # ip:port
    groups: list[sysinfo.Group]
    sut: tuple[str, ...]  # group names that make up the system under test
    ready: callable = None  # returns True when the rung is idle (no leftover calls)


def scenario(workdir: Path, hold_ms: int, name: str = "uac_cps.xml") -> Path:
    text = (sippx.SCEN / name).read_text().replace("HOLD_MS", str(hold_ms))
    path = workdir / f"uac_hold{hold_ms}.xml"
    path.write_text(text)
    return path


def run_step(workdir: Path, target: Target, rate: float, duration_s: float, hold_ms: int,
             ramp: dict | None = None, uac_extra: list[str] | None = None, watch=None) -> dict:
    """Place calls at ``rate`` for ``duration_s`` (or a ramp) and return the measured outcome.

    A step passes when < 0.1 % of calls failed and the caller really offered the rate.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    calls = max(1, int(round(rate * duration_s)))
    uas = sippx.start_uas(workdir, rungs.AGENT_IP, rungs.AGENT_PORT, rungs.UAS_MEDIA_PORT)
    scen = scenario(workdir, hold_ms)
    extra = list(uac_extra or [])
    if ramp:
        calls = ramp["calls"]
        extra += ["-rate_increase", str(ramp["step"]), "-rate_interval", f"{ramp['interval_s']}s",
                  "-rate_max", str(ramp["max"]), "-no_rate_quit"]
    argv = sippx.uac_argv(str(scen), rungs.CARRIER_IP, rungs.CARRIER_PORT, rungs.UAC_MEDIA_PORT, target.address,
                          rungs.DID, rate, calls, hold_ms, limit=max(2000, int(rate * 10)), extra=extra)
    udp0 = sysinfo.udp_snmp()
    meter = sysinfo.CpuMeter(target.groups + [sysinfo.Group("sipp_uas", pids_fixed=(uas.proc.pid,))])
    meter.start()
    uac = sippx.start_uac(workdir, argv)
    meter.groups.append(sysinfo.Group("sipp_uac", pids_fixed=(uac.pid,)))
    meter.c0["sipp_uac"] = 0.0
    deadline = time.monotonic() + (ramp["max_s"] if ramp else duration_s) + hold_ms / 1000 + 40
    stopped_early = False
    uac_cpu = 0.0
    while True:
        pid, _, usage = os.wait4(uac.pid, os.WNOHANG)
        if pid == uac.pid:  # reaped here so its rusage (CPU time) is known
            uac.returncode = 0
            uac_cpu = usage.ru_utime + usage.ru_stime
            break
        if time.monotonic() > deadline:
            sippx.stop(uac)
            stopped_early = True
            break
        if watch is not None and watch(workdir):
            sippx.stop(uac)
            stopped_early = True
            break
        time.sleep(0.25)
    if stopped_early:
        uac_cpu = sysinfo.cpu_seconds([uac.pid])
    cpu = meter.stop()
    cpu["cpu_s"]["sipp_uac"] = round(uac_cpu, 3)
    sippx.stop(uas.proc)
    udp1 = sysinfo.udp_snmp()
    stat = sippx.summarize_stat(sippx.read_stat(workdir / "uac_stat.csv"))
    rtt = sippx.read_rtt(workdir)
    created = stat["created"] or 1
    fail_ratio = stat["failed"] / created
    # achieved creation rate over the full seconds of the sending phase
    send_rates = [r for r in stat["rates"] if r > 0]
    full = send_rates[1:-1] if len(send_rates) > 3 else send_rates
    achieved = sum(full) / len(full) if full else 0.0
    sut_cpu = sum(cpu["cpu_s"].get(n, 0.0) for n in target.sut)
    result = {
        "rung": target.name,
        "offered_cps": rate,
        "duration_s": duration_s,
        "hold_ms": hold_ms,
        "achieved_cps": round(achieved, 1),
        "created": stat["created"],
        "successful": stat["successful"],
        "failed": stat["failed"],
        "failures": stat.get("failures", {}),
        "fail_ratio": round(fail_ratio, 5),
        "retransmissions": stat["retransmissions"],
        "watchdog": stat.get("watchdog_major", 0) + stat.get("watchdog_minor", 0),
        "udp_rcvbuf_errors": udp1.get("RcvbufErrors", 0) - udp0.get("RcvbufErrors", 0),
        "cpu": cpu,
        "sut_cpu_ms_per_call": round(1000 * sut_cpu / max(1, stat["successful"]), 3),
        "cpu_ms_per_call": {n: round(1000 * v / max(1, stat["successful"]), 3) for n, v in cpu["cpu_s"].items()},
        "pdd_ms": _pct(rtt.get(1, [])),
        "setup_ms": _pct(rtt.get(2, [])),
        "stopped_early": stopped_early,
        "workdir": str(workdir),
    }
    result["passed"] = (not stopped_early and fail_ratio < 0.001 and stat["created"] >= calls * 0.999
                        and (ramp is not None or achieved >= MIN_PASS_RATIO * rate))
    (workdir / "step.json").write_text(json.dumps(result, indent=1))
    for path in workdir.glob("*_rtt.csv"):
        _compress(path)
    return result


def _compress(path: Path) -> None:
    import gzip
    import shutil

    with open(path, "rb") as src, gzip.open(str(path) + ".gz", "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()


def _pct(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": sippx.percentile(values, 0.50),
        "p90": sippx.percentile(values, 0.90),
        "p99": sippx.percentile(values, 0.99),
        "max": max(values),
        "mean": round(sum(values) / len(values), 3),
    }
