"""The edge starts from any shell: with another Python of Debian's version first on ``PATH``
(pyenv's ``exec`` puts its ``bin/`` first; a ``/usr/local/bin/python3`` does the same), Kamailio's
embedded interpreter would take that Python's standard library (issue 12, item 6).

The foreign Python is a real one when this machine has one: pyenv's (``$PYENV_ROOT`` or
``~/.pyenv``) or ``/usr/local/bin`` of Debian's minor version with its own standard library.
Without one, a foreign prefix is built: a ``python3`` whose ``lib/python3.N`` holds an
``encodings`` package that cannot be imported, which an interpreter that takes its prefix from
``PATH`` loads and dies of.  Either way the first test proves that it breaks a Kamailio started
with the caller's environment, so the tests after it prove the fix, never a harmless ``PATH``.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from routing.ops import services
from routing.cli import main as edgectl_main
from tests.sipp import uac, uas

from .conftest import AGENT_IP, CARRIER_A, DID, Edge

#: the interpreter app_python3 embeds (libpython3.N of Debian's python3)
DEBIAN_PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class ForeignPython:
    """A ``bin`` directory to put first on ``PATH`` whose ``python3`` has another standard library.

    Attributes:
        bin_dir: the directory.
        stdlib: that Python's standard library (``<prefix>/lib/python3.N``).
        origin: where it comes from, for messages.
    """

    bin_dir: Path
    stdlib: Path
    origin: str


def _debian_version() -> str:
    out = subprocess.run([DEBIAN_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, check=True, timeout=30)
    return out.stdout.strip()


def _real_foreign_python(version: str, scratch: Path) -> ForeignPython | None:
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(glob.glob(str(pyenv_root / "versions" / f"{version}.*" / "bin" / f"python{version}")))
    candidates.append(f"/usr/local/bin/python{version}")
    for exe in candidates:
        if not os.access(exe, os.X_OK):
            continue
        probe = subprocess.run(
            [exe, "-I", "-c", "import sys, sysconfig; print('%d.%d' % sys.version_info[:2]); "
                              "print(sys.base_prefix); print(sysconfig.get_path('stdlib'))"],
            capture_output=True, text=True, timeout=30,
        )
        if probe.returncode != 0:
            continue
        found_version, prefix, stdlib = probe.stdout.split()
        if found_version != version or prefix == "/usr" or not (Path(stdlib) / "os.py").exists():
            continue
        bin_dir = Path(exe).parent
        if not (bin_dir / "python3").exists():  # the embedded interpreter looks for `python3`
            bin_dir = scratch / "foreign-bin"
            bin_dir.mkdir()
            (bin_dir / "python3").symlink_to(exe)
        return ForeignPython(bin_dir, Path(stdlib), exe)
    return None


def _built_foreign_python(version: str, scratch: Path) -> ForeignPython:
    prefix = scratch / "foreign-prefix"
    stdlib = prefix / "lib" / f"python{version}"
    (stdlib / "encodings").mkdir(parents=True)
    (stdlib / "lib-dynload").mkdir()
    (stdlib / "os.py").write_text("")  # CPython's landmark of a prefix (Modules/getpath.py)
    (stdlib / "encodings" / "__init__.py").write_text('raise ImportError("the standard library of a foreign python3")\n')
    (prefix / "bin").mkdir()
    (prefix / "bin" / "python3").write_text("#!/bin/sh\nexit 1\n")
    (prefix / "bin" / "python3").chmod(0o755)
    return ForeignPython(prefix / "bin", stdlib, f"a built foreign prefix {prefix}")


@pytest.fixture(scope="module")
def foreign_python(tmp_path_factory: pytest.TempPathFactory) -> ForeignPython:
    scratch = tmp_path_factory.mktemp("foreign-python")
    version = _debian_version()
    return _real_foreign_python(version, scratch) or _built_foreign_python(version, scratch)


def _shell_env(foreign: ForeignPython) -> dict[str, str]:
    """The environment of a shell where ``foreign``'s python3 comes first on PATH."""
    return dict(os.environ, PATH=f"{foreign.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}")


def _edgectl(edge: Edge, foreign: ForeignPython, *args: str) -> subprocess.CompletedProcess[str]:
    settings = Path(edge.settings.run_dir).parent / "settings.yaml"
    return subprocess.run([str(Path(sys.executable).parent / "edgectl"), "--settings", str(settings), *args],
                          capture_output=True, text=True, timeout=180, env=_shell_env(foreign))


def test_a_foreign_python3_first_on_path_breaks_kamailio_and_config_check_names_it_in_one_line(
    clean_edge: Edge, foreign_python: ForeignPython, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kamailio started as before the fix: the caller's environment, the foreign python3 first on PATH
    shell = _shell_env(foreign_python)
    monkeypatch.setattr(services, "kamailio_environment",
                        lambda runtime_json=None, base=None: dict(shell, BYOC_EDGE_RUNTIME=str(runtime_json)))
    settings = Path(clean_edge.settings.run_dir).parent / "settings.yaml"
    result = CliRunner().invoke(edgectl_main, ["--settings", str(settings), "config", "check"])
    assert result.exit_code == 1, f"{foreign_python.origin} did not break Kamailio: {result.output}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"Kamailio's app_python3 loaded the standard library of {foreign_python.stdlib}, not /usr/lib/python" \
        in lines[0], lines[0]


def test_config_check_passes_from_a_shell_with_a_foreign_python3_first(
    clean_edge: Edge, foreign_python: ForeignPython
) -> None:
    result = _edgectl(clean_edge, foreign_python, "config", "check")
    assert result.returncode == 0, f"with {foreign_python.origin} first on PATH: {result.stderr}"
    assert "plugin loaded" in result.stdout


def test_edgectl_up_from_a_shell_with_a_foreign_python3_first_routes_calls(
    clean_edge: Edge, foreign_python: ForeignPython
) -> None:
    edge = clean_edge
    down = _edgectl(edge, foreign_python, "down")
    assert down.returncode == 0, down.stderr
    up = _edgectl(edge, foreign_python, "up", "--json")
    assert up.returncode == 0, f"with {foreign_python.origin} first on PATH: {up.stderr}"
    states = {s["name"]: s for s in json.loads(up.stdout)}
    assert all(s["healthy"] for s in states.values()), states
    environ = Path(f"/proc/{states['kamailio']['pid']}/environ").read_bytes().split(b"\0")
    assert b"PYTHONHOME=/usr" in environ and b"PATH=" + services.KAMAILIO_PATH.encode() in environ
    # the plugin routes a call: carrier -> DID -> agent through the Kamailio started from that shell
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, 5080)], max_calls=4)
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"], max_calls=2)
    edge.did(DID, "carrier-a", "bot")
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, answer_ms=100)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, hold_ms=500)
    assert carrier.wait() == 0, carrier.output()
    assert agent.wait() == 0, agent.output()
    assert carrier.final_status() == [(200, "OK")]
