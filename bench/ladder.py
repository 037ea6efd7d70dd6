"""byoc-edge benchmark ladder: one command, one machine, one run.

Rungs (same SIPp scenarios for all):
  direct     SIPp -> SIPp
  limit      Kamailio stateless forward() (bench/limit/kamailio.cfg)
  peer       Kamailio native cfg doing the edge's work (bench/peer/kamailio.cfg), same start options as the edge
  edge       the real edge: routing.ops.services.up of the committed code (git HEAD)
  peer-tuned the peer with the Kamailio start options of bench/proposals 01-02 (-m 1024 -x tlsf)
  edge-opt   the edge with every bench/proposals/*.patch applied (a patched copy of HEAD), when there are any;
  edge-w8    otherwise the edge (git HEAD) with 8 SIP workers instead of 4 (worker count tuning)
  edge-strict (only with --rungs) the edge with redis.strict_admission: WAIT 1 for a replica after each
             admission; a replica of the edge's redis is then attached for every rung
  edge-capture the edge (git HEAD) with the SIP capture on (siptrace HEP3 to the monitor's collector, kept
             per call); every other edge rung runs with it off, so edge vs edge-capture is its cost
  edge-ttfa  the edge (git HEAD) measuring time to first audio (media.first_audio_poll_ms: 250, rtpengine
             queried every 250 ms after the answer until the agent's first packet); every other edge rung runs
             with it off (the default), so edge vs edge-ttfa is its cost.  The CPS steps' agent sends no RTP, so
             each answered call is polled until it ends (the worst case: a silent agent)
  edge-full  the edge (git HEAD) whose trunk, agent and DID are in an account with its own limits, whose DID has a
             fallback agent and whose trunk has the edge's own ringback: configured, never triggered (issues 13,
             14, 17: their cost for calls that never need them)

Measures: CPS at < 0.1 % failed calls (ramp -> knee, then bisection at fixed rates, repeats
interleaved across rungs, median), PDD/setup added by the edge at 25/50/80 % of its max
(SIPp rtd and a pcap of the edge's SIP port), CPU per call, a profile of the edge,
G.711 calls relayed without loss, PCMU<->opus transcoded calls per core, memory per call.
Per call, edge against peer (phase ``counts``, bench/roundtrips.py): Python entries, redis and
rtpengine round trips; ``--baseline REF`` adds the rung ``edge-before`` (the edge built from git REF)
to the ladder and to these counts.
And overload (``--only overload``, ``--overload-s``): twice each Kamailio rung's knee for 30 s.
Raw outputs and summary.json go to bench/results/<timestamp>/; bench/report.py renders
docs/benchmarks.md from summary.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import media_pcap
import pcapsip
import rungs
import sippx
import steps
import sysinfo

BENCH = Path(__file__).resolve().parent
PROPOSALS = sorted((BENCH / "proposals").glob("*.patch"))
#: the second edge variant: HEAD + proposals when there are any, else HEAD with more SIP workers
ALT = "edge-opt" if PROPOSALS else "edge-w8"
#: SIP workers (sip.workers) of each edge variant; 4 is the settings default
WORKERS = {"edge-w8": 8}
#: settings of each edge variant beyond the bench edge's (rungs.edge_settings); edge-strict waits for the
#: replica (rungs.Replica) after each admission and each answer's lease extension (WAIT 1)
SETTINGS = {"edge-strict": {"redis": {"strict_admission": True, "replica_wait_ms": 100}},
            "edge-ttfa": {"media": {"first_audio_poll_ms": 250}}}
#: edge variants run with the SIP capture on (capture.enabled); the others with it off
CAPTURE = {"edge-capture"}
#: edge variants whose trunk, agent and DID use what issues 13, 14 and 17 added (an account with limits, a
#: DID fallback, the edge's own ringback), never triggered (rungs.Edge.provision features)
FEATURES = {"edge-full"}
#: edge variants whose CPS bisection starts from the edge's ramp knee, not their own: the same rates
#: are walked, so their maxima are comparable step for step (edge-capture / edge and the like)
SHARED_BRACKET = {"edge-capture": "edge", "edge-ttfa": "edge", "edge-full": "edge", "edge-strict": "edge"}
#: edge-full against the edge at this share of the edge's max CPS, alternately (Bench.paired)
PAIRED_FRACTION = 0.95
TUNED_ARGS = ("-m", "1024", "-x", "tlsf")  # what proposals 01 and 02 add to the edge's kamailio argv


def log(msg: str) -> None:
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S") + ("-quick" if self.quick else "")
        self.out = Path(args.results) / stamp
        self.out.mkdir(parents=True, exist_ok=True)
        self.base = Path(f"/tmp/byoc-bench-{stamp}")  # run dirs (redis AOF, logs): not kept in results
        self.base.mkdir(parents=True, exist_ok=True)
        self.summary: dict = {"mode": "quick" if self.quick else "full", "stamp": stamp, "errors": []}
        self.p = self.params()
        if args.rungs:
            self.p["rungs"] = args.rungs.split(",")
        if args.media_n:
            self.p["media_n"] = [int(n) for n in args.media_n.split(",")]
        if getattr(args, "overload_s", None):
            self.p["overload"]["burst_s"] = args.overload_s
        self.summary["params"] = self.p
        self.edge = rungs.Edge(self.base)
        self.replica: rungs.Replica | None = None
        self.natives: dict[str, rungs.NativeKamailio] = {}
        self.srcs: dict[str, Path] = {}
        self.edge_variant: str | None = None
        self.features: bool | None = None  # the shared redis provisioned with edge-full's features (None: not yet)
        self.capture_on: bool | None = None  # capture.enabled of the running edge (None: not set)
        self.step_no = 0

    def params(self) -> dict:
        if self.quick:
            return {"step_s": 6, "hold_ms": 500, "ramp": {"start": 100, "step": 100, "interval_s": 1, "max": 2500},
                    "repeats": 1, "bisect": 2, "paired": 2, "lat_fracs": [0.5], "lat_s": 6,
                    "media_n": [200, 500], "media_setup_cps": 100, "pcap_s": 10,
                    "xcode_n": [20, 60], "mem_n": [100, 400], "profile_s": 6, "ablation_cps": 200,
                    "overload": {"factor": 2, "burst_s": 10, "long_calls": 10, "recv_timeout_ms": 5000,
                                 "released_within_s": 60},
                    "rungs": ["direct", "limit", "peer", "edge", "edge-capture", "edge-ttfa", "edge-full", "peer-tuned", ALT]}
        return {"step_s": 8, "hold_ms": 500, "ramp": {"start": 100, "step": 100, "interval_s": 2, "max": 3000},
                "repeats": 3, "bisect": 3, "paired": 3, "lat_fracs": [0.25, 0.5, 0.8], "lat_s": 8,
                "media_n": [200, 300, 400, 500], "media_setup_cps": 150, "pcap_s": 15,
                "xcode_n": [30, 60, 90], "mem_n": [200, 1000], "profile_s": 8, "ablation_cps": 200,
                "overload": {"factor": 2, "burst_s": 30, "long_calls": 20, "recv_timeout_ms": 5000,
                             "released_within_s": 60},
                "rungs": ["direct", "limit", "peer", "edge", "edge-capture", "edge-ttfa", "edge-full", "peer-tuned", ALT]}

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        s = self.summary
        s["machine"] = sysinfo.machine()
        s["load_start"] = sysinfo.loadavg()
        s["nice"] = os.nice(0)
        s["source"] = rungs.source_id(None if self.args.worktree else "HEAD")
        ref = None if self.args.worktree else "HEAD"
        s["proposals"] = [p.name for p in PROPOSALS]
        self.srcs["edge"] = rungs.build_tree(self.base / "src-edge", ref)
        self.srcs[ALT] = rungs.build_tree(self.base / "src-edge-opt", ref, PROPOSALS) if PROPOSALS else self.srcs["edge"]
        self.srcs["edge-capture"] = self.srcs["edge"]
        self.srcs["edge-ttfa"] = self.srcs["edge"]
        self.srcs["edge-full"] = self.srcs["edge"]
        s["alt_variant"] = {"name": ALT, "workers": WORKERS.get(ALT, 4), "proposals": [p.name for p in PROPOSALS]}
        self.add_baseline()
        self.srcs["edge-strict"] = self.srcs["edge"]
        # ablation: the proposals one by one, cumulative
        for i in range(1, len(PROPOSALS)):
            self.srcs[f"edge+{i:02d}"] = rungs.build_tree(self.base / f"src-edge-{i:02d}", ref, PROPOSALS[:i])
        log(f"results in {self.out}; run dirs in {self.base}")
        s["proposals_skipped"] = dict(rungs.SKIPPED)
        self.use_edge("edge")
        if "edge-strict" in self.p["rungs"]:
            # every rung then runs with the replica attached: edge against edge-strict is the cost of WAIT alone
            self.replica = rungs.Replica(self.base)
            self.replica.up()
            s["replica"] = {"port": rungs.REPLICA_PORT, "for": "edge-strict", "attached_to_every_rung": True}
        shas = self.shas
        # the peer starts with the edge's own Kamailio options (-m, -x from the settings defaults)
        edge_args = self.kamailio_options(self.edge.pid("kamailio"))
        s["edge_kamailio_options"] = list(edge_args)
        if edge_args == TUNED_ARGS and "peer-tuned" in self.p["rungs"]:
            self.p["rungs"] = [r for r in self.p["rungs"] if r != "peer-tuned"]  # it would be the peer again
        vals = dict(WORKERS=4, TCP_WORKERS=2, NODE="bench-peer", MAX_CALL_S=rungs.MAX_CALL_S, NG_PORT=rungs.NG_PORT,
                    REDIS_HOST="127.0.0.1", REDIS_PORT=rungs.REDIS_PORT, LEASE_SHA=shas["lease"],
                    RELEASE_SHA=shas["release"], LEASE_TTL=rungs.MAX_CALL_S + 60, ADMISSION_TTL=rungs.ADMISSION_TTL, UPDATE_SHA=shas["call_update"],
                    FINISH_SHA=shas["finish"], CDR_SHA=shas["cdr_add"], MEDIA_SHA=shas["media"], CDR_RETENTION=30 * 86400,
                    SPEND_TTL=3 * 86400, CDR_JSON=rungs.cdr_record_expr("bench-peer"))
        self.natives["peer"] = rungs.NativeKamailio("peer", BENCH / "peer/kamailio.cfg", self.base, rungs.PEER_IP,
                                                    rungs.SIP_PORT, vals, args=edge_args)
        self.natives["peer-tuned"] = rungs.NativeKamailio("peer-tuned", BENCH / "peer/kamailio.cfg", self.base,
                                                          "127.0.2.5", rungs.SIP_PORT, vals, args=TUNED_ARGS)
        self.natives["limit"] = rungs.NativeKamailio("limit", BENCH / "limit/kamailio.cfg", self.base, rungs.LIMIT_IP,
                                                     rungs.SIP_PORT, dict(WORKERS=4, TCP_WORKERS=2,
                                                                          TARGET=f"{rungs.AGENT_IP}:{rungs.AGENT_PORT}"))
        self.natives["xcode"] = rungs.NativeKamailio("xcode", BENCH / "transcode/kamailio.cfg", self.base, rungs.XCODE_IP,
                                                     rungs.SIP_PORT, dict(WORKERS=4, NG_PORT=rungs.NG_PORT,
                                                                          TARGET=f"{rungs.AGENT_IP}:{rungs.AGENT_PORT}"))
        for k in self.natives.values():
            k.up()
        for name in ("peer", "peer-tuned", "limit", "xcode"):
            shutil.copy(self.natives[name].run_dir / "kamailio.cfg", self.out / f"{name}.kamailio.cfg")
        shutil.copy(self.edge.settings_path, self.out / "edge-settings.yaml")
        self.summary["fairness"] = self.fairness()

    @staticmethod
    def kamailio_options(pid: int | None) -> tuple[str, ...]:
        """The -m/-M/-x options of a running Kamailio (from /proc/<pid>/cmdline)."""
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")
        except OSError:
            return ()
        out: list[str] = []
        for i, arg in enumerate(argv[:-1]):
            if arg in ("-m", "-M", "-x"):
                out += [arg, argv[i + 1]]
        return tuple(out)

    def use_edge(self, variant: str) -> None:
        """Run ``variant``'s Kamailio on the edge's redis and rtpengine (restarts only Kamailio)."""
        if self.edge_variant == variant and self.edge.pid("kamailio"):
            self.provision(variant in FEATURES)  # a native rung in between may have provisioned without them
            return
        self.edge.stop_kamailio()
        src = self.srcs[variant]
        # capture on or off explicitly where the tree has the SIP capture (an older tree refuses the key)
        capture = (variant in CAPTURE) if (src / "routing" / "capture").is_dir() else None
        if capture is not None and capture != self.capture_on:
            self.edge.stop_monitor()  # its collector follows the setting (services.up starts what is not running)
        self.edge.up(src=src, workers=WORKERS.get(variant, 4), extra=SETTINGS.get(variant), capture=capture)
        self.capture_on = capture
        self.features = None
        self.provision(variant in FEATURES)
        self.edge_variant = variant
        time.sleep(0.5)

    def provision(self, features: bool) -> None:
        """The shared redis's tables as the next rung needs them: with ``features`` for edge-full
        (an account, a second agent as the DID's fallback), else one trunk, one agent, one DID. The
        native peer reads "the" agent as the first member of ``edge:agents``: after edge-full it
        would take the fallback agent and answer every call 404."""
        if self.features != features:
            self.shas = self.edge.provision(features=features)
            self.features = features

    def fairness(self) -> dict:
        """Redis commands per call of the peer and of the edge (one call each, redis MONITOR)."""
        out = {}
        for name in ("peer", "edge"):
            mon = subprocess.Popen(["redis-cli", "-p", str(rungs.REDIS_PORT), "monitor"], stdout=subprocess.PIPE,
                                   text=True)
            time.sleep(0.3)
            res = steps.run_step(self.step_dir(f"fairness-{name}"), self.target(name), 10, 2, 200)
            time.sleep(0.5)
            mon.terminate()
            text = mon.communicate(timeout=5)[0]
            cmds: dict[str, int] = {}
            for line in text.splitlines():
                if '"' in line and "[0 lua]" not in line:
                    cmd = line.split('"')[1].upper()
                    cmds[cmd] = cmds.get(cmd, 0) + 1
            out[name] = {"calls": res["successful"], "commands": {k: v / max(1, res["successful"]) for k, v in cmds.items()}}
        return out

    # ------------------------------------------------------------------ targets

    def target(self, name: str) -> steps.Target:
        rtp = sysinfo.Group("rtpengine", pids_fixed=(self.edge.pid("rtpengine"),))
        red = sysinfo.Group("redis", pids_fixed=(self.edge.pid("redis"),))
        if name == "direct":
            return steps.Target("direct", f"{rungs.AGENT_IP}:{rungs.AGENT_PORT}", [], ())
        if name.startswith("edge"):
            self.use_edge(name)
            kam = sysinfo.Group("kamailio", leader=self.edge.pid("kamailio"))
            if name in CAPTURE:  # the monitor's HEP collector writes the captures: part of the cost
                mon = sysinfo.Group("monitor", pids_fixed=(self.edge.pid("monitor"),))
                return steps.Target(name, f"{rungs.EDGE_IP}:{rungs.SIP_PORT}", [kam, rtp, red, mon],
                                    ("kamailio", "rtpengine", "redis", "monitor"))
            return steps.Target(name, f"{rungs.EDGE_IP}:{rungs.SIP_PORT}", [kam, rtp, red], ("kamailio", "rtpengine", "redis"))
        k = self.natives[name]
        self.provision(False)
        kam = sysinfo.Group("kamailio", leader=k.pid())
        if name == "limit":
            return steps.Target(name, f"{k.ip}:{k.port}", [kam], ("kamailio",))
        return steps.Target(name, f"{k.ip}:{k.port}", [kam, rtp, red], ("kamailio", "rtpengine", "redis"))

    def step_dir(self, label: str) -> Path:
        self.step_no += 1
        return self.out / "steps" / f"{self.step_no:03d}-{label}"

    def clean(self, rung: str, failed: bool) -> None:
        """Before a step: no media session, lease or call record left; after a failed step the
        rung's Kamailio is restarted (dialogs and transactions of aborted calls would linger)."""
        subprocess.run(["rtpengine-ctl", "-ip", "127.0.0.1", "-port", str(rungs.CLI_PORT), "terminate", "all"],
                       capture_output=True)
        if failed and rung != "direct":
            if rung.startswith("edge"):
                self.edge_variant = None
                self.use_edge(rung)
            else:
                self.natives[rung].down()
                self.natives[rung].up()
        client = self.edge.redis()
        for pattern in ("edge:lease:*", "edge:call:*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i:i + 500])
        time.sleep(0.5)

    def step(self, rung: str, rate: float, duration: float, label: str = "", **kw) -> dict:
        res = steps.run_step(self.step_dir(f"{rung}-{label}{int(rate)}"), self.target(rung), rate, duration,
                             self.p["hold_ms"], **kw)
        res["load"] = sysinfo.loadavg()
        return res

    # ------------------------------------------------------------------ CPS

    def ramp(self, rung: str) -> dict:
        r = self.p["ramp"]
        self.clean(rung, False)
        max_s = (r["max"] - r["start"]) / r["step"] * r["interval_s"] + 5

        def watch(workdir: Path) -> bool:
            rows = sippx.read_stat(workdir / "uac_stat.csv")
            fails = [sippx._i(x, "FailedCall(P)") for x in rows]
            return sum(fails[-3:]) > 0 and sum(fails) > 5

        res = self.step(rung, r["start"], 1, label="ramp", ramp={"step": r["step"], "interval_s": r["interval_s"],
                                                                 "max": r["max"], "calls": 10 ** 7, "max_s": max_s},
                        watch=watch)
        rows = sippx.read_stat(Path(res["workdir"]) / "uac_stat.csv")
        rates = [sippx._i(x, "OutgoingCall(P)") for x in rows]
        fails = [sippx._i(x, "FailedCall(P)") for x in rows]
        retr = [sippx._i(x, "Retransmissions(P)") for x in rows]
        knee = 0
        for i, (rt, f, rx) in enumerate(zip(rates, fails, retr)):
            if f:  # the same criterion as a step's pass (failed calls); retransmissions only slow it
                break
            knee = max(knee, rt)
        # the knee is the highest offered rate with no failure, minus one interval of lag
        knee = max(r["start"], knee - r["step"])
        res["knee_cps"] = knee
        res["series"] = {"rate": rates, "failed": fails, "retrans": retr}
        self.clean(rung, True)
        log(f"ramp {rung}: knee ~{knee} CPS")
        return res

    def bisect(self, rung: str, knee: float, rep: int) -> dict:
        lo, hi = 0.6 * knee, 1.6 * knee  # a ramp under-reads the knee when state builds up (tm, shm)
        tried = []
        best = None
        failed_prev = False
        for _ in range(self.p["bisect"]):
            rate = round((lo + hi) / 2 / 10) * 10
            self.clean(rung, failed_prev)
            res = self.step(rung, rate, self.p["step_s"], label=f"r{rep}-")
            tried.append(res)
            failed_prev = not res["passed"]
            log(f"  {rung} rep{rep} {rate} CPS: {'pass' if res['passed'] else 'FAIL'} "
                f"(failed {res['failed']}/{res['created']}, achieved {res['achieved_cps']}, "
                f"SUT {res['sut_cpu_ms_per_call']} ms/call)")
            if res["passed"]:
                lo, best = rate, rate
            else:
                hi = rate
        for _ in range(3):  # every step passed up to the bracket's top: up to three steps above it (x1.3 each)
            if best is None or best < 0.9 * hi or not all(t["passed"] for t in tried):
                break
            rate = round(hi * 1.3 / 10) * 10
            self.clean(rung, failed_prev)
            res = self.step(rung, rate, self.p["step_s"], label=f"r{rep}-up")
            tried.append(res)
            failed_prev = not res["passed"]
            log(f"  {rung} rep{rep} {rate} CPS: {'pass' if res['passed'] else 'FAIL'} (above the bracket)")
            if not res["passed"]:
                break
            best, hi = rate, rate
        if best is None:  # verify the lower bound, halving until a rate passes
            rate = round(lo / 10) * 10
            for _ in range(3):
                self.clean(rung, failed_prev)
                res = self.step(rung, rate, self.p["step_s"], label=f"r{rep}-lo")
                tried.append(res)
                failed_prev = not res["passed"]
                if res["passed"]:
                    best = rate
                    break
                rate = round(rate / 2 / 10) * 10
        self.clean(rung, failed_prev)
        return {"max_cps": best or 0, "steps": tried}

    def cps(self) -> None:
        ramps = {}
        for rung in self.p["rungs"]:
            try:
                ramps[rung] = self.ramp(rung)
            except Exception as exc:  # noqa: BLE001 - a rung that cannot start (a baseline tree) leaves the others
                self.summary["errors"].append(f"cps {rung}: {exc}\n{traceback.format_exc()}")
                log(f"cps {rung} left out: {exc}")
        rung_list = [r for r in self.p["rungs"] if r in ramps]
        reps: dict[str, list] = {r: [] for r in rung_list}

        def seed(rung: str) -> float:
            # a variant of the edge bisects from the edge's bracket, so both walk the same rates and
            # their maxima differ only where one passes a rate the other fails
            base = SHARED_BRACKET.get(rung)
            return ramps[base]["knee_cps"] if base in ramps else ramps[rung]["knee_cps"]

        for rep in range(1, self.p["repeats"] + 1):
            for rung in rung_list:  # interleaved: every rung once per repeat
                reps[rung].append(self.bisect(rung, seed(rung), rep))
        out = {}
        for rung in rung_list:
            maxes = [r["max_cps"] for r in reps[rung]]
            passing = [s for r in reps[rung] for s in r["steps"] if s["passed"]]
            top = max(passing, key=lambda s: s["offered_cps"]) if passing else None
            out[rung] = {
                "knee_cps": ramps[rung]["knee_cps"],
                "ramp_series": ramps[rung]["series"],
                "repeats": maxes,
                "max_cps": statistics.median(maxes),
                "at_max": _brief(top) if top else None,
                "steps": [_brief(s) for r in reps[rung] for s in r["steps"]],
            }
        self.summary["cps"] = out
        self.save()
        if "edge" in out and "edge-full" in out and out["edge"]["max_cps"]:
            self.summary["cps_paired"] = self.paired("edge", "edge-full", out["edge"]["max_cps"])
            self.save()

    def paired(self, base: str, variant: str, base_max: float) -> dict:
        """The variant against its base at one fixed rate, 95 % of the base's max CPS, alternately
        (``paired`` repeats each): "no CPS loss beyond 5 %" holds when the variant passes that rate
        as often as the base does, a finer check than two bisections a ladder step apart."""
        rate = round(PAIRED_FRACTION * base_max / 10) * 10
        passed: dict[str, list[bool]] = {base: [], variant: []}
        cpu: dict[str, list] = {base: [], variant: []}
        failed_prev = {base: False, variant: False}
        for rep in range(1, self.p["paired"] + 1):
            for rung in (base, variant):
                self.clean(rung, failed_prev[rung])
                res = self.step(rung, rate, self.p["step_s"], label=f"pair{rep}-")
                failed_prev[rung] = not res["passed"]
                passed[rung].append(bool(res["passed"]))
                cpu[rung].append(res["sut_cpu_ms_per_call"])
                log(f"  paired {rung} rep{rep} {rate} CPS: {'pass' if res['passed'] else 'FAIL'} "
                    f"(failed {res['failed']}/{res['created']}, SUT {res['sut_cpu_ms_per_call']} ms/call)")
                self.clean(rung, failed_prev[rung])
        return {"base": base, "variant": variant, "fraction": PAIRED_FRACTION, "rate": rate,
                "passed": passed, "sut_cpu_ms_per_call": cpu}

    # ------------------------------------------------------------------ latency

    def latency(self) -> None:
        """PDD/setup at 25/50/80 % of each edge variant's max, direct at the same rate, and a pcap
        of the edge's SIP port for the edge's own transit times."""
        out = {}
        for variant in ("edge", ALT):
            mx = self.summary.get("cps", {}).get(variant, {}).get("max_cps") or 0
            if not mx:
                continue
            rows = []
            for frac in self.p["lat_fracs"]:
                rate = max(10, round(mx * frac / 10) * 10)
                self.clean("direct", False)
                d = self.step("direct", rate, self.p["lat_s"], label=f"lat{int(frac * 100)}-")
                self.clean(variant, False)
                pcap = self.out / "pcap" / f"{variant}-{int(frac * 100)}.pcap"
                pcap.parent.mkdir(exist_ok=True)
                cap = pcapsip.start_capture(pcap, f"udp and host {rungs.EDGE_IP} and port {rungs.SIP_PORT}")
                e = self.step(variant, rate, self.p["lat_s"], label=f"lat{int(frac * 100)}-")
                pcapsip.stop_capture(cap)
                transit = pcapsip.transit(pcap, rungs.EDGE_IP, rungs.SIP_PORT)
                pcapsip.compress(pcap)
                rows.append({"fraction": frac, "rate": rate, "direct": _brief(d), "edge": _brief(e),
                             "added_sipp_ms": _added(d, e), "edge_transit_ms": transit})
                log(f"latency {variant} {int(frac * 100)}% ({rate} CPS): transit PDD p50/p99 "
                    f"{transit.get('pdd', {}).get('p50')}/{transit.get('pdd', {}).get('p99')} ms")
            out[variant] = {"max_cps": mx, "points": rows}
        self.summary["latency"] = out
        self.save()

    # ------------------------------------------------------------------ CPU per call, ablation, profile

    def ablation(self) -> None:
        """Each proposal's effect on CPU per call, at one fixed rate below every variant's knee."""
        rate = self.p["ablation_cps"]
        out = {}
        names = (["edge"] + (["edge-before"] if "edge-before" in self.srcs else []) + ["edge-capture", "edge-ttfa", "edge-full"]
                 + [k for k in sorted(self.srcs) if k.startswith("edge+")] + [ALT, "peer", "peer-tuned"])
        if self.args.rungs:  # --rungs names the variants to compare (edge-before comes with --baseline)
            names = [n for n in names if n in self.p["rungs"]]
        for rep in range(1 if self.quick else 2):
            for name in names:
                self.clean(name, True)
                res = self.step(name, rate, self.p["step_s"], label="abl-")
                out.setdefault(name, []).append(_brief(res))
        self.summary["ablation"] = {"rate": rate, "patches": [p.name for p in PROPOSALS], "runs": out}
        self.save()

    def profile(self) -> None:
        """py-spy (Python frames, wall time incl. waits) and perf (C, kernel) of the edge's SIP workers."""
        out = {}
        for variant in ("edge", ALT) if PROPOSALS else ("edge",):  # the worker variant runs the same code
            mx = self.summary.get("cps", {}).get(variant, {}).get("max_cps") or 300
            rate = max(50, round(mx * 0.5 / 10) * 10)
            self.clean(variant, True)
            tgt = self.target(variant)
            leader = self.edge.pid("kamailio")
            workers = self.kamailio_workers(self.edge.run_dir / "kamailio_ctl")
            raw = self.out / "profile" / f"{variant}.pyspy.txt"
            raw.parent.mkdir(exist_ok=True)
            py = subprocess.Popen([str(rungs.REPO / ".venv/bin/py-spy"), "record", "--pid", str(leader), "--subprocesses",
                                   "--idle", "--rate", "250", "--duration", str(self.p["profile_s"]), "--format", "raw",
                                   "--nonblocking", "-o", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            perf_data = self.base / f"{variant}.perf.data"
            pf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "499", "-g", "-p", ",".join(map(str, workers)),
                                   "-o", str(perf_data), "--", "sleep", str(self.p["profile_s"])],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            res = steps.run_step(self.step_dir(f"profile-{variant}"), tgt, rate, self.p["profile_s"] + 3, self.p["hold_ms"])
            py.wait(timeout=60)
            pf.wait(timeout=60)
            perf_txt = subprocess.run(["perf", "report", "-i", str(perf_data), "--no-children", "--sort", "dso,sym", "-q",
                                       "-g", "none"], capture_output=True, text=True).stdout
            (self.out / "profile" / f"{variant}.perf.txt").write_text(perf_txt)
            out[variant] = {"rate": rate, "step": _brief(res), "pyspy": pyspy_summary(raw, self.srcs[variant]),
                            "perf": perf_summary(perf_txt)}
        self.summary["profile"] = out
        self.save()

    @staticmethod
    def kamailio_workers(ctl: Path) -> list[int]:
        text = subprocess.run(["kamcmd", "-s", f"unix:{ctl}", "core.psx"], capture_output=True, text=True).stdout
        pids, last = [], None
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("PID:"):
                last = int(line.split()[1])
            elif line.startswith("DSC:") and "receiver" in line and last:
                pids.append(last)
        return pids

    # ------------------------------------------------------------------ media

    def media(self, transcode: bool) -> None:
        """Concurrent calls with RTP both ways (caller plays PCMU, callee echoes), stepped up."""
        label = "xcode" if transcode else "media"
        pcap = self.base / "pcmu.pcap"
        if not pcap.exists():
            media_pcap.write(pcap, self.p["pcap_s"])
        packets = self.p["pcap_s"] * 50
        variants = [("opus", "uas_opus.xml"), ("opus-mono", "uas_opus_mono.xml")] if transcode else [("pcmu", "uas_media.xml")]
        ns = self.p["xcode_n"] if transcode else self.p["media_n"]
        rung = "xcode" if transcode else "edge"
        out = {}
        for vname, uas_scen in variants:
            rows = []
            for n in ns:
                self.clean("edge", True) if not transcode else self.clean("direct", False)
                rows.append(self.media_step(rung, n, pcap, packets, uas_scen, f"{label}-{vname}"))
                r = rows[-1]
                log(f"{label} {vname} {n} calls: loss {r['loss_packets']} pkts, drops {r['socket_drops']}, "
                    f"rtpengine {r['rtpengine_cores']:.2f} cores ({r['rtpengine_ms_per_call_s']:.2f} ms/s per call)")
                if not r["no_loss"] and len(rows) >= 2 and not rows[-2]["no_loss"]:
                    break
            out[vname] = rows
        self.summary[label] = out
        self.save()

    def media_step(self, rung: str, n: int, pcap: Path, packets: int, uas_scen: str, label: str) -> dict:
        workdir = self.step_dir(f"{label}-{n}")
        workdir.mkdir(parents=True)
        setup_s = n / self.p["media_setup_cps"]
        hold_ms = int((setup_s + self.p["pcap_s"] + 2) * 1000)
        scen = workdir / "uac_media.xml"
        scen.write_text((sippx.SCEN / "uac_media.xml").read_text().replace("HOLD_MS", str(hold_ms))
                        .replace("PCAP_FILE", str(pcap)))
        if uas_scen == "uas_opus_mono.xml":
            text = (sippx.SCEN / "uas_opus.xml").read_text().replace(
                "      a=rtpmap:96 opus/48000/2", "      a=rtpmap:96 opus/48000/2\n      a=fmtp:96 stereo=0; sprop-stereo=0")
            (workdir / uas_scen).write_text(text)
            uas_path = str(workdir / uas_scen)
        elif uas_scen == "uas_media.xml":  # the callee plays the same stream back: no echo thread to overrun
            (workdir / uas_scen).write_text((sippx.SCEN / uas_scen).read_text().replace("PCAP_FILE", str(pcap)))
            uas_path = str(workdir / uas_scen)
        else:
            uas_path = uas_scen
        uas = sippx.start_uas(workdir, rungs.AGENT_IP, rungs.AGENT_PORT, rungs.UAS_MEDIA_PORT, scenario=uas_path,
                              rtp_echo=uas_scen != "uas_media.xml")
        target = self.target(rung) if rung != "xcode" else None
        address = target.address if target else f"{rungs.XCODE_IP}:{rungs.SIP_PORT}"
        totals0 = self.edge.rtpengine_totals()
        udp0 = sysinfo.udp_snmp()
        rtp_pid = self.edge.pid("rtpengine")
        argv = sippx.uac_argv(str(scen), rungs.CARRIER_IP, rungs.CARRIER_PORT, rungs.UAC_MEDIA_PORT, address, rungs.DID,
                              self.p["media_setup_cps"], n, hold_ms, limit=n + 10)
        uac = sippx.start_uac(workdir, argv)
        # steady window: every call set up and playing
        time.sleep(setup_s + 1.5)
        window = max(3.0, self.p["pcap_s"] - setup_s - 3)
        c0 = sysinfo.cpu_seconds([rtp_pid])
        k0 = sysinfo.cpu_seconds(sysinfo.session_pids(self.edge.pid("kamailio")))
        sipp_pids = [uac.pid, uas.proc.pid]
        p0 = sysinfo.cpu_seconds(sipp_pids)
        s0 = sysinfo.cpu_stat()
        drops_max: dict[str, int] = {}
        t0 = time.monotonic()
        pps = []
        while time.monotonic() - t0 < window:
            drops_max["rtpengine"] = max(drops_max.get("rtpengine", 0), sysinfo.socket_drops(rungs.RTP_MIN, rungs.RTP_MAX))
            drops_max["callee_echo"] = max(drops_max.get("callee_echo", 0),
                                           sysinfo.socket_drops(rungs.UAS_MEDIA_PORT, rungs.UAS_MEDIA_PORT + 3))
            tot = self.edge.rtpengine_totals()
            pps.append(tot.get("Packets per second (userspace)", 0))
            time.sleep(1.0)
        wall = time.monotonic() - t0
        cores = (sysinfo.cpu_seconds([rtp_pid]) - c0) / wall
        sipp_cores = (sysinfo.cpu_seconds(sipp_pids) - p0) / wall  # caller + callee, every thread
        machine = sysinfo.cpu_split(s0, sysinfo.cpu_stat())
        sessions = self.edge.rtpengine_sessions()
        uac.wait(timeout=hold_ms / 1000 + 120)
        sippx.stop(uas.proc)
        time.sleep(1.0)
        totals1 = self.edge.rtpengine_totals()
        udp1 = sysinfo.udp_snmp()
        stat = sippx.summarize_stat(sippx.read_stat(workdir / "uac_stat.csv"))
        relayed = totals1.get("Total relayed packets (userspace)", 0) - totals0.get("Total relayed packets (userspace)", 0)
        errors = (totals1.get("Total relayed packet errors (userspace)", 0)
                  - totals0.get("Total relayed packet errors (userspace)", 0))
        calls = stat["successful"]
        # each side's packets are relayed once (G.711: both sides play the stream; transcoding: the
        # callee echoes what it gets); a transcoder may
        # hold back one frame per direction at the end of a call (codec flush), so allow 2 per call
        expected = 2 * packets * calls
        slack = 2 * calls if rung == "xcode" else 0
        loss = max(0, expected - relayed - slack)
        drops = sum(drops_max.values())
        res = {
            "calls": n, "successful": calls, "failed": stat["failed"], "sessions_in_window": sessions,
            "expected_relayed": expected, "relayed": relayed, "loss_packets": loss, "relay_errors": errors,
            "socket_drops": drops_max, "udp_rcvbuf_errors": udp1.get("RcvbufErrors", 0) - udp0.get("RcvbufErrors", 0),
            "rtpengine_pps_samples": pps, "rtpengine_cores": round(cores, 3),
            "rtpengine_ms_per_call_s": round(1000 * cores / max(1, n), 3), "machine_pct": machine,
            "sipp_cores": round(sipp_cores, 3),
            "kamailio_cpu_s_window": round(sysinfo.cpu_seconds(sysinfo.session_pids(self.edge.pid("kamailio"))) - k0, 3),
            "hold_ms": hold_ms, "window_s": round(wall, 1),
        }
        # drops on the callee socket count only where the callee echoes (it then is part of the path)
        res["no_loss"] = calls == n and loss == 0 and errors == 0 and drops_max.get("rtpengine", 0) == 0 and (
            uas_scen == "uas_media.xml" or drops_max.get("callee_echo", 0) == 0)
        (workdir / "step.json").write_text(json.dumps(res, indent=1))
        return res

    # ------------------------------------------------------------------ memory

    def memory(self) -> None:
        """Memory per additional concurrent call: all edge processes at two plateaus of held calls."""
        out = {}
        for variant in ("edge", ALT):
            self.clean(variant, True)
            self.target(variant)
            n1, n2 = self.p["mem_n"]
            workdir = self.step_dir(f"memory-{variant}")
            workdir.mkdir(parents=True)
            hold_ms = 90000 if not self.quick else 40000
            scen = steps.scenario(workdir, hold_ms)
            uas = sippx.start_uas(workdir, rungs.AGENT_IP, rungs.AGENT_PORT, rungs.UAS_MEDIA_PORT)
            samples = [self.mem_sample(0)]
            uacs = []
            placed = 0
            for i, n in enumerate((n1, n2)):
                count = n - placed
                d = workdir / f"uac{i}"
                argv = sippx.uac_argv(str(scen), rungs.CARRIER_IP, rungs.CARRIER_PORT + 1 + i, rungs.UAC_MEDIA_PORT + 20 + 10 * i,
                                      f"{rungs.EDGE_IP}:{rungs.SIP_PORT}", rungs.DID, 200, count, hold_ms, limit=count + 10)
                uacs.append(sippx.start_uac(d, argv))
                placed = n
                time.sleep(count / 200 + 3)
                samples.append(self.mem_sample(n))
            for u in uacs:
                sippx.stop(u)
            sippx.stop(uas.proc)
            a, b = samples[1], samples[2]
            per_call = {k: round((b[k] - a[k]) / (b["calls"] - a["calls"]), 2) for k in b if k.endswith("_kb")}
            out[variant] = {"samples": samples, "per_call_kb": per_call,
                            "total_kb_per_call": per_call.get("total_kb")}
            log(f"memory {variant}: {per_call.get('total_kb')} KB per additional call {per_call}")
            self.clean(variant, True)
        self.summary["memory"] = out
        self.save()

    # ------------------------------------------------------------------ counts (per call, edge vs peer)

    #: one step per system for the counts phase: ``calls`` calls at ``rate`` CPS, each held ``hold_ms``
    #: (50 CPS: low against every knee, yet the per-worker topology refresh, at most once a second
    #: while traffic flows, weighs little per call)
    COUNTS = {"rate": 50, "calls": 250, "hold_ms": 500, "warmup_calls": 20}

    def add_baseline(self) -> None:
        """``--baseline REF``: the rung ``edge-before``, the edge's code at git ``REF`` (``rungs.build_tree``)."""
        ref = getattr(self.args, "baseline", None)
        if not ref:
            return
        self.srcs["edge-before"] = rungs.build_tree(self.base / "src-edge-before", ref)
        self.summary["baseline"] = rungs.source_id(ref)
        if "edge-before" not in self.p["rungs"]:
            self.p["rungs"].append("edge-before")

    def counts(self) -> None:
        """Per call, for the peer, the edge and (``--baseline``) edge-before, each in one step of
        ``COUNTS["calls"]`` calls at a low rate: Python entries (perf uprobe on app_python3's
        ``apy_exec``), redis round trips (request segments from Kamailio's sockets to redis, tcpdump)
        and commands (MONITOR), rtpengine round trips (ng requests from Kamailio's sockets, by
        command), less the background of an idle interval of the same length (timer routes), which
        is reported apart (bench/roundtrips.py).  When uprobes fail, Python entries are reported as
        not measured with the reason, and the other counts still are."""
        import roundtrips

        c = self.COUNTS
        systems = ["peer", "edge"] + (["edge-before"] if "edge-before" in self.srcs else [])
        probe = roundtrips.PythonProbe()
        probe_error = probe.add()
        out: dict = {**c, "python_probe": probe_error and f"not measured: {probe_error}", "systems": {}}
        try:
            for name in systems:
                try:
                    out["systems"][name] = self.counts_rung(name, probe, probe_error)
                except Exception as exc:  # noqa: BLE001 - the other systems are still measured
                    out["systems"][name] = {"error": f"{exc}"}
                    self.summary["errors"].append(f"counts {name}: {exc}\n{traceback.format_exc()}")
                    log(f"counts {name} failed: {exc}")
        finally:
            probe.remove()
        if "edge-before" in systems:
            self.use_edge("edge")  # the tables provisioned by HEAD's code again, for the phases that follow
        self.summary["counts"] = out
        self.save()

    def counts_rung(self, name: str, probe, probe_error: str | None) -> dict:
        import roundtrips

        c = self.COUNTS
        tgt = self.target(name)
        self.clean(name, False)
        leader = self.edge.pid("kamailio") if name.startswith("edge") else self.natives[name].pid()
        pids = sysinfo.session_pids(leader)
        workdir = self.step_dir(f"counts-{name}")
        # warm-up: each worker's first topology read and connections happen before the counted step
        steps.run_step(workdir / "warmup", tgt, 10, c["warmup_calls"] / 10, 200)
        self.clean(name, False)
        seconds = c["calls"] / c["rate"] + c["hold_ms"] / 1000 + 1
        client = self.edge.redis()  # one connection for the markers and the lease count
        idle_w = roundtrips.Window(workdir / "idle", pids, rungs.REDIS_PORT, rungs.NG_PORT, probe, probe_error)
        idle_w.open()
        time.sleep(seconds)  # the idle interval itself (no calls): timer routes and other background
        idle = idle_w.close(client)
        busy_w = roundtrips.Window(workdir / "step", pids, rungs.REDIS_PORT, rungs.NG_PORT, probe, probe_error)
        busy_w.open()
        try:
            res = steps.run_step(workdir, tgt, c["rate"], c["calls"] / c["rate"], c["hold_ms"])
            # the last call's end (lease released by its BYE's dialog end) belongs to the window
            roundtrips.wait_until(
                lambda: not any(client.zcard(k) for k in client.scan_iter(match="edge:lease:*", count=1000)),
                15, f"{name}: every lease released", interval=0.2)
        finally:
            busy = busy_w.close(client)
        per = roundtrips.per_call(busy, idle, res["successful"])
        per.update(calls=res["successful"], failed=res["failed"], idle=idle, step=busy,
                   workdir=os.path.relpath(workdir, BENCH))
        log(f"counts {name}: {res['successful']} calls, per call: Python entries {per['python_entries']} "
            f"{per['python_by_function'] or ''}{' (' + per['python_error'] + ')' if per['python_error'] else ''}, redis round trips "
            f"{per['redis_round_trips']} ({per['redis_commands']} commands), rtpengine {per['rtpengine_round_trips']} "
            f"{per['rtpengine_by_command']}; background per s {per['background_per_s']}")
        return per
    # ------------------------------------------------------------------ overload

    def overload(self) -> None:
        """Graceful overload (issue 12 item 3): each Kamailio rung (peer, edge, the edge variant) is
        offered ``factor`` (2) times its knee for ``burst_s`` (30 s; 10 s quick) by a caller on this
        machine that gives up like a carrier (``-recv_timeout``, INVITE retransmissions every 500 ms).
        The knee is the ladder's own maximum at < 0.1 % failed calls (the cps phase of this run);
        without a cps phase, the rung's ramp knee (marked ``knee_source: ramp``).  Measured: goodput
        (calls answered and ended with their BYE 200, per second of the burst) as a fraction of the
        knee; time to the 503s (SIPp rtd 1 of ``scenarios/uac_overload.xml``: INVITE sent -> 503);
        long calls answered before the burst, which must all end with their BYE 200; slots (lease
        ZSET members) still held ``released_within_s`` (60 s) after the burst, which must be 0 (and
        when they reach 0, up to 2 minutes later); and RSS and PSS of every process of the rung
        (Kamailio's, rtpengine, redis) after a warm-up at the knee for burst_s and
        after the slots are free again, with Kamailio's shm in use.  The peer under the
        same overload (twice its own knee) is the reference for what the generator itself costs."""
        o = self.p["overload"]
        cps = self.summary.get("cps", {})
        out = {}
        for rung in [r for r in self.p["rungs"] if r == "peer" or r.startswith("edge")]:
            knee, source = (cps.get(rung) or {}).get("max_cps"), "cps"
            if not knee:
                knee, source = self.ramp(rung)["knee_cps"], "ramp"
            try:
                out[rung] = self.overload_rung(rung, float(knee), o)
            except Exception as exc:  # noqa: BLE001 - the other rungs are still measured
                out[rung] = {"error": f"{exc}"}
                self.summary["errors"].append(f"overload {rung}: {exc}\n{traceback.format_exc()}")
            out[rung]["knee_cps"], out[rung]["knee_source"] = knee, source
            self.summary["overload"] = out
            self.save()

    def overload_rung(self, rung: str, knee: float, o: dict) -> dict:
        rate = round(o["factor"] * knee)
        burst_s = o["burst_s"]
        self.clean(rung, True)  # a fresh Kamailio: no state of an earlier phase
        target = self.target(rung)
        workdir = self.step_dir(f"overload-{rung}")
        workdir.mkdir(parents=True)
        client = self.edge.redis()
        held = lambda: sum(int(client.zcount(k, f"({time.time()}", "+inf"))  # noqa: E731
                           for k in client.scan_iter(match="edge:lease:*", count=1000))
        # warm-up at the knee for as long as the burst, so that "before" is the memory of a rung that
        # has carried its knee (Kamailio keeps the shm and pkg pages it touched resident; the burst's
        # admitted calls are the knee's): the excess, shed, must add nothing to it
        warm_s, warm_rate = burst_s, round(knee)
        warm = steps.run_step(workdir / "warmup", target, warm_rate, warm_s, self.p["hold_ms"])
        _wait(lambda: held() == 0, 60, "the warm-up's slots released", fail=False)
        mem_before = self.rung_memory(rung)
        uas = sippx.start_uas(workdir / "uas", rungs.AGENT_IP, rungs.AGENT_PORT, rungs.UAS_MEDIA_PORT)
        # calls answered before the burst, held through it: they must end normally (BYE 200)
        n_long = o["long_calls"]
        long_hold = int((burst_s + 15) * 1000)
        long_dir = workdir / "long"
        long_dir.mkdir()
        long_scen = steps.scenario(long_dir, long_hold)
        long_uac = sippx.start_uac(long_dir, sippx.uac_argv(
            str(long_scen), rungs.CARRIER_IP, rungs.CARRIER_PORT + 5, rungs.UAC_MEDIA_PORT + 60, target.address,
            rungs.DID, 20, n_long, long_hold, limit=n_long + 5, extra=["-recv_timeout", str(long_hold + 30000)]))
        # the long calls' own call hashes (SIPp's Call-IDs are "{n}-{pid}@{ip}"), answered (answer_ms)
        answered = lambda: sum(1 for k in client.scan_iter(match=f"edge:call:*:*-{long_uac.pid}@*", count=1000)  # noqa: E731
                               if client.hget(k, "answer_ms"))
        _wait(lambda: answered() >= n_long or long_uac.poll() is not None, 10 + n_long / 20, "long calls answered")
        long_answered = answered()
        # the burst: a caller that gives up like a carrier
        burst_dir = workdir / "burst"
        burst_dir.mkdir()
        scen = steps.scenario(burst_dir, self.p["hold_ms"], name="uac_overload.xml")
        calls = int(rate * burst_s)
        argv = sippx.uac_argv(str(scen), rungs.CARRIER_IP, rungs.CARRIER_PORT, rungs.UAC_MEDIA_PORT, target.address,
                              rungs.DID, rate, calls, self.p["hold_ms"], limit=max(2000, rate * 10),
                              extra=["-recv_timeout", str(o["recv_timeout_ms"])])
        meter = sysinfo.CpuMeter(target.groups)
        meter.start()
        t0 = time.monotonic()
        uac = sippx.start_uac(burst_dir, argv)
        uac_usage = None
        deadline = t0 + burst_s + o["recv_timeout_ms"] / 1000 + self.p["hold_ms"] / 1000 + 40
        while time.monotonic() < deadline:
            pid, _, usage = os.wait4(uac.pid, os.WNOHANG)
            if pid == uac.pid:
                uac.returncode, uac_usage = 0, usage
                break
            time.sleep(0.25)
        else:
            sippx.stop(uac)
        cpu = meter.stop()
        burst_end = t0 + burst_s  # the caller stops creating calls here
        # the long calls end by themselves (their hold outlasts the burst by 15 s)
        _wait(lambda: long_uac.poll() is not None, max(5.0, long_hold / 1000 - (time.monotonic() - t0) + 30),
              "long calls ended")
        sippx.stop(long_uac)
        sippx.stop(uas.proc)
        # slots held after the burst: polled until none is left or released_within_s passed
        within = o["released_within_s"]
        zero_at = _wait(lambda: held() == 0, max(0.0, burst_end + within - time.monotonic()), "", fail=False)
        held_at_limit = held()
        # what the calls still holding slots are: answered (answer_ms) or not, by their call hash
        states = {"answered": 0, "unanswered": 0}
        for k in client.scan_iter(match="edge:call:*", count=1000):
            states["answered" if client.hget(k, "answer_ms") else "unanswered"] += 1
        if zero_at is None:  # how much longer they last (the report names it): up to 2 more minutes
            zero_at = _wait(lambda: held() == 0, 120, "", fail=False)
        mem_after = self.rung_memory(rung)
        stat = sippx.summarize_stat(sippx.read_stat(burst_dir / "uac_stat.csv"))
        long_stat = sippx.summarize_stat(sippx.read_stat(long_dir / "uac_stat.csv"))
        to_503 = sippx.read_rtt(burst_dir).get(1, [])
        refused = len(to_503)
        completed = max(0, stat["successful"] - refused)  # a 503 ACKed ends as a SIPp "successful" call
        goodput = completed / burst_s
        res = {
            "rung": rung,
            "offered_cps": rate,
            "burst_s": burst_s,
            "created": stat["created"],
            "completed": completed,
            "refused_503": refused,
            "failed": stat["failed"],
            "failures": stat.get("failures", {}),
            "retransmissions": stat["retransmissions"],
            "goodput_cps": round(goodput, 1),
            "goodput_of_knee": round(goodput / knee, 3) if knee else None,
            "time_to_503_ms": steps._pct(to_503),
            "long_calls": {"placed": n_long, "answered_before_burst": long_answered,
                           "completed": long_stat["successful"], "failed": long_stat["failed"],
                           "ok": long_stat["successful"] == n_long and long_stat["failed"] == 0},
            "slots_held_after_s": {"limit_s": within, "held": held_at_limit, "calls_then": states,
                                   "zero_after_s": None if zero_at is None else round(zero_at - burst_end, 1)},
            "warmup": {"rate": warm_rate, "duration_s": warm_s, "passed": warm["passed"], "failed": warm["failed"]},
            "memory_before": mem_before,
            "memory_after": mem_after,
            "memory_change": {g: {k: _ratio(mem_after[g][k], mem_before[g][k]) for k in ("rss_kb", "pss_kb")}
                              for g in mem_before if g in mem_after and isinstance(mem_before[g], dict)},
            "cpu_s": cpu["cpu_s"],
            "generator_cpu_s": round(uac_usage.ru_utime + uac_usage.ru_stime, 2) if uac_usage else None,
            "workdir": str(workdir),
        }
        (workdir / "overload.json").write_text(json.dumps(res, indent=1))
        log(f"overload {rung}: offered {rate} CPS for {burst_s} s (knee {knee}): goodput {res['goodput_cps']} CPS "
            f"({res['goodput_of_knee']} of the knee), {refused} x 503 (p99 {res['time_to_503_ms'].get('p99')} ms), "
            f"failed {stat['failed']}, long calls ok {res['long_calls']['ok']}, slots held {held_at_limit} "
            f"{within} s after")
        self.clean(rung, True)
        return res

    def rung_memory(self, rung: str) -> dict:
        """RSS and PSS (kB) of every process of a rung: its Kamailio (all forked processes; shm
        counted once in PSS), rtpengine and redis (shared by the rungs), and Kamailio's shm in use
        (``core.shmmem`` real_used)."""
        if rung.startswith("edge"):
            leader, ctl = self.edge.pid("kamailio"), self.edge.run_dir / "kamailio_ctl"
        else:
            leader, ctl = self.natives[rung].pid(), self.natives[rung].run_dir / "kamailio_ctl"
        groups = {"kamailio": sysinfo.session_pids(leader) if leader else [],
                  "rtpengine": [self.edge.pid("rtpengine")], "redis": [self.edge.pid("redis")]}
        out: dict = {g: {"processes": len(pids), "rss_kb": sysinfo.rss_kb(pids), "pss_kb": sysinfo.pss_kb(pids)}
                     for g, pids in groups.items()}
        shm = subprocess.run(["kamcmd", "-s", f"unix:{ctl}", "core.shmmem"], capture_output=True, text=True).stdout
        for line in shm.splitlines():
            if "real_used" in line:
                out["kamailio"]["shm_used_kb"] = int(line.split(":")[1]) // 1024
        return out

    def micro(self) -> None:
        """The plugin's Python hot path outside Kamailio (bench/micro.py), HEAD vs HEAD + proposals."""
        import micro

        self.summary["micro"] = micro.measure(3000 if not self.quick else 1000)
        self.save()

    def pyprof(self) -> None:
        """Python CPU per call by plugin entry point and function, inside the workers (bench/pyprof.py);
        last, because it runs its own edge on the bench's addresses."""
        import pyprof

        self.edge.down()
        self.edge_variant = None
        out = self.out / "pyprof"
        out.mkdir(exist_ok=True)
        rate, ref = self.p["ablation_cps"] - 50, None if self.args.worktree else "HEAD"
        baseline = getattr(self.args, "baseline", None)
        if not baseline:
            self.summary["pyprof"] = pyprof.measure(self.base, out, rate, self.p["step_s"], ref)
            self.save()
            return
        # with --baseline: the edge and edge-before interleaved (edge, before, edge, before), each
        # repeat kept, so the A/B of the thread CPU per entry point shares the machine's state
        runs: dict[str, list] = {"edge": [], "edge-before": []}
        for i in range(2):
            for name, tree in (("edge", ref), ("edge-before", baseline)):
                step = out / f"{name}-{i}"
                step.mkdir(exist_ok=True)
                runs[name].append(pyprof.measure(self.base, step, rate, self.p["step_s"], tree))
        self.summary["pyprof"] = runs["edge"][-1]
        self.summary["pyprof_ab"] = {"baseline": rungs.source_id(baseline), **runs}
        self.save()

    def mem_sample(self, calls: int) -> dict:
        kam = sysinfo.session_pids(self.edge.pid("kamailio"))
        shm = subprocess.run(["kamcmd", "-s", f"unix:{self.edge.run_dir / 'kamailio_ctl'}", "core.shmmem"],
                             capture_output=True, text=True).stdout
        shm_used = 0
        for line in shm.splitlines():
            if "real_used" in line:
                shm_used = int(line.split(":")[1]) // 1024
        info = self.edge.redis().info("memory")
        dlg = subprocess.run(["kamcmd", "-s", f"unix:{self.edge.run_dir / 'kamailio_ctl'}", "dlg.stats_active"],
                             capture_output=True, text=True).stdout
        sample = {
            "calls": calls,
            "dialogs": dlg.strip().replace("\n", " "),
            "rtpengine_sessions": self.edge.rtpengine_sessions(),
            "kamailio_pss_kb": sysinfo.pss_kb(kam),
            "kamailio_shm_used_kb": shm_used,
            "rtpengine_pss_kb": sysinfo.pss_kb([self.edge.pid("rtpengine")]),
            "redis_pss_kb": sysinfo.pss_kb([self.edge.pid("redis")]),
            "redis_used_kb": int(info.get("used_memory", 0)) // 1024,
        }
        sample["total_kb"] = sample["kamailio_pss_kb"] + sample["rtpengine_pss_kb"] + sample["redis_pss_kb"]
        return sample

    # ------------------------------------------------------------------ driver

    def save(self) -> None:
        (self.out / "summary.json").write_text(json.dumps(self.summary, indent=1, default=str))

    def teardown(self) -> None:
        compact(self.out)
        for k in self.natives.values():
            k.down()
        self.edge.down()
        if self.replica is not None:
            self.replica.down()
        for name in ("kamailio.log", "rtpengine.log"):
            src = self.edge.run_dir / name
            if src.exists():
                lines = src.read_text(errors="replace").splitlines()[-300:]
                (self.out / f"edge-{name}.tail").write_text("\n".join(lines) + "\n")
        if not self.args.keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def run(self) -> Path:
        t0 = time.monotonic()
        phases = [("cps", self.cps), ("counts", self.counts), ("latency", self.latency), ("ablation", self.ablation),
                  ("profile", self.profile), ("media", lambda: self.media(False)), ("xcode", lambda: self.media(True)),
                  ("memory", self.memory), ("overload", self.overload), ("micro", self.micro),
                  ("pyprof", self.pyprof)]
        only = set(self.args.only.split(",")) if self.args.only else None
        try:
            self.setup()
            for name, fn in phases:
                if only and name not in only:
                    continue
                log(f"--- {name}")
                p0 = time.monotonic()
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001 - record and go on with the other measures
                    self.summary["errors"].append(f"{name}: {exc}\n{traceback.format_exc()}")
                    log(f"{name} failed: {exc}")
                self.summary.setdefault("phase_s", {})[name] = round(time.monotonic() - p0, 1)
        finally:
            self.summary["load_end"] = sysinfo.loadavg()
            self.summary["wall_s"] = round(time.monotonic() - t0, 1)
            self.save()
            self.teardown()
        return self.out


NOISE = ("receive timeout on message", "Maximum number of open sockets")


def compact(out: Path, limit: int = 100_000, keep_bytes: int = 200_000) -> None:
    """Keep a full run small: drop SIPp's per-call hold-timer lines from its error logs (the hold
    is a receive timeout, see scenarios/uac_cps.xml) and keep their first ``keep_bytes``, then
    gzip every bulky raw file (logs, CSVs, pcaps)."""
    import gzip

    for path in out.rglob("*errors.log"):
        lines = [l for l in path.read_text(errors="replace").split("\n") if not any(n in l for n in NOISE)]
        text = "\n".join(lines)
        if len(text) > keep_bytes:
            text = text[:keep_bytes] + f"\n[... truncated by bench/ladder.py compact(): {len(text)} bytes in all]\n"
        path.write_text(text)
    for path in out.glob("pcap/*.pcap*"):
        if "-50.pcap" not in path.name:  # the 50 % captures (the target's load) are kept
            path.unlink()
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".csv", ".pcap", ".txt") and path.stat().st_size > limit:
            with open(path, "rb") as src, gzip.open(str(path) + ".gz", "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst)
            path.unlink()


def _wait(predicate, timeout: float, what: str, fail: bool = True) -> float | None:
    """Poll ``predicate`` (every 0.25 s) until true; returns the monotonic time it became true, or
    None on timeout (``fail``: raise instead, naming ``what``)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return time.monotonic()
        if time.monotonic() > deadline:
            if fail:
                raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
            return None
        time.sleep(0.25)


def _ratio(after: float, before: float) -> float | None:
    return round(after / before, 3) if before else None


def _brief(step: dict) -> dict:
    keep = ("rung", "offered_cps", "achieved_cps", "created", "successful", "failed", "failures", "fail_ratio",
            "retransmissions", "watchdog", "udp_rcvbuf_errors", "sut_cpu_ms_per_call", "cpu_ms_per_call", "pdd_ms",
            "setup_ms", "passed", "load", "workdir")
    out = {k: step.get(k) for k in keep}
    out["machine_pct"] = step.get("cpu", {}).get("machine_pct")
    if out.get("workdir"):
        out["workdir"] = os.path.relpath(out["workdir"], BENCH)
    return out


def _added(direct: dict, edge: dict) -> dict:
    out = {}
    for key in ("pdd_ms", "setup_ms"):
        out[key] = {q: (None if edge[key].get(q) is None or direct[key].get(q) is None
                        else round(edge[key][q] - direct[key][q], 3)) for q in ("p50", "p99")}
    return out


def pyspy_summary(raw: Path, src: Path) -> dict:
    """Fold py-spy's collapsed stacks into where the edge's Python time goes."""
    if not raw.exists():
        return {}
    cats: dict[str, int] = {}
    total = 0
    lines_cache: dict[str, list[str]] = {}

    def src_line(frame: str) -> str:
        # "func (path/file.py:123)"
        try:
            loc = frame.rsplit("(", 1)[1].rstrip(")")
            path, line = loc.rsplit(":", 1)
        except (IndexError, ValueError):
            return ""
        # a module of a sub-package (routing/kamailio/invite.py) keeps its folder
        rel = path.rsplit("routing/", 1)[1] if "routing/" in path else Path(path).name
        cand = [p for p in (src / "routing" / rel,) if p.exists()]
        if not cand:
            return ""
        key = str(cand[0])
        if key not in lines_cache:
            lines_cache[key] = cand[0].read_text().splitlines()
        idx = int(line) - 1
        return lines_cache[key][idx] if 0 <= idx < len(lines_cache[key]) else ""

    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        n = int(n)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames:
            continue
        total += n
        joined = ";".join(frames)
        if "redis/" in joined or "redis\\" in joined:
            if any(("topology" in f and "store.py" in f) for f in frames):
                cat = "redis: topology reads (2 pipelines)"
            elif any("RedisStore.did" in f or "RedisStore.routes" in f for f in frames):
                cat = "redis: DID/route read"
            elif any("RedisStore.acquire" in f for f in frames):
                cat = "redis: lease.lua (admission)"
            elif any("RedisStore.release" in f for f in frames):
                cat = "redis: release.lua"
            else:
                cat = "redis: other"
        else:
            leaf = frames[-1]
            text = src_line(leaf) if ("routing/kamailio/" in leaf) else ""
            if "KSR.rtpengine" in text:
                cat = "KSR rtpengine (ng round trip)"
            elif "KSR.tm" in text:
                cat = "KSR tm (relay, transaction)"
            elif "KSR." in text:
                cat = "KSR other (pv, headers, dialog, sl)"
            elif any(k in leaf for k in ("from_redis", "ipaddress", "acl.py", "model.py", "numbers.py", "classify")):
                cat = "Python: parse topology / ACL / numbers"
            elif any(k in joined for k in ("plan.py", "json")):
                cat = "Python: call plan (JSON)"
            else:
                cat = "Python: other (kemi glue, pipeline)"
        cats[cat] = cats.get(cat, 0) + n
    entry = {}
    for f in ("ksr_request_route", "ksr_onreply_manage", "ksr_dialog_event", "ksr_failure_manage"):
        entry[f] = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if n.isdigit():
            for f in entry:
                if f in stack:
                    entry[f] += int(n)
                    break
    return {"samples": total, "rate_hz": 250, "categories": {k: round(100 * v / max(1, total), 1) for k, v in
                                                            sorted(cats.items(), key=lambda kv: -kv[1])},
            "entry_points_pct": {k: round(100 * v / max(1, total), 1) for k, v in entry.items()}}


def perf_summary(text: str) -> dict:
    dso: dict[str, float] = {}
    syms = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].endswith("%"):
            pct = float(parts[0].rstrip("%"))
            name = parts[1]
            dso[name] = dso.get(name, 0.0) + pct
            if len(syms) < 15:
                syms.append(f"{parts[0]} {name} {' '.join(parts[3:])}")
    groups = {"python (libpython)": 0.0, "kamailio core": 0.0, "kamailio modules": 0.0, "kernel": 0.0, "libc": 0.0,
              "other": 0.0}
    for name, pct in dso.items():
        if "libpython" in name:
            groups["python (libpython)"] += pct
        elif name == "kamailio":
            groups["kamailio core"] += pct
        elif name.endswith(".so") and "cpython" not in name and "lib" not in name[:3]:
            groups["kamailio modules"] += pct
        elif "kernel" in name:
            groups["kernel"] += pct
        elif "libc" in name:
            groups["libc"] += pct
        else:
            groups["other"] += pct
    return {"groups_pct": {k: round(v, 1) for k, v in groups.items()}, "top_symbols": syms}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few minutes: one repeat, short steps")
    ap.add_argument("--worktree", action="store_true", help="bench the working tree instead of git HEAD")
    ap.add_argument("--only", help="comma-separated phases: cps,counts,latency,ablation,profile,media,xcode,memory,overload,"
                                   "micro,pyprof")
    ap.add_argument("--overload-s", type=float, help="length of the overload phase's burst (s; default 30, 10 quick)")
    ap.add_argument("--rungs", help="comma-separated rungs of the CPS ladder (default: all), e.g. edge,edge-w8")
    ap.add_argument("--media-n", help="comma-separated G.711 call counts of the media phase, e.g. 400,500")
    ap.add_argument("--baseline", metavar="REF",
                    help="also bench the edge built from git REF (e.g. 04f5094) as the rung edge-before: in the CPS "
                         "ladder and in the counts phase (Python entries, redis and rtpengine round trips per call)")
    ap.add_argument("--keep", action="store_true", help="keep the run directories under /tmp")
    ap.add_argument("--results", default=str(BENCH / "results"))
    ap.add_argument("--no-report", action="store_true")
    args = ap.parse_args()
    out = Bench(args).run()
    log(f"summary: {out / 'summary.json'}")
    if not args.no_report:
        import report

        target = rungs.REPO / "docs" / "benchmarks.md"
        report.render(out / "summary.json", target)
        log(f"report: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
