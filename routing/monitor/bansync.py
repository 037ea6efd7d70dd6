"""Bans seen by one node apply on every node (docs/security.md#bans-on-every-node).

A node's Kamailio bans a flooding, password-guessing or scanning source in its ``ipban`` htable
(value: the reason, ``flood``, ``auth`` or ``scanner``), for ``security.ban_time_s``.  Once a
second this node's monitor (:func:`sync`):

- publishes its own new bans in redis (``edge:ban:{address}`` = ``{node}|{reason}``, with the
  same lifetime), where every other node's monitor finds them;
- applies the bans other nodes published to its own Kamailio (value ``shared``, RPC
  ``htable.sets``), so a source banned anywhere gets silence everywhere within about a second;
- drops local copies whose redis key was removed (``edgectl ban remove``), so an unban applies
  everywhere too.

Nothing of this runs on the call path: Kamailio checks its own htable as before, and the
monitor reads it with ``htable.dump`` over the ctl socket (:mod:`routing.ops.kamrpc`).
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import redis

from routing.ops import kamrpc
from routing.tables import keys

__all__ = ["BAN_TABLE", "SHARED", "BanSync", "local_bans", "run"]

log = logging.getLogger("byoc_edge.bansync")

#: Kamailio's htable of banned sources (routing/kamailio/callstate.py BAN_TABLE)
BAN_TABLE = "ipban"
#: the value of a ban applied from another node (not published again)
SHARED = "shared"
_ENTRY = re.compile(r"name:\s*(\S+)\s*\n\s*value:\s*(\S*)")


def local_bans(run_dir: str | Path) -> dict[str, str]:
    """The sources Kamailio bans now, with their value (a reason, or :data:`SHARED`).

    Raises:
        kamrpc.RpcError: Kamailio did not answer.
    """
    return dict(_ENTRY.findall(kamrpc.call(run_dir, "htable.dump", BAN_TABLE)))


@dataclass
class BanSync:
    """One node's side of the shared bans.

    Attributes:
        client: the shared redis.
        run_dir: this node's run directory (its Kamailio's ctl socket).
        node: this node's name (the value of the bans it publishes).
        ban_time_s: ``security.ban_time_s``, the lifetime of a published ban (s).
        published: this node's own bans it published and still holds.
    """

    client: redis.Redis
    run_dir: str | Path
    node: str
    ban_time_s: int
    published: set[str] = field(default_factory=set)

    def sync(self) -> tuple[int, int, int]:
        """One round: (published, applied, removed) counts.

        Raises:
            kamrpc.RpcError: Kamailio did not answer.
            redis.RedisError: redis did not.
        """
        local = local_bans(self.run_dir)
        shared = {k.split(":", 2)[2] for k in self.client.scan_iter(keys.BAN_PATTERN, count=1000)}
        new = [ip for ip, value in local.items() if value != SHARED and ip not in self.published]
        if new:
            with self.client.pipeline(transaction=False) as pipe:
                for ip in new:
                    pipe.set(keys.ban(ip), f"{self.node}|{local[ip]}", ex=self.ban_time_s)
                pipe.execute()
            self.published.update(new)
            shared.update(new)
        applied = [ip for ip in shared if ip not in local]
        for ip in applied:
            kamrpc.call(self.run_dir, "htable.sets", BAN_TABLE, ip, SHARED)
        # a ban whose key is gone was lifted (edgectl ban remove) or has run out: its copies go too
        removed = [ip for ip, value in local.items() if ip not in shared and (value == SHARED or ip in self.published)]
        for ip in removed:
            kamrpc.call(self.run_dir, "htable.delete", BAN_TABLE, ip)
        self.published &= set(local) - set(removed)
        for ip in new:
            log.info("ban of %s (%s) published to every node", ip, local[ip])
        for ip in applied:
            log.info("ban of %s by another node applied here", ip)
        return len(new), len(applied), len(removed)


def run(sync: BanSync, interval_s: float, stop: threading.Event) -> None:
    """:meth:`BanSync.sync` every ``interval_s`` until ``stop``; a round that fails is logged
    and the next one tries again."""
    while not stop.wait(interval_s):
        try:
            sync.sync()
        except (kamrpc.RpcError, redis.RedisError) as exc:
            log.warning("ban sync: %s", exc)
