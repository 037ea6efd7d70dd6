"""``edgectl account``: accounts, the optional grouping of trunks, agents, DIDs and routes of one
customer or team, with its own limits (docs/identity.md#accounts)."""

from __future__ import annotations

import time
from decimal import Decimal

import click
from rich.console import Console
from rich.table import Table

from routing.call.cdr import COST_PLACES
from routing.tables import admin, keys
from routing.tables.calls import lease_counts
from routing.tables.model import Account, DataError, parse_rate
from . import AppContext, emit_json, handle_errors, pass_app

__all__ = ["account"]


@click.group()
def account() -> None:
    """Accounts: trunks and agents grouped per customer, with per-account limits and a spend cap."""


@account.command("add")
@click.argument("name")
@click.option("--max-calls", type=int, default=None, help="Concurrent calls of the whole account; default unlimited.")
@click.option("--max-cps", type=float, default=None, help="New calls per second of the account; default unlimited.")
@click.option("--daily-spend-cap", default=None, metavar="AMOUNT",
              help="Spend allowed per UTC day (currency units); past it, the account's agents place no new call.")
@click.option("--replace", is_flag=True, help="Overwrite an existing account's limits.")
@pass_app
@handle_errors
def add(app: AppContext, name: str, max_calls: int | None, max_cps: float | None, daily_spend_cap: str | None,
        replace: bool) -> None:
    """Add account NAME (or change its limits with --replace)."""
    if max_calls is not None and max_calls < 0:
        raise DataError(f"account {name!r} max_calls: must be >= 0, got {max_calls}")
    if max_cps is not None and not max_cps > 0:
        raise DataError(f"account {name!r} max_cps: must be a positive number, got {max_cps}")
    cap = None if daily_spend_cap is None else parse_rate(daily_spend_cap, f"account {name!r} daily_spend_cap")
    written = admin.put_account(app.redis(), Account(name, max_calls, max_cps, cap), replace=replace)
    click.echo(f"account {written.name!r} saved")


def _spend_today(app: AppContext, names: list[str]) -> dict[str, str]:
    day = time.strftime("%Y%m%d", time.gmtime())
    values = app.redis().mget([keys.account_spend(n, day) for n in names]) if names else []
    return {n: str(Decimal(int(v or 0)).scaleb(-COST_PLACES).quantize(Decimal(1).scaleb(-COST_PLACES)))
            for n, v in zip(names, values)}


def _rows(app: AppContext, accounts: list[Account]) -> list[dict[str, object]]:
    counts = lease_counts(app.redis())
    spent = _spend_today(app, [a.name for a in accounts])
    return [{**admin.account_dict(a, counts.get(keys.account_lease(a.name), 0)), "spend_today": spent[a.name]}
            for a in accounts]


def _print(rows: list[dict[str, object]], title: str) -> None:
    table = Table("name", "active", "max calls", "max cps", "spend today", "daily spend cap", title=title)
    for r in rows:
        table.add_row(str(r["name"]), str(r["active"]), "-" if r["max_calls"] is None else str(r["max_calls"]),
                      "-" if r["max_cps"] is None else f"{r['max_cps']:g}", str(r["spend_today"]),
                      "-" if r["daily_spend_cap"] is None else str(r["daily_spend_cap"]))
    Console().print(table)


@account.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
@handle_errors
def list_(app: AppContext, as_json: bool) -> None:
    """List every account with its calls now and its spend today."""
    rows = _rows(app, admin.list_accounts(app.redis()))
    if as_json:
        emit_json(rows)
        return
    _print(rows, "accounts")


@account.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
@handle_errors
def show(app: AppContext, name: str, as_json: bool) -> None:
    """Show account NAME, with its trunks and agents."""
    found = admin.get_account(app.redis(), name)
    if found is None:
        raise DataError(f"no account {name!r}")
    row = _rows(app, [found])[0]
    row["trunks"] = [t.name for t in admin.list_trunks(app.redis()) if t.account == name]
    row["agents"] = [a.name for a in admin.list_agents(app.redis()) if a.account == name]
    if as_json:
        emit_json(row)
        return
    _print([row], f"account {name}")
    click.echo(f"trunks: {', '.join(row['trunks']) or '-'}")  # type: ignore[arg-type]
    click.echo(f"agents: {', '.join(row['agents']) or '-'}")  # type: ignore[arg-type]


@account.command("rm")
@click.argument("name")
@pass_app
@handle_errors
def rm(app: AppContext, name: str) -> None:
    """Remove account NAME (refused while a trunk or agent names it)."""
    admin.remove_account(app.redis(), name)
    click.echo(f"account {name!r} removed")
