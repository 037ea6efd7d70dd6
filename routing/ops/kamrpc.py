"""Kamailio's RPC interface from outside the process: ``kamcmd`` on the ctl module's binrpc socket.

The edge's Kamailio listens for RPCs on ``unix:<run_dir>/kamailio_ctl`` (``templates/kamailio.cfg.j2``,
module ``ctl``); ``kamcmd`` (Debian package ``kamailio``) speaks that protocol.  Used by
``edgectl drain``/``status`` and the TLS profile reload, never on the call path.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from routing.errors import EdgeError

__all__ = ["RpcError", "ctl_address", "call", "fields"]

#: how long one RPC may take (s): the ctl socket answers in well under a millisecond when Kamailio runs
RPC_TIMEOUT_S = 5.0


class RpcError(EdgeError, RuntimeError):
    """Kamailio did not answer the RPC (not running, no ctl socket) or refused it; the message says which."""


def ctl_address(run_dir: str | Path) -> str:
    """``unix:<run_dir>/kamailio_ctl``, the ctl module's binrpc socket of the node in ``run_dir``."""
    return f"unix:{Path(run_dir) / 'kamailio_ctl'}"


def call(run_dir: str | Path, method: str, *params: str | int, timeout_s: float = RPC_TIMEOUT_S) -> str:
    """Run one RPC on the Kamailio of ``run_dir`` and return kamcmd's text output.

    An ``int`` parameter is sent as a binrpc integer, a ``str`` as a string (kamcmd's ``s:`` prefix).

    Raises:
        RpcError: kamcmd is missing, the socket does not answer within ``timeout_s``, or the RPC failed.
    """
    kamcmd = shutil.which("kamcmd") or shutil.which("kamcmd", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if kamcmd is None:
        raise RpcError("kamcmd is not installed (Debian package kamailio; run scripts/bootstrap)")
    args = [str(p) if isinstance(p, int) else f"s:{p}" for p in params]
    try:
        done = subprocess.run([kamcmd, "-s", ctl_address(run_dir), method, *args],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RpcError(f"kamailio did not answer {method} within {timeout_s:g} s on {ctl_address(run_dir)}") from None
    if done.returncode != 0 or done.stdout.lstrip().startswith("error:"):
        why = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}").splitlines()[-1]
        raise RpcError(f"kamailio RPC {method} on {ctl_address(run_dir)} failed: {why}")
    return done.stdout


def fields(output: str) -> dict[str, str]:
    """The ``name: value`` lines of kamcmd's rendering of a struct (first occurrence of each name)."""
    out: dict[str, str] = {}
    for match in re.finditer(r"^\s*([A-Za-z_][\w.]*):\s*(.*?)\s*$", output, re.M):
        out.setdefault(match.group(1), match.group(2))
    return out
