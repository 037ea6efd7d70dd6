"""``edgectl route``: outbound least-cost routes (prefix -> trunk, rate, priority)."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from routing.tables import admin
from routing.tables.model import DataError, RouteEntry, check_prefix, parse_rate
from . import AppContext, emit_json, handle_errors, pass_app

__all__ = ["route", "parse_prefix"]


def parse_prefix(text: str) -> str:
    """``+1415``, ``1415`` (read as ``+1415``) or ``+`` (the default route) -> ``+1415``.

    Raises:
        DataError: anything but an optional ``+`` and up to 15 digits.
    """
    value = text.strip()
    if value.isdigit():
        value = "+" + value
    return check_prefix(value)


def _print(entries: list[RouteEntry], title: str) -> None:
    table = Table("prefix", "trunk", "rate/min", "priority", "shared", title=title)
    for e in entries:
        table.add_row(e.prefix, e.trunk, str(e.rate), str(e.priority), "yes" if e.shared else "")
    Console().print(table)


@click.group()
def route() -> None:
    """Outbound routes: which trunks serve a destination prefix, at what rate."""


@route.command("add")
@click.argument("prefix")
@click.option("--trunk", "trunk_name", required=True, metavar="NAME", help="Trunk offered for the prefix.")
@click.option("--rate", required=True, metavar="RATE_PER_MINUTE", help="Cost per minute, e.g. 0.0045.")
@click.option("--priority", type=int, default=10, show_default=True, help="Tie-breaker at equal rate; lower first.")
@click.option("--shared", is_flag=True,
              help="Agents of every account may use this entry, not only those of the trunk's account.")
@click.option("--replace", is_flag=True, help="Overwrite the trunk's existing entry on this prefix.")
@pass_app
@handle_errors
def add(app: AppContext, prefix: str, trunk_name: str, rate: str, priority: int, shared: bool, replace: bool) -> None:
    """Route PREFIX (e.g. +1415; '+' = default route) over a trunk."""
    entry = RouteEntry(parse_prefix(prefix), trunk_name, parse_rate(rate, "--rate"), priority, shared)
    written = admin.put_route(app.redis(), entry, replace=replace)
    click.echo(f"route {written.prefix} via {written.trunk!r} saved: rate={written.rate} priority={written.priority}"
               + (" shared" if written.shared else ""))


@route.command("list")
@click.argument("prefix", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
@handle_errors
def list_(app: AppContext, prefix: str | None, as_json: bool) -> None:
    """List every route (or only those of PREFIX)."""
    entries = admin.list_routes(app.redis(), None if prefix is None else parse_prefix(prefix))
    if as_json:
        emit_json([admin.route_dict(e) for e in entries])
        return
    _print(entries, "routes")


@route.command("show")
@click.argument("prefix")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
@handle_errors
def show(app: AppContext, prefix: str, as_json: bool) -> None:
    """Show the trunks of exactly PREFIX, in least-cost order."""
    value = parse_prefix(prefix)
    entries = admin.list_routes(app.redis(), value)
    if not entries:
        raise DataError(f"no route {value!r}")
    if as_json:
        emit_json([admin.route_dict(e) for e in entries])
        return
    _print(entries, f"route {value}")


@route.command("rm")
@click.argument("prefix")
@click.option("--trunk", "trunk_name", default=None, metavar="NAME", help="Remove only this trunk from the prefix.")
@pass_app
@handle_errors
def rm(app: AppContext, prefix: str, trunk_name: str | None) -> None:
    """Remove PREFIX (all its trunks, or only --trunk)."""
    value = parse_prefix(prefix)
    admin.remove_route(app.redis(), value, trunk_name)
    click.echo(f"route {value}" + (f" via {trunk_name!r}" if trunk_name else "") + " removed")
