"""Per-trunk TLS client profiles: the CA that verifies the ``tls`` gateways of a trunk with a
``tls_ca`` override, as ``[client:any]`` sections of Kamailio's ``tls.cfg`` selected by
``server_id`` (see :class:`ClientProfile`).  The profiles are written from the trunks in
redis by ``edgectl up`` (before Kamailio starts) and by every ``edgectl trunk add/rm`` on a
node with a TLS listener, followed by the ``tls.reload`` RPC.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from routing.tables.model import Transport, Trunk

__all__ = ["ClientProfile", "client_profiles", "refresh"]


@dataclass(frozen=True, slots=True)
class ClientProfile:
    """One ``[client:any]`` section selected by ``server_id`` = the trunk name: the edge
    connecting to a tls gateway of that trunk.

    Kamailio 5.6 picks a client profile by the connection's *local* address (useless for an
    outbound connection from an ephemeral port) or by ``server_id``/``server_name`` from the
    ``$xavp(tls=>...)`` set before relaying (tls module, ``xavp_cfg``); the plugin sets
    ``server_id`` to the trunk's name for every tls hop.  A ``client:any`` section needs a
    ``server_name``: a name under ``.invalid`` that matches no real SNI.

    Attributes:
        trunk: the trunk (its ``server_id``).
        ca_list: PEM file of the CAs trusted for its gateways.
    """

    trunk: str
    ca_list: str

    @property
    def server_name(self) -> str:
        """The section's match-only server name."""
        return f"{self.trunk}.trunk.byoc-edge.invalid"


def client_profiles(trunks: Iterable[Trunk]) -> list[ClientProfile]:
    """The client profiles of every trunk with a ``tls_ca`` and at least one ``tls`` gateway,
    sorted by trunk name."""
    return [ClientProfile(t.name, t.tls_ca) for t in sorted(trunks, key=lambda t: t.name)
            if t.tls_ca and any(g.transport is Transport.TLS for g in t.gateways)]


def refresh(settings: object, trunks: Iterable[Trunk], reload: bool) -> bool:
    """Rewrite ``<run_dir>/tls.cfg`` with the trunks' client profiles when it changed, and with
    ``reload`` ask the running Kamailio to load it (``kamcmd tls.reload``).

    Returns:
        True when the file changed.

    Raises:
        RuntimeError: ``tls.reload`` failed (its output, one line).
    """
    from routing.ops.render import render  # render imports settings; keep this module light

    text = render(settings, tls_clients=client_profiles(trunks))["tls.cfg"]  # type: ignore[arg-type]
    target = Path(settings.run_dir) / "tls.cfg"  # type: ignore[attr-defined]
    try:
        if target.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    tmp = target.with_suffix(".cfg.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    if reload:
        ctl = f"unix:{Path(settings.run_dir) / 'kamailio_ctl'}"  # type: ignore[attr-defined]
        done = subprocess.run(["kamcmd", "-s", ctl, "tls.reload"], capture_output=True, text=True, timeout=10)
        if done.returncode != 0 or "error" in done.stdout.lower():
            raise RuntimeError("tls.reload failed: " + " ".join((done.stdout + done.stderr).split()))
    return True
