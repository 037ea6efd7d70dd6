"""``edgectl ban``: the sources banned on every node (routing/monitor/bansync.py).

``list`` reads the shared bans in redis (who banned, why, for how much longer); ``remove`` lifts
one everywhere: its redis key goes at once, this node's Kamailio forgets it at once, and every
other node's monitor drops its copy within a second.
"""

from __future__ import annotations

import ipaddress

import click
from rich.console import Console
from rich.table import Table

from routing.ops import kamrpc
from routing.monitor.bansync import BAN_TABLE
from routing.tables import keys
from . import AppContext, emit_json, fail, handle_errors, pass_app

__all__ = ["ban"]


@click.group()
def ban() -> None:
    """Sources banned for flooding, password guessing or scanning, on every node."""


@ban.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the bans as JSON.")
@pass_app
@handle_errors
def list_(app: AppContext, as_json: bool) -> None:
    """The banned sources: address, the node that banned it, the reason, seconds left."""
    client = app.redis()
    rows = []
    for key in sorted(client.scan_iter(keys.BAN_PATTERN, count=1000)):
        value, ttl = client.get(key), client.ttl(key)
        if value is None:
            continue  # expired meanwhile
        node, _, reason = value.partition("|")
        rows.append({"address": key.split(":", 2)[2], "node": node, "reason": reason, "expires_in_s": max(ttl, 0)})
    if as_json:
        emit_json(rows)
        return
    table = Table("address", "banned by", "reason", "expires in (s)", title="bans")
    for row in rows:
        table.add_row(row["address"], row["node"], row["reason"], str(row["expires_in_s"]))
    Console().print(table)


@ban.command("remove")
@click.argument("address")
@pass_app
@handle_errors
def remove(app: AppContext, address: str) -> None:
    """Lift the ban of ADDRESS on every node."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise fail(f"{address!r} is not an IP address") from None
    existed = app.redis().delete(keys.ban(address))
    try:
        kamrpc.call(app.settings.run_dir, "htable.delete", BAN_TABLE, address)
    except kamrpc.RpcError as exc:
        if not existed:
            raise fail(f"{address} is not banned ({exc})") from None
    click.echo(f"ban of {address} lifted on every node")
