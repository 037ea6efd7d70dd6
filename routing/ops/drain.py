"""Take a node out of service and back (``edgectl drain``/``undrain``), and tell how far a drain is.

A drain is one shared variable of the running Kamailio, ``$shv(edge_drain)``
(:data:`routing.kamailio.callstate.DRAIN_SHV_NAME`): 0 in service, else the time the drain began
(epoch s).  The native request route (``templates/kamailio.routes.j2``, route ``DRAINING``) answers new
INVITEs and out-of-dialog OPTIONS ``503 Node Draining`` with ``Retry-After: drain.retry_after_s``
while it is set; in-dialog requests never reach that test, so calls in progress finish normally.
It costs one integer comparison per initial request.

The flag is set over the ctl socket (RPC ``pv.shvSet``, :mod:`routing.ops.kamrpc`) and also written to
``<run_dir>/drain.cfg``, which ``kamailio.cfg`` imports at start (``import_file``): **a drained node
that restarts stays drained** until ``edgectl undrain`` removes the file.  An operator who restarts a
node to take it out of service, or a deploy that restarts it mid-drain, expects it to stay out; a node
that comes back in service on its own would take calls before anyone checked it.

"Calls left" is the number of dialogs the node tracks in any state (RPC ``dlg.stats_active``, field
``all``: being set up, ringing, answered): each holds slots and, once answered, media.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from routing.kamailio.callstate import DRAIN_SHV_NAME
from routing.ops import kamrpc
from routing.ops.settings import Settings

__all__ = ["DRAIN_FILE", "DrainState", "drain", "undrain", "state", "wait_drained", "calls_left"]

#: file in run_dir that keeps a node drained across a Kamailio restart (imported by kamailio.cfg)
DRAIN_FILE = "drain.cfg"
#: time (s) between two readings of the calls left while waiting
POLL_S = 0.5


@dataclass(frozen=True, slots=True)
class DrainState:
    """Where a node stands.

    Attributes:
        draining: the running Kamailio refuses new calls (or, when it is not running, will at start).
        since_s: when the drain began (epoch s), None in service.
        calls_left: dialogs still tracked by the running Kamailio; None when it does not answer.
        persisted: ``drain.cfg`` exists (the node starts drained).
        running: the running Kamailio answered the RPCs.
    """

    draining: bool
    since_s: int | None
    calls_left: int | None
    persisted: bool
    running: bool


def _file(settings: Settings) -> Path:
    return Path(settings.run_dir) / DRAIN_FILE


def _write_file(settings: Settings, since_s: int) -> None:
    """``drain.cfg``: one Kamailio cfg line that sets the flag at start, written atomically, world-readable
    (Kamailio may run as another user than edgectl)."""
    path = _file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        "# written by `edgectl drain`, removed by `edgectl undrain`: this node starts drained "
        "(docs/operations.md#draining-a-node)\n"
        f'modparam("pv", "shvset", "{DRAIN_SHV_NAME}=i:{since_s}")\n', encoding="utf-8")
    tmp.chmod(0o644)
    os.replace(tmp, path)


def _flag(settings: Settings) -> int:
    """The running Kamailio's drain flag (0 in service, else epoch s).  Raises kamrpc.RpcError."""
    value = kamrpc.fields(kamrpc.call(settings.run_dir, "pv.shvGet", DRAIN_SHV_NAME)).get("value", "0")
    try:
        return int(value)
    except ValueError:
        raise kamrpc.RpcError(f"unexpected value of $shv({DRAIN_SHV_NAME}): {value!r}") from None


def calls_left(settings: Settings) -> int:
    """Dialogs the running Kamailio tracks, in any state (RPC ``dlg.stats_active``, field ``all``).

    Raises:
        kamrpc.RpcError: Kamailio does not answer.
    """
    value = kamrpc.fields(kamrpc.call(settings.run_dir, "dlg.stats_active")).get("all", "")
    if not value.isdigit():
        raise kamrpc.RpcError(f"dlg.stats_active gave no dialog count: {value!r}")
    return int(value)


def state(settings: Settings) -> DrainState:
    """The node's drain state; a Kamailio that does not answer gives ``running=False`` and the file's word."""
    persisted = _file(settings).exists()
    try:
        flag = _flag(settings)
        left = calls_left(settings)
    except kamrpc.RpcError:
        since = int(_file(settings).stat().st_mtime) if persisted else None
        return DrainState(persisted, since, None, persisted, False)
    return DrainState(flag != 0, flag or None, left, persisted, True)


def drain(settings: Settings, now_s: Callable[[], float] = time.time) -> DrainState:
    """Take the node out of service: write ``drain.cfg``, then set the running Kamailio's flag (a drain
    already under way keeps its start time).  A Kamailio that is not running starts drained.

    Raises:
        OSError: ``run_dir`` is not writable.
    """
    before = state(settings)
    since = before.since_s if before.draining and before.since_s else int(now_s())
    _write_file(settings, since)
    if before.running and not before.draining:
        try:
            kamrpc.call(settings.run_dir, "pv.shvSet", DRAIN_SHV_NAME, "int", since)
        except kamrpc.RpcError:
            pass  # it stopped meanwhile: it starts drained from the file
    return state(settings)


def undrain(settings: Settings) -> DrainState:
    """Put the node back in service: remove ``drain.cfg``, then clear the running Kamailio's flag.

    Raises:
        kamrpc.RpcError: the file is removed but Kamailio answers no RPC (stopped, or still starting:
            it then starts in service, unless it read the file before it was removed; run undrain again
            once it answers).
    """
    _file(settings).unlink(missing_ok=True)
    kamrpc.call(settings.run_dir, "pv.shvSet", DRAIN_SHV_NAME, "int", 0)
    return state(settings)


def wait_drained(settings: Settings, timeout_s: float, poll_s: float = POLL_S,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> int:
    """Wait until the running Kamailio tracks no dialog, or ``timeout_s`` passed; returns the calls left.

    Zero must be read twice ``poll_s`` apart: an INVITE routed just before the drain flag was set has
    its dialog created a moment later.

    Raises:
        kamrpc.RpcError: Kamailio does not answer.
    """
    deadline = clock() + timeout_s
    zeros = 0
    while True:
        left = calls_left(settings)
        zeros = zeros + 1 if left == 0 else 0
        if zeros >= 2 or clock() >= deadline:
            return left
        sleep(poll_s)
