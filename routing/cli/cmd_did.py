"""``edgectl did``: DIDs, each owned by a trunk and bound to an agent."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from routing.tables import admin
from routing.tables.model import DataError, Did
from routing.tables.model.did import parse_fallback
from routing.call.numbers import NumberError, to_e164
from . import AppContext, emit_json, handle_errors, pass_app

__all__ = ["did", "parse_number"]


def parse_number(text: str) -> str:
    """Normalise a typed DID to E.164 with ``+`` (default number format: full numbers).

    Raises:
        DataError: not readable as E.164.
    """
    try:
        return to_e164(text)
    except NumberError as exc:
        raise DataError(f"did {text!r}: {exc}") from None


@click.group()
def did() -> None:
    """DIDs: which agent answers a number, and which trunk owns it."""


@did.command("add")
@click.argument("number")
@click.option("--trunk", "trunk_name", required=True, metavar="NAME", help="Trunk that owns the number.")
@click.option("--agent", "agent_name", required=True, metavar="NAME", help="Agent that answers it.")
@click.option("--fallback", "fallback", multiple=True, metavar="agent:NAME|uri:SIP_URI|number:E164|announce:NAME",
              help="What to try, in order, when every URI of the agent has failed (repeatable; docs/agents.md).")
@click.option("--replace", is_flag=True, help="Overwrite an existing binding.")
@pass_app
@handle_errors
def add(app: AppContext, number: str, trunk_name: str, agent_name: str, fallback: tuple[str, ...],
        replace: bool) -> None:
    """Add DID NUMBER (E.164; '+' optional, separators ignored)."""
    e164 = parse_number(number)
    steps = parse_fallback(",".join(fallback), f"did {e164} fallback")
    written = admin.put_did(app.redis(), Did(e164, trunk_name, agent_name, steps), replace=replace)
    then = f", then {', '.join(str(s) for s in written.fallback)}" if written.fallback else ""
    click.echo(f"did {written.number} saved: trunk {written.trunk!r} -> agent {written.agent!r}{then}")


@did.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
@handle_errors
def list_(app: AppContext, as_json: bool) -> None:
    """List every DID."""
    dids = admin.list_dids(app.redis())
    if as_json:
        emit_json([admin.did_dict(d) for d in dids])
        return
    table = Table("number", "trunk", "agent", "fallback", title="dids")
    for d in dids:
        table.add_row(d.number, d.trunk, d.agent, "\n".join(str(s) for s in d.fallback) or "-")
    Console().print(table)


@did.command("show")
@click.argument("number")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
@handle_errors
def show(app: AppContext, number: str, as_json: bool) -> None:
    """Show DID NUMBER."""
    e164 = parse_number(number)
    found = admin.get_did(app.redis(), e164)
    if found is None:
        raise DataError(f"no did {e164!r}")
    if as_json:
        emit_json(admin.did_dict(found))
        return
    table = Table("number", "trunk", "agent", "fallback", title=f"did {found.number}")
    table.add_row(found.number, found.trunk, found.agent, "\n".join(str(s) for s in found.fallback) or "-")
    Console().print(table)


@did.command("rm")
@click.argument("number")
@pass_app
@handle_errors
def rm(app: AppContext, number: str) -> None:
    """Remove DID NUMBER."""
    e164 = parse_number(number)
    admin.remove_did(app.redis(), e164)
    click.echo(f"did {e164} removed")
