"""routing.ops.services: the environment every Kamailio of the edge starts with, the one-line
cause reported when app_python3's interpreter took a foreign standard library, and the processes
this Python process started (stopping one node's service never touches another node's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from routing.ops import runtime, services
from routing.ops.settings import Settings
from routing.ops.services import EMBEDDED_PYTHON_HOME, KAMAILIO_PATH, embedded_python_fault, kamailio_environment

REPO = Path(__file__).resolve().parents[3]

#: Kamailio 5.6 started with pyenv's 3.11.7 first on PATH (output captured on Debian 12)
FOREIGN_SSL = """\
 0(10817) INFO: <core> [core/tcp_main.c:5073]: init_tcp(): using epoll_lt as the io watch method (auto detected)
Traceback (most recent call last):
  File "/opt/edge/kamailio/edge.py", line 23, in <module>
    from routing.kemi import mod_init  # noqa: E402,F401  (app_python3 calls mod_init())
  File "/opt/edge/.venv/lib/python3.11/site-packages/redis/asyncio/client.py", line 5, in <module>
    import ssl
  File "/root/.pyenv/versions/3.11.7/lib/python3.11/ssl.py", line 100, in <module>
    import _ssl             # if we can't import it, let the error propagate
    ^^^^^^^^^^^
ImportError: /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so: \
undefined symbol: _PyModule_Add
 0(10817) ERROR: app_python3 [app_python3_mod.c:169]: mod_init(): failed to load python script
 0(10817) ERROR: <core> [core/sr_module.c:974]: init_mod(): Error while initializing module app_python3 \
(/usr/lib/x86_64-linux-gnu/kamailio/modules/app_python3.so)
ERROR: error while initializing modules
"""

#: Kamailio 5.6 started with PYTHONHOME=/nonexistent (CPython's path dump, then the fatal error)
NO_STDLIB = """\
Python path configuration:
  PYTHONHOME = '/nonexistent'
  PYTHONPATH = (not set)
  program name = 'python3'
  stdlib dir = '/nonexistent/lib/python3.11'
  sys.prefix = '/nonexistent'
  sys.path = [
    '/nonexistent/lib/python311.zip',
    '/nonexistent/lib/python3.11',
    '/nonexistent/lib/python3.11/lib-dynload',
  ]
Fatal Python error: init_fs_encoding: failed to get the Python codec of the filesystem encoding
Python runtime state: core initialized
ModuleNotFoundError: No module named 'encodings'

Current thread 0x00007fd2fb794740 (most recent call first):
  <no Python frame>
"""

#: the plugin failing for a reason of its own, with Debian's standard library in the traceback
OWN_ERROR = """\
Traceback (most recent call last):
  File "/opt/edge/kamailio/edge.py", line 23, in <module>
  File "/usr/lib/python3.11/json/__init__.py", line 293, in load
  File "/usr/lib/python3.11/json/decoder.py", line 355, in raw_decode
json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)
 0(10817) ERROR: app_python3 [app_python3_mod.c:169]: mod_init(): failed to load python script
"""


def test_kamailio_environment_pins_debians_interpreter_whatever_the_callers_shell() -> None:
    caller = {
        "PATH": "/root/.pyenv/versions/3.11.7/bin:/usr/local/bin:/usr/bin",
        "PYTHONPATH": "/root/.pyenv/versions/3.11.7/lib/python3.11",
        "PYTHONHOME": "/root/.pyenv/versions/3.11.7",
        "PYTHONUSERBASE": "/home/op/.local",
        "PYTHONPLATLIBDIR": "lib64",
        "LANG": "C.UTF-8",
    }
    env = kamailio_environment(Path("/run/edge/routing.json"), base=caller)
    assert env == {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONHOME": "/usr",
        "LANG": "C.UTF-8",
        runtime.ENV_VAR: "/run/edge/routing.json",
    }
    assert caller["PATH"].startswith("/root/.pyenv")  # the caller's mapping is not changed


def test_the_ansible_units_give_kamailio_the_same_interpreter_environment() -> None:
    data = yaml.safe_load((REPO / "ansible" / "roles" / "kamailio" / "vars" / "main.yml").read_text())
    environment = data["kamailio_service"]["environment"]
    assert environment["PATH"] == KAMAILIO_PATH
    assert environment["PYTHONHOME"] == EMBEDDED_PYTHON_HOME


def test_a_foreign_c_extension_is_reported_in_one_line_naming_the_standard_library() -> None:
    fault = embedded_python_fault(FOREIGN_SSL)
    assert fault is not None and "\n" not in fault
    assert fault.startswith(
        "Kamailio's app_python3 loaded the standard library of /root/.pyenv/versions/3.11.7/lib/python3.11, "
        "not /usr/lib/python3.11 (another python3 first on PATH, or PYTHONHOME): "
        "/root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so: "
        "undefined symbol: _PyModule_Add; "
    )
    assert "PATH=/usr/sbin:/usr/bin:/sbin:/bin and PYTHONHOME=/usr" in fault


def test_a_missing_standard_library_is_reported_from_cpythons_path_dump() -> None:
    fault = embedded_python_fault(NO_STDLIB)
    assert fault is not None and "\n" not in fault
    assert fault.startswith("Kamailio's app_python3 loaded the standard library of /nonexistent/lib/python3.11, ")
    assert ("Fatal Python error: init_fs_encoding: failed to get the Python codec of the filesystem encoding "
            "(ModuleNotFoundError: No module named 'encodings')") in fault


def test_a_traceback_through_a_foreign_standard_library_names_it() -> None:
    output = FOREIGN_SSL.replace("ImportError: /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/"
                                 "_ssl.cpython-311-x86_64-linux-gnu.so: undefined symbol: _PyModule_Add",
                                 "AttributeError: module 'enum' has no attribute 'global_enum'")
    fault = embedded_python_fault(output)
    assert fault is not None
    assert "standard library of /root/.pyenv/versions/3.11.7/lib/python3.11, not /usr/lib/python3.11" in fault
    assert "AttributeError: module 'enum' has no attribute 'global_enum'" in fault


def test_debians_own_standard_library_is_no_fault() -> None:
    assert embedded_python_fault(OWN_ERROR) is None
    assert embedded_python_fault(FOREIGN_SSL.replace("/root/.pyenv/versions/3.11.7", "/usr")) is None
    assert embedded_python_fault("") is None


def test_status_shows_a_sentinel_sets_master_first_and_unhealthy_when_no_sentinel_answers(tmp_path: Path) -> None:
    from routing.ops.services import sentinel_master
    from tests.helpers import free_port

    dead = f"127.0.0.1:{free_port()}"
    settings = Settings.model_validate({"run_dir": str(tmp_path),
                                        "redis": {"manage": False, "sentinels": [dead], "master_name": "store"}})
    state = sentinel_master(settings)
    assert (state.name, state.pid, state.running, state.healthy) == ("redis", None, False, False)
    assert state.detail.startswith(f"no PONG from the master of store (Sentinels {dead}): ")


def test_status_shows_each_node_of_an_rtpengine_set(tmp_path: Path) -> None:
    """A node that answers ng ping (a UDP responder here) is healthy, one where nothing listens is not;
    none without a set."""
    import socket
    import threading

    from routing.ops.services import rtpengine_nodes
    from tests.helpers import free_port

    live = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    live.bind(("127.0.0.1", 0))
    live_port = live.getsockname()[1]

    def pong() -> None:
        data, peer = live.recvfrom(4096)
        live.sendto(data.split(b" ", 1)[0] + b" d6:result4:ponge", peer)

    threading.Thread(target=pong, daemon=True).start()
    dead = free_port("127.0.0.1", kind=socket.SOCK_DGRAM)
    settings = Settings.model_validate({"run_dir": str(tmp_path), "rtpengine": {"nodes": [
        {"address": "127.0.0.1", "ng_port": live_port}, {"address": "127.0.0.1", "ng_port": dead}]}})
    try:
        states = rtpengine_nodes(settings)
    finally:
        live.close()
    assert [(s.name, s.pid, s.healthy) for s in states] == [
        (f"rtpengine udp:127.0.0.1:{live_port}", None, True),
        (f"rtpengine udp:127.0.0.1:{dead}", None, False)]
    assert states[1].detail == f"ng no answer from udp:127.0.0.1:{dead} (a node of the set)"
    assert rtpengine_nodes(Settings.model_validate({"run_dir": str(tmp_path)})) == []

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
