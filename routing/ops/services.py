"""Start, stop and inspect the edge's processes: redis, rtpengine, Kamailio and the monitor.

The monitor (``python -m routing.monitor``) is the Prometheus exporter of the
redis-held state and the gateway OPTIONS prober.

Used by ``edgectl up/down/status`` and by the integration tests, so the tests
run the edge exactly the way operators do.  Each process runs in the
background with its log in the run directory (``<name>.log``) and its pid in
``pids/<name>.pid``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import redis

from routing.errors import EdgeError
from routing.call.decision import Reason
from routing.ops import drain, runtime
from routing.ops.hostcheck import check_addresses
from routing.ops.render import render_to_dir
from routing.ops.secrets import create_key
from routing.ops.settings import Settings
from routing.monitor.sipprobe import rtpengine_ping, sip_options
from routing.tables.store import connect

__all__ = [
    "ServiceError", "ServiceState", "up", "down", "restart", "status", "sentinel_master", "kamailio_check", "BINARIES",
    "kamailio_environment", "embedded_python_fault", "EMBEDDED_PYTHON_HOME", "KAMAILIO_PATH",
]

#: Programs the edge runs, by service name.
BINARIES = {"redis": "redis-server", "rtpengine": "rtpengine", "kamailio": "kamailio"}
#: rendered with the other configs (templates/monitor.json.j2): the settings the monitor process runs with
MONITOR_SETTINGS = "monitor.json"
START_TIMEOUT_S = 20.0
#: Processes started by this Python process by pid, kept so they are not reaped as garbage
#: while they run in the background (they outlive edgectl on purpose). Keyed by pid, not by
#: service name: one process (a test run, a multi-node tool) may start the same service for
#: several nodes, and stopping one node must never wait on or kill another node's process.
_CHILDREN: dict[int, subprocess.Popen] = {}

#: Prefix of Debian's python3.11, the interpreter whose ``libpython3.11.so`` app_python3 is
#: linked with (``sysconfig.get_config_var("prefix")`` of ``/usr/bin/python3``): its standard
#: library is ``/usr/lib/python3.11``, its C extensions ``/usr/lib/python3.11/lib-dynload``.
EMBEDDED_PYTHON_HOME = "/usr"
#: ``PATH`` of every Kamailio the edge starts (and of the Ansible units, ansible/roles/kamailio):
#: Debian's directories only.  An embedded interpreter that is given no program name (app_python3
#: gives none) takes ``python3`` from ``PATH`` as its executable and computes its prefix from it
#: (CPython's ``Modules/getpath.py``); a foreign ``python3`` first on the caller's ``PATH``
#: (pyenv, ``/usr/local/bin``, an activated venv of another Python) would make it load that
#: Python's standard library and fail on its C extensions (``undefined symbol: _PyModule_Add``).
KAMAILIO_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
#: The caller's variables that would add or move the embedded interpreter's module paths
#: (https://docs.python.org/3.11/using/cmdline.html#environment-variables); ``PYTHONHOME`` is set.
_FOREIGN_PYTHON_VARIABLES = ("PYTHONPATH", "PYTHONPLATLIBDIR", "PYTHONUSERBASE", "PYTHONEXECUTABLE")


def kamailio_environment(runtime_json: Path | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every Kamailio of the edge runs with, whatever the caller's shell.

    ``base`` (default ``os.environ``) with ``PATH`` = :data:`KAMAILIO_PATH`, ``PYTHONHOME`` =
    :data:`EMBEDDED_PYTHON_HOME` and without the variables of :data:`_FOREIGN_PYTHON_VARIABLES`,
    so that app_python3's interpreter is Debian's: ``sys.prefix`` ``/usr`` and the standard
    library of ``/usr/lib/python3.11``.  The venv's site-packages are still added by
    ``kamailio/edge.py`` from ``routing.json``.  With ``runtime_json``, ``BYOC_EDGE_RUNTIME``
    names it (see :mod:`routing.ops.runtime`).

    Returns:
        A new dict of variable name to value.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _FOREIGN_PYTHON_VARIABLES}
    env["PATH"] = KAMAILIO_PATH
    env["PYTHONHOME"] = EMBEDDED_PYTHON_HOME
    if runtime_json is not None:
        env[runtime.ENV_VAR] = str(runtime_json)
    return env


#: ``ImportError: <stdlib>/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so: undefined symbol: _PyModule_Add``
_DYNLOAD_SYMBOL = re.compile(r"ImportError: (?P<lib>/\S+?)/lib-dynload/\S+?: (?P<why>undefined symbol: \S+)")
#: CPython's dump before ``Fatal Python error`` (no usable standard library): ``  stdlib dir = '<stdlib>'``
_STDLIB_DIR = re.compile(r"^\s*stdlib dir = '(?P<lib>[^']+)'", re.MULTILINE)
#: a traceback frame in a standard library: ``  File "<prefix>/lib/python3.11/ssl.py", line 100``
_STDLIB_FRAME = re.compile(r'File "(?P<lib>/[^"]*?/lib/python3\.\d+)/(?!site-packages/|dist-packages/)[^"]+\.py"')


def embedded_python_fault(output: str, home: str = EMBEDDED_PYTHON_HOME) -> str | None:
    """One line naming the cause when Kamailio's start-up ``output`` shows that app_python3's
    interpreter took a standard library other than ``<home>/lib/python3.N``; None otherwise.

    Recognised: a C extension of the standard library failing to link (``ImportError:
    .../lib-dynload/...so: undefined symbol: ...``), CPython's fatal start-up error with its path
    dump (``stdlib dir = '...'``), and a traceback through another standard library's modules.

    Returns:
        ``"Kamailio's app_python3 loaded the standard library of <path>, not <home>/lib/python3.N
        (...): <symptom>; start Kamailio with PATH=... and PYTHONHOME=..."``, or None.
    """
    expected = f"{home.rstrip('/')}/lib/python3."
    lines = output.splitlines()
    found: tuple[str, str] | None = None
    if (match := _DYNLOAD_SYMBOL.search(output)) and not match["lib"].startswith(expected):
        found = (match["lib"], match.group(0).split(": ", 1)[1])
    elif (match := _STDLIB_DIR.search(output)) and not match["lib"].startswith(expected):
        fatal = next((l.strip() for l in lines if l.startswith("Fatal Python error")), "Fatal Python error")
        cause = next((l.strip() for l in reversed(lines) if re.match(r"^\w*(Error|Exception): ", l)), "")
        found = (match["lib"], fatal + (f" ({cause})" if cause else ""))
    else:
        foreign = [m["lib"] for m in _STDLIB_FRAME.finditer(output) if not m["lib"].startswith(expected)]
        if foreign:
            cause = next((l.strip() for l in reversed(lines) if re.match(r"^\w*(Error|Exception): ", l)), "an error")
            found = (foreign[-1], cause)
    if found is None:
        return None
    library, symptom = found
    version = re.search(r"python3\.\d+$", library)
    own = f"{expected}{version.group(0)[len('python3.'):]}" if version else f"{home.rstrip('/')}/lib/python3"
    return (
        f"Kamailio's app_python3 loaded the standard library of {library}, not {own} (another python3 "
        f"first on PATH, or PYTHONHOME): {symptom}; start Kamailio with PATH={KAMAILIO_PATH} and "
        f"PYTHONHOME={home}, as edgectl and the edge's units do"
    )


def _exit_report(what: str, log_text: str) -> str:
    """``what: <cause>`` for a process that exited at start-up: the embedded-Python cause when
    :func:`embedded_python_fault` recognises one in its output, else the output's last 15 lines
    joined by `` | ``."""
    return f"{what}: " + (embedded_python_fault(log_text) or " | ".join(log_text.splitlines()[-15:]))


class ServiceError(EdgeError, RuntimeError):
    """A service could not be started or checked; the message says which and why."""


@dataclass(frozen=True, slots=True)
class ServiceState:
    """One service as seen by ``edgectl status``.

    Attributes:
        name: ``redis``, ``rtpengine``, ``kamailio`` or ``monitor``; ``rtpengine udp:HOST:PORT`` for a node
            of an rtpengine set.
        pid: process id from the pid file, None when not started by edgectl.
        running: the process exists.
        healthy: it answers its protocol (PING, ng ping, SIP OPTIONS, HTTP /metrics).
        detail: human-readable health detail.
        draining: Kamailio only: the node is draining (``edgectl drain``); None for other services.
        calls_left: Kamailio only: dialogs it tracks (calls being set up, ringing or answered); None
            when it does not answer its ctl socket, and for other services.
    """

    name: str
    pid: int | None
    running: bool
    healthy: bool
    detail: str
    draining: bool | None = None
    calls_left: int | None = None


def _binary(name: str) -> str:
    path = shutil.which(BINARIES[name]) or shutil.which(BINARIES[name], path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not path:
        raise ServiceError(f"{BINARIES[name]} is not installed (run scripts/bootstrap)")
    return path


def _pidfile(run_dir: Path, name: str) -> Path:
    return run_dir / "pids" / f"{name}.pid"


def _pid(run_dir: Path, name: str) -> int | None:
    try:
        pid = int(_pidfile(run_dir, name).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def kamailio_running(settings: Settings) -> bool:
    """True when this node's Kamailio process (pid file in ``run_dir``) is alive."""
    return _pid(Path(settings.run_dir), "kamailio") is not None


def _alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _argv(settings: Settings, name: str) -> list[str]:
    run_dir = Path(settings.run_dir)
    if name == "redis":
        return [_binary("redis"), str(run_dir / "redis.conf")]
    if name == "rtpengine":
        return [_binary("rtpengine"), f"--config-file={run_dir / 'rtpengine.conf'}", "--foreground"]
    if name == "monitor":
        return [sys.executable, "-m", "routing.monitor", str(run_dir / MONITOR_SETTINGS)]
    return [
        _binary("kamailio"),
        "-f",
        str(run_dir / "kamailio.cfg"),
        "-DD",
        "-E",
        "-m",
        str(settings.sip.shm_mb),
        "-x",
        settings.sip.allocator,
        "-P",
        str(run_dir / "kamailio.pid"),
    ]


def sentinel_master(settings: Settings) -> ServiceState:
    """The master of the Sentinel set (``redis.sentinels``) as ``edgectl status`` shows it: where the
    Sentinels say it is, and whether it answers PING there (not a process of this node: no pid)."""
    r = settings.redis
    try:
        client = connect(**r.client_args(), timeout_ms=500, connect_timeout_ms=500)
        host, port = client.connection_pool.get_master_address()  # type: ignore[attr-defined]
        client.ping()
        return ServiceState("redis", None, False, True, f"PONG from the master {host}:{port} of "
                                                        f"{r.master_name} (from {len(r.sentinels)} Sentinels)")
    except redis.RedisError as exc:
        return ServiceState("redis", None, False, False, f"no PONG from the master of {r.master_name} "
                                                         f"(Sentinels {', '.join(r.sentinels)}): {exc}")


def rtpengine_nodes(settings: Settings) -> list[ServiceState]:
    """Each node of an rtpengine set (``rtpengine.nodes``) as ``edgectl status`` shows it: whether it
    answers an ng ``ping`` within 0.5 s (not a process of this node: no pid); [] without a set."""
    states = []
    for node in settings.rtpengine.nodes:
        ok = rtpengine_ping(node.address, node.ng_port, timeout_s=0.5)
        states.append(ServiceState(f"rtpengine {node.url}", None, False, ok,
                                   f"ng {'pong' if ok else 'no answer'} from {node.url} (a node of the set)"))
    return states


def _healthy(settings: Settings, name: str) -> tuple[bool, str]:
    if name == "redis":
        try:
            r = settings.redis
            connect(r.host, r.port, r.db, r.password, timeout_ms=500, connect_timeout_ms=500).ping()
            return True, f"PONG from {r.host}:{r.port}"
        except redis.RedisError as exc:
            return False, f"no PONG from {settings.redis.host}:{settings.redis.port}: {exc}"
    if name == "rtpengine":
        ok = rtpengine_ping("127.0.0.1", settings.rtpengine.ng_port, timeout_s=0.5)
        return ok, f"ng {'pong' if ok else 'no answer'} on 127.0.0.1:{settings.rtpengine.ng_port}"
    if name == "monitor":
        url = f"http://{_http_host(settings.metrics.address)}:{settings.metrics.exporter_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=0.5) as reply:
                ok = reply.status == 200 and b"byoc_edge_redis_up" in reply.read()
            return ok, f"GET {url} -> {reply.status}"
        except (urllib.error.URLError, OSError) as exc:
            return False, f"GET {url} -> {getattr(exc, 'reason', exc)}"
    host, port = settings.sip_target
    result = sip_options(host, port, timeout_s=0.5)
    if result.code:
        # a draining node answers OPTIONS 503 Node Draining on purpose: it runs and answers SIP
        draining = (result.code, result.reason) == Reason.NODE_DRAINING[:2]
        return result.code == 200 or draining, f"OPTIONS {host}:{port} -> {result.code} {result.reason} in {result.rtt_ms:.1f} ms"
    return False, f"OPTIONS {host}:{port} -> {result.reason}"


def _http_host(address: str) -> str:
    if address in ("0.0.0.0", "::"):
        return "127.0.0.1" if address == "0.0.0.0" else "[::1]"
    return f"[{address}]" if ":" in address else address


def _names(settings: Settings) -> list[str]:
    return (["redis"] if settings.redis.manage else []) + ["rtpengine", "kamailio", "monitor"]


def tls_profiles(settings: Settings, client: redis.Redis | None = None, reload: bool = False) -> bool:
    """Write the per-trunk TLS client profiles (``tls_ca`` overrides) from redis into ``tls.cfg``
    (see :mod:`routing.ops.tlsprofiles`); with ``reload``, make the running Kamailio load them.

    Returns:
        True when ``tls.cfg`` changed; False also when there is no TLS listener.

    Raises:
        redis.RedisError: redis unreachable.
        DataError: a malformed trunk.
        RuntimeError: ``tls.reload`` failed.
    """
    from routing.tables import admin
    from routing.ops import tlsprofiles

    if not settings.tls_enabled:
        return False
    r = settings.redis
    client = client or connect(**r.client_args(), timeout_ms=2000, connect_timeout_ms=2000)
    return tlsprofiles.refresh(settings, admin.list_trunks(client), reload=reload)


def _start(settings: Settings, name: str) -> int:
    run_dir = Path(settings.run_dir)
    if name == "kamailio" and settings.tls_enabled:
        try:
            tls_profiles(settings)
        except (redis.RedisError, ValueError) as exc:  # start with the node-wide CA list only
            print(f"edgectl: per-trunk TLS CAs not written ({exc})", file=sys.stderr)
    for pid in [pid for pid, child in _CHILDREN.items() if child.poll() is not None]:
        del _CHILDREN[pid]  # reap earlier instances that died
    if name == "kamailio":
        env = kamailio_environment(run_dir / "routing.json")
    else:
        env = dict(os.environ, **{runtime.ENV_VAR: str(run_dir / "routing.json")})
    log_path = run_dir / f"{name}.log"
    start_offset = log_path.stat().st_size if log_path.exists() else 0
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        _argv(settings, name),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=run_dir,
        env=env,
        start_new_session=True,
    )
    log.close()
    _CHILDREN[proc.pid] = proc
    _pidfile(run_dir, name).parent.mkdir(exist_ok=True)
    _pidfile(run_dir, name).write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log_path, "rb") as handle:  # this start's output only: the log is appended to
                handle.seek(start_offset)
                text = handle.read().decode(errors="replace")
            raise ServiceError(_exit_report(f"{name} exited with status {proc.returncode}", text))
        ok, _ = _healthy(settings, name)
        if ok:
            return proc.pid
        time.sleep(0.05)
    _stop(run_dir, name)
    raise ServiceError(f"{name} did not become healthy within {START_TIMEOUT_S:.0f}s (see {run_dir / (name + '.log')})")


def kamailio_check(settings: Settings) -> str:
    """Run ``kamailio -c`` on the rendered config; returns its output.

    Raises:
        ServiceError: the config does not parse.
    """
    run_dir = Path(settings.run_dir)
    proc = subprocess.run(
        [_binary("kamailio"), "-c", "-f", str(run_dir / "kamailio.cfg")],
        capture_output=True,
        text=True,
        env=kamailio_environment(run_dir / "routing.json"),
    )
    if proc.returncode != 0:
        errors = [l for l in proc.stderr.splitlines() if "ERROR" in l or "CRITICAL" in l] or proc.stderr.splitlines()[-5:]
        raise ServiceError("kamailio -c failed: " + " | ".join(errors))
    return proc.stderr


def up(settings: Settings) -> list[ServiceState]:
    """Render configs, then start redis (if managed), rtpengine, Kamailio and the monitor; wait until each answers.

    Services already running and healthy are left alone, so ``up`` can run twice.

    Raises:
        ServiceError: an address is not on this host, a binary is missing, the
            Kamailio config does not parse, or a service does not come up.
    """
    errors = check_addresses(settings)
    if errors:
        raise ServiceError("; ".join(errors))
    run_dir = Path(settings.run_dir)
    create_key(settings.secret_key_path)
    if settings.tls_enabled and not settings.tls_certificate.exists():
        raise ServiceError(
            f"sip.tls.certificate: {settings.tls_certificate} does not exist "
            "(use a CA-signed certificate, or `edgectl tls selfsigned` for tests)"
        )
    names = _names(settings)
    running = {n for n in names if _pid(run_dir, n) and _healthy(settings, n)[0]}
    if running != set(names):
        render_to_dir(settings)
        kamailio_check(settings)
    for name in names:
        if name in running:
            continue
        if _pid(run_dir, name):
            _stop(run_dir, name)
        healthy, detail = _healthy(settings, name)
        if healthy:
            raise ServiceError(
                f"{name}: another process already answers ({detail}); stop it or change its port in the settings"
            )
        _start(settings, name)
    return status(settings)


def _stop(run_dir: Path, name: str, timeout_s: float = 10.0) -> bool:
    pid = _pid(run_dir, name)
    if pid is None:
        _pidfile(run_dir, name).unlink(missing_ok=True)
        return False
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _pid(run_dir, name):
            time.sleep(0.05)
        child = _CHILDREN.get(pid)
        if child is not None:
            child.poll()  # reap our own child so it does not linger as a zombie
        if not _pid(run_dir, name):
            break
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        try:  # a leader thread shows as a zombie before its other threads are gone: wait, do not poll
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    _pidfile(run_dir, name).unlink(missing_ok=True)
    return True


def restart(settings: Settings, name: str) -> ServiceState:
    """Stop service ``name`` (when running) and start it again from ``settings``, e.g. the
    monitor after a change of ``health`` or ``metrics`` settings.

    Raises:
        ServiceError: unknown service, or it does not come up.
    """
    if name not in _names(settings):
        raise ServiceError(f"unknown service {name!r}: use one of {', '.join(_names(settings))}")
    run_dir = Path(settings.run_dir)
    _stop(run_dir, name)
    if name in ("kamailio", "monitor"):  # both read rendered files: kamailio.cfg/routing.json, monitor.json
        render_to_dir(settings)
    if name == "kamailio":
        kamailio_check(settings)
    _start(settings, name)
    return next(s for s in status(settings) if s.name == name)


def down(settings: Settings) -> list[str]:
    """Stop Kamailio, the monitor, rtpengine and the managed redis (in that order); returns the names stopped."""
    run_dir = Path(settings.run_dir)
    return [n for n in ("kamailio", "monitor", "rtpengine", "redis") if _stop(run_dir, n)]


def status(settings: Settings) -> list[ServiceState]:
    """State of each service: pid, running, and whether it answers its protocol; with a Sentinel set,
    its master first (:func:`sentinel_master`); with an rtpengine set, each node before Kamailio
    (:func:`rtpengine_nodes`)."""
    run_dir = Path(settings.run_dir)
    names = _names(settings)
    states = [sentinel_master(settings)] if settings.redis.sentinels else []
    for name in names:
        if name == "kamailio":
            states += rtpengine_nodes(settings)
        pid = _pid(run_dir, name)
        healthy, detail = _healthy(settings, name)
        if name != "kamailio":
            states.append(ServiceState(name, pid, pid is not None, healthy, detail))
            continue
        node = drain.state(settings)
        states.append(ServiceState(name, pid, pid is not None, healthy, detail, node.draining, node.calls_left))
    return states


def kamailio_startup_check(settings: Settings, timeout_s: float = 15.0) -> float:
    """Start a throw-away Kamailio from the same settings on a free loopback port and
    wait for it to answer SIP OPTIONS through the Python plugin.

    ``kamailio -c`` does not import the Python script; only a real start-up
    proves that the plugin and its dependencies import under Kamailio's
    embedded interpreter.  Returns the OPTIONS round-trip time (ms).

    Raises:
        ServiceError: Kamailio exited (the log tail is in the message) or did not answer.
    """
    import socket
    import tempfile

    from routing.ops.settings import Listener

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="edge-check-") as tmp:
        sip = settings.sip.model_copy(update={"listen": [Listener(transport="udp", address="127.0.0.1", port=port)], "workers": 1})
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            metrics_port = sock.getsockname()[1]
        probe_metrics = settings.metrics.model_copy(update={"address": "127.0.0.1", "kamailio_port": metrics_port})
        trial = settings.model_copy(update={"run_dir": Path(tmp), "sip": sip, "metrics": probe_metrics})
        render_to_dir(trial)
        argv = _argv(trial, "kamailio")
        env = kamailio_environment(Path(tmp) / "routing.json")
        log_path = Path(tmp) / "kamailio.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise ServiceError(
                        _exit_report(f"kamailio start-up failed (status {proc.returncode})", log_path.read_text(errors="replace"))
                    )
                result = sip_options("127.0.0.1", port, timeout_s=0.3)
                if result.code == 200 and result.rtt_ms is not None:
                    return result.rtt_ms
            raise ServiceError(f"kamailio did not answer OPTIONS on 127.0.0.1:{port} within {timeout_s:.0f}s")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
