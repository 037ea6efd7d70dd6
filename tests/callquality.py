"""Call quality for tests: read a call's quality from its call record, and spoil a stream on purpose.

* :func:`call_record` waits for the call record of a Call-ID (what ``edgectl cdr show`` prints)
  and :func:`recorded_quality` reads its quality with :func:`routing.call.quality.read`, the same
  reader anything built on the records uses (per-trunk quality metrics, for one).
* :func:`dropping_rtp` drops a share of the RTP packets one side sends to rtpengine, in an
  nftables table of its own that it always deletes, and counts what it dropped.

A missing ``nft`` fails the test (never skips).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import redis

from routing.tables import keys
from routing.tables.cdrstore import CdrStore
from routing.call.quality import CallQuality, read
from tests.helpers import wait_until

__all__ = ["call_record", "recorded_quality", "dropping_rtp", "Dropper"]


def call_record(client: redis.Redis, call_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """The call record of ``call_id`` (the newest attempt with that Call-ID), once it is written.

    Raises:
        AssertionError: no record within ``timeout`` seconds.
    """
    store = CdrStore(client, 86400)

    def find() -> dict[str, Any] | None:
        found = [r for r in store.records(0, int(time.time() * 1000) + 1000) if r.get("call_id") == call_id]
        return found[-1] if found else None

    return wait_until(find, timeout=timeout, interval=0.2, what=f"the call record of call-id={call_id}")


def recorded_quality(client: redis.Redis, call_id: str, timeout: float = 20.0) -> CallQuality:
    """The quality of a finished call as its call record carries it (the record's ``media``).

    Raises:
        AssertionError: no record within ``timeout`` s, or a record without a quality reading.
    """
    record = call_record(client, call_id, timeout)
    quality = read(record.get("media") or {})
    assert quality is not None, f"call record without media quality: {record}"
    return quality


def live_quality(client: redis.Redis, node: str, call_id: str) -> CallQuality | None:
    """The latest reading the media watchdog wrote into a live call's hash (None before the first)."""
    return read(client.hgetall(keys.call(node, call_id)))


@dataclass
class Dropper:
    """What :func:`dropping_rtp` installed: its table and a reading of its drop counter."""

    nft: str
    table: str

    def dropped(self) -> int:
        """RTP packets dropped so far (the rule's named counter)."""
        out = subprocess.run([self.nft, "-j", "list", "counter", "ip", self.table, "dropped"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return next(int(item["counter"]["packets"]) for item in json.loads(out)["nftables"] if "counter" in item)


@contextmanager
def dropping_rtp(table: str, to_address: str, to_ports: tuple[int, int], from_ports: tuple[int, int],
                 percent: int) -> Iterator[Dropper]:
    """Drop ``percent`` % of the RTP packets (at random, nftables ``numgen random``) sent from a
    local UDP port in ``from_ports`` to ``to_address`` on a port in ``to_ports`` (both inclusive
    ranges), in table ``ip {table}`` (hook output: loopback traffic is locally generated).  RTCP
    (RFC 3550 packet types 200-204 in the second octet, RFC 5761 section 4) is never dropped, so
    the receiving side keeps reporting.  The table is created afresh and always deleted.

    Raises:
        AssertionError: ``nft`` is missing or refuses the rules.
    """
    nft = shutil.which("nft")
    assert nft, "nft is not installed (apt-get install nftables): the loss tests need it"
    subprocess.run([nft, "delete", "table", "ip", table], capture_output=True, timeout=10)  # a crashed run's
    script = (
        f"table ip {table} {{\n"
        "  counter dropped { }\n"
        "  chain out {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f"    ip daddr {to_address} udp sport {from_ports[0]}-{from_ports[1]} udp dport {to_ports[0]}-{to_ports[1]} "
        f"@th,72,8 != 200-204 numgen random mod 100 < {percent} counter name \"dropped\" drop\n"
        "  }\n"
        "}\n"
    )
    result = subprocess.run([nft, "-f", "-"], input=script, capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, f"nft refused the loss table: {result.stderr}"
    try:
        yield Dropper(nft, table)
    finally:
        subprocess.run([nft, "delete", "table", "ip", table], check=True, capture_output=True, timeout=10)
