"""The systems under test: the real edge (routing.ops.services.up), a patched copy of it,
the native peer and the stateless limit (hand-written kamailio.cfg files under bench/)."""

from __future__ import annotations

import hashlib
import json
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV_PY = REPO / ".venv" / "bin" / "python"

# ---- addresses and ports (127.0.2.0/24, ports nobody else on this machine uses)
NET = "127.0.2"
EDGE_IP, PEER_IP, LIMIT_IP, XCODE_IP = f"{NET}.1", f"{NET}.2", f"{NET}.3", f"{NET}.4"
SIP_PORT = 25060
CARRIER_IP, AGENT_IP = f"{NET}.11", f"{NET}.21"
CARRIER_PORT, AGENT_PORT = 25070, 25080
UAC_MEDIA_PORT, UAS_MEDIA_PORT = 64800, 64810
REDIS_PORT, NG_PORT, CLI_PORT = 26379, 22223, 29900
#: a replica of the edge's redis, for the rung edge-strict (redis.strict_admission: WAIT 1 per admission)
REPLICA_PORT = 26380
#: UDP port of the monitor's HEP collector (SIP capture, rung edge-capture) on 127.0.0.1
CAPTURE_PORT = 29060
RTP_MIN, RTP_MAX = 60000, 64799
DID = "+14155550100"
TRUNK, AGENT = "carrier", "bot"
NODE = "bench-edge"
MAX_CALL_S = 3600
#: lease of a call not yet answered, as the edge's (routing.render.admission_ttl_s of the bench
#: edge's settings: the default sip.failover_timeout_ms 3000 + ringing_timeout_ms 60000, + 30 s)
ADMISSION_TTL = 3 + 60 + 30


def udp_bound(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((ip, port))
        except OSError:
            return True
    return False


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def killpg(pid: int, timeout: float = 10.0) -> None:
    """Stop a process group we started (its leader's pid), TERM then KILL."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not _alive(pid):
            return


# ------------------------------------------------------------------ the edge


def edge_settings(run_dir: Path, workers: int = 4, extra: dict | None = None, capture: bool | None = None) -> dict:
    """The bench edge's settings; ``extra`` replaces keys of a section (``{"redis": {...}}``); ``capture``
    sets ``capture.enabled`` (None: the key is left out, for a tree older than the SIP capture, whose
    settings would refuse it)."""
    data = {
        "node": NODE,
        "run_dir": str(run_dir),
        "sip": {
            "listen": [{"transport": "udp", "address": EDGE_IP, "port": SIP_PORT}],
            "workers": workers,
            "max_call_duration_s": MAX_CALL_S,
            "log_level": 2,
        },
        "rtpengine": {
            "address": EDGE_IP, "ng_port": NG_PORT, "cli_port": CLI_PORT,
            "port_min": RTP_MIN, "port_max": RTP_MAX, "media_timeout_s": 60, "log_level": 5,
        },
        "redis": {"host": "127.0.0.1", "port": REDIS_PORT, "manage": True, "timeout_ms": 200, "connect_timeout_ms": 200},
        "limits": {"retry_after_s": 5},
        # the metrics endpoints on the bench's own address (the default ports, away from other runs)
        "metrics": {"address": EDGE_IP},
    }
    if capture is not None:
        # the HEP collector on a port of the bench's own (tests and other edges may use the default 9060)
        data["capture"] = {"enabled": capture, "port": CAPTURE_PORT}
    for section, values in (extra or {}).items():
        data[section] = {**data.get(section, {}), **values}
    return data


@dataclass
class Replica:
    """A redis replica of the edge's redis (127.0.0.1:REDIS_PORT), on REPLICA_PORT, without persistence:
    what a Sentinel set's replica does for the master (the replication stream), for the strict rung."""

    base: Path
    proc: subprocess.Popen | None = None

    def up(self) -> None:
        import redis

        with open(self.base / "replica.log", "wb") as log:
            self.proc = subprocess.Popen(["redis-server", "--port", str(REPLICA_PORT), "--bind", "127.0.0.1", "--save", "",
                                          "--appendonly", "no", "--dir", str(self.base), "--replicaof", "127.0.0.1",
                                          str(REDIS_PORT)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        client = redis.Redis(host="127.0.0.1", port=REPLICA_PORT, socket_timeout=1, decode_responses=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if client.info("replication").get("master_link_status") == "up":
                    return
            except redis.RedisError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the replica on {REPLICA_PORT} did not sync with the edge's redis")

    def down(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            killpg(self.proc.pid)
        self.proc = None


@dataclass
class Edge:
    """The real edge, started with ``routing.ops.services.up`` from a settings file.

    ``src`` is the source tree whose ``routing`` package runs: the repository, or a
    patched copy (bench/proposals) for the prototype rungs.  Only Kamailio is
    restarted when the variant changes; redis and rtpengine stay up.
    """

    base: Path
    workers: int = 4
    src: Path = REPO
    settings_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.run_dir = self.base / "edge-run"
        self.settings_path = self.base / "edge-settings.yaml"

    def write_settings(self, workers: int | None = None, extra: dict | None = None, capture: bool | None = None) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        data = edge_settings(self.run_dir, workers or self.workers, extra, capture)
        self.settings_path.write_text(yaml.safe_dump(data))

    def up(self, src: Path | None = None, workers: int | None = None, extra: dict | None = None,
           capture: bool | None = None) -> None:
        """``routing.ops.services.up(settings)`` of ``src`` (in a subprocess, so two source trees never mix);
        ``extra``: settings sections of the variant (edge_settings); ``capture``: the SIP capture on or off
        (None: the tree has none, see :func:`edge_settings`)."""
        self.src = src or self.src
        self.write_settings(workers, extra, capture)
        code = (
            # this tree first and the working directory (the bench's own checkout) out: a tree whose routing/
            # has no __init__.py (a namespace package, as before the call-path rework) would lose against it
            "import os, sys; sys.path[:] = [sys.argv[1]] + [p for p in sys.path if p not in ('', os.getcwd())];"
            # nor the venv's editable install of this checkout
            "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in getattr(f, '__module__', '')];"
            "\ntry:\n from routing.ops import services; from routing.ops.settings import load_settings\n"
            "except ImportError:\n from routing import services; from routing.settings import load_settings\n"
            "import routing; assert list(routing.__path__)[0].startswith(sys.argv[1]), routing.__path__;"
            "[print(s.name, s.pid, s.healthy, s.detail) for s in services.up(load_settings(sys.argv[2]))]"
        )
        out = subprocess.run([str(VENV_PY), "-c", code, str(self.src), str(self.settings_path)],
                             capture_output=True, text=True, timeout=120, env=kamailio_env())
        if out.returncode != 0:
            raise RuntimeError(f"edge up failed ({self.src}): {out.stderr[-3000:]}")

    def pid(self, name: str) -> int | None:
        try:
            pid = int((self.run_dir / "pids" / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def stop_monitor(self) -> None:
        pid = self.pid("monitor")
        if pid:
            killpg(pid)
        (self.run_dir / "pids" / "monitor.pid").unlink(missing_ok=True)

    def stop_kamailio(self) -> None:
        pid = self.pid("kamailio")
        if pid:
            killpg(pid)
        (self.run_dir / "pids" / "kamailio.pid").unlink(missing_ok=True)

    def down(self) -> None:
        for name in ("monitor", "kamailio", "rtpengine", "redis"):
            pid = self.pid(name)
            if pid:
                killpg(pid)
            (self.run_dir / "pids" / f"{name}.pid").unlink(missing_ok=True)

    def redis(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=REDIS_PORT, socket_timeout=5, decode_responses=True)

    def provision(self, features: bool = False) -> dict:
        """One trunk, one agent and one DID, written with ``routing.tables.admin`` of the source tree
        (as edgectl does); returns the SHA1 of the tree's lease and release scripts (for the peer).
        With ``features`` (rung ``edge-full``, trees that have them): the trunk, the agent and the DID
        in an account with its own (non-binding) call and CPS limits, the DID with a fallback agent,
        the trunk with the edge's own ringback after 2 s: what issues 13, 14 and 17 add to every call
        that never needs them (the agent answers at once, so neither the fallback nor the ringback runs)."""
        code = (
            # this tree first and the working directory (the bench's own checkout) out: a tree whose routing/
            # has no __init__.py (a namespace package, as before the call-path rework) would lose against it
            "import os, sys; sys.path[:] = [sys.argv[1]] + [p for p in sys.path if p not in ('', os.getcwd())];"
            # nor the venv's editable install of this checkout
            "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in getattr(f, '__module__', '')];"
            # the package layout of the tree (sub-packages since the call-path rework; flat before it)
            "\ntry:\n from routing.tables import admin; from routing.tables.store import connect;"
            " from routing.tables.model import Agent, Did, Direction, Trunk\n"
            "except ImportError:\n from routing import admin; from routing.store import connect;"
            " from routing.model import Agent, Did, Direction, Trunk\n"
            "c = connect('127.0.0.1', int(sys.argv[2]), timeout_ms=5000, connect_timeout_ms=2000); c.flushdb();"
            + ("\nfrom routing.tables.model.account import Account; from routing.tables.model.did import FallbackKind, FallbackStep\n"
               "admin.put_account(c, Account(name='bench-acct', max_calls=100000, max_cps=100000.0));"
               "acct = {'account': 'bench-acct'}; ring = {'ringback_ms': 2000};"
               f"did_extra = {{'fallback': (FallbackStep(FallbackKind.AGENT, '{AGENT}-backup'),)}};"
               if features else "acct, ring, did_extra = {}, {}, {};")
            + f"admin.put_trunk(c, Trunk(name='{TRUNK}', direction=Direction.BOTH, max_calls=100000, cidrs=('{CARRIER_IP}/32',), **acct, **ring));"
            # the bench's SIPp agent answers INVITEs only: not probed with OPTIONS (trees that have agent probes)
            "quiet = {'probe': False} if 'probe' in getattr(Agent, '__dataclass_fields__', {}) else {};"
            f"admin.put_agent(c, Agent(name='{AGENT}', uris=('sip:{AGENT_IP}:{AGENT_PORT}',), cidrs=('{AGENT_IP}/32',), max_calls=100000, **quiet, **acct));"
            + (f"admin.put_agent(c, Agent(name='{AGENT}-backup', uris=('sip:{AGENT_IP}:{AGENT_PORT + 1}',), **quiet, **acct));"
               if features else "")
            + f"admin.put_did(c, Did(number='{DID}', trunk='{TRUNK}', agent='{AGENT}', **did_extra))"
        )
        out = subprocess.run([str(VENV_PY), "-c", code, str(self.src), str(REDIS_PORT)], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"provisioning failed: {out.stderr[-2000:]}")
        client = self.redis()
        shas = {}
        for name in ("lease", "release", "call_update", "finish", "cdr_add", "media"):
            lua = self.src / "routing" / "tables" / "lua"
            text = ((lua if lua.is_dir() else self.src / "routing" / "lua") / f"{name}.lua").read_text()
            shas[name] = client.script_load(text)
            assert shas[name] == hashlib.sha1(text.encode()).hexdigest()
        return shas

    def leases(self) -> int:
        client = self.redis()
        return sum(int(client.zcard(k)) for k in client.scan_iter(match="edge:lease:*"))

    def rtpengine_totals(self) -> dict[str, float]:
        import re

        out = subprocess.run(["rtpengine-ctl", "-ip", "127.0.0.1", "-port", str(CLI_PORT), "list", "totals"],
                             capture_output=True, text=True, timeout=10).stdout
        values: dict[str, float] = {}
        for line in out.splitlines():
            m = re.match(r"^\s*(.+?)\s*:\s*([0-9.]+)", line)
            if m:
                values.setdefault(m.group(1), float(m.group(2)))
        return values

    def rtpengine_sessions(self) -> int:
        return int(self.rtpengine_totals().get("Total sessions", 0))


# ------------------------------------------------------------------ native kamailio rungs


def kamailio_env() -> dict[str, str]:
    """The environment of every Kamailio the bench starts, the edge's and the native ones alike:
    ``routing.ops.services.kamailio_environment`` of this repository (Debian's ``PATH`` and
    ``PYTHONHOME=/usr``, so a foreign ``python3`` first on the caller's ``PATH`` cannot give
    app_python3 another standard library, and both rungs run in the same environment).  The edge's
    ``up`` runs with it too, so a tree built from an older commit (whose ``services`` passes the
    caller's environment on) starts its Kamailio with it as well."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from routing.ops.services import kamailio_environment

    return kamailio_environment()


@dataclass
class NativeKamailio:
    """A Kamailio started from a hand-written cfg under bench/ (peer, limit, transcoder)."""

    name: str
    cfg_template: Path
    base: Path
    ip: str
    port: int
    values: dict
    defines: tuple[str, ...] = ()
    args: tuple[str, ...] = ()  # extra kamailio command-line options, e.g. ("-x", "tlsf")
    proc: subprocess.Popen | None = None

    @property
    def run_dir(self) -> Path:
        return self.base / f"{self.name}-run"

    def render(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        text = self.cfg_template.read_text()
        values = {"IP": self.ip, "PORT": self.port, "RUN_DIR": self.run_dir, **self.values}
        for key, value in values.items():
            text = text.replace(f"@@{key}@@", str(value))
        if any("@@" in line for line in text.splitlines() if not line.startswith("# ")):
            raise RuntimeError(f"{self.name}: unfilled placeholder in {self.cfg_template}")
        path = self.run_dir / "kamailio.cfg"
        path.write_text(text)
        check = subprocess.run(["kamailio", "-c", "-f", str(path)] + [a for d in self.defines for a in ("-A", d)],
                               capture_output=True, text=True, env=kamailio_env())
        if check.returncode != 0:
            raise RuntimeError(f"{self.name}: kamailio -c failed: {check.stderr[-3000:]}")
        return path

    def up(self) -> None:
        path = self.render()
        log = open(self.run_dir / "kamailio.log", "ab")
        argv = ["kamailio", "-f", str(path), "-DD", "-E", "-P", str(self.run_dir / "kamailio.pid")]
        for d in self.defines:
            argv += ["-A", d]
        argv += list(self.args)
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.run_dir, start_new_session=True, env=kamailio_env())
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {(self.run_dir / 'kamailio.log').read_text()[-2000:]}")
            if udp_bound(self.ip, self.port):
                time.sleep(0.5)  # workers finish child_init
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not bind {self.ip}:{self.port}")

    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def down(self) -> None:
        if self.proc and self.proc.poll() is None:
            killpg(self.proc.pid)
            self.proc.wait()


def build_tree(dest: Path, ref: str | None = "HEAD", patches: list[Path] = ()) -> Path:
    """A runnable copy of the edge's code (routing/, kamailio/, templates/) in ``dest``.

    ``ref`` is a git revision read with ``git archive`` (read-only), or None for the
    working tree as it is; ``patches`` (bench/proposals/*.patch) are applied on top.
    """
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    parts = ["routing", "kamailio", "templates"]
    if ref:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", ref, *parts],
                                 capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    else:
        for name in parts:
            shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for patch in patches:
        path = str(Path(patch).resolve())
        out = subprocess.run(["patch", "-p1", "-d", str(dest), "-i", path, "--forward", "--batch", "--fuzz=3"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            # already in the tree (integrated since the patch was written)? then it is no error
            rev = subprocess.run(["patch", "-p1", "-d", str(dest), "-i", path, "-R", "--dry-run", "--batch"],
                                 capture_output=True, text=True)
            # (patch --forward applies the hunks that are new and skips those already present)
            SKIPPED[Path(patch).name] = ("partly already in the tree; the rest applied" if rev.returncode == 0
                                         else f"does not apply: {out.stdout[-300:]}")
            for rej in dest.rglob("*.rej"):
                rej.unlink()
            for orig in dest.rglob("*.orig"):
                orig.unlink()
    return dest


#: proposals that build_tree could not apply, by file name, with the reason
SKIPPED: dict[str, str] = {}


def source_id(ref: str | None) -> dict:
    """Which code the edge rungs ran: commit, and whether the working tree differed."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", ref or "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "routing", "kamailio", "templates"],
                           capture_output=True, text=True).stdout.strip()
    return {"ref": ref or "worktree", "commit": head, "worktree_dirty": bool(dirty)}


def cdr_record_expr(node: str) -> str:
    """A Kamailio cfg string expression that builds a call record in the edge's format
    (``routing.call.cdr.build_record`` of this tree) for the peer: ``$var(cid)``, ``$var(st)``'s
    CSeq and start are spliced in, the other fields are those of a bench call."""
    sys.path.insert(0, str(REPO))
    from routing.call.cdr import CallFacts, build_record

    cid, cseq, start = "~CID~", "~CS~", 1795270000000
    record = build_record(CallFacts(
        node=node, call_id=cid, cseq=cseq, start_ms=start, end_ms=start + 560, sip_code=200, sip_reason="OK",
        direction="origination", answer_ms=start + 20, trunk=TRUNK, agent=AGENT, number=DID, caller="+14155550123",
        tried=[f"{AGENT} sip:{AGENT_IP}:{AGENT_PORT}=200"], codecs_caller=["PCMU", "telephone-event"],
        codecs_callee=["PCMU", "telephone-event"], hangup="caller",
    ))
    text = json.dumps(record, separators=(",", ":")).replace(str(start), "~ST~", 1)
    parts: list[str] = []
    for piece in re.split("(~[A-Z]+~)", text):
        if piece == "~CID~":
            parts.append("$var(cid)")
        elif piece == "~CS~":
            parts.append("$(var(st){s.select,4,|})")
        elif piece == "~ST~":
            parts.append("$var(start)")
        elif piece:
            parts.append('"' + piece.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return " + ".join(parts)
