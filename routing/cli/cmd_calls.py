"""``edgectl calls``: active calls per trunk and agent, from the lease ZSETs in redis."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from routing.tables.calls import active_calls
from . import AppContext, emit_json, handle_errors, pass_app


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
@handle_errors
def calls(app: AppContext, as_json: bool) -> None:
    """Active calls per trunk and agent (counted from the concurrency leases) with their limits,
    then each call: trunk, agent, number, state, duration (answered time so far) and codecs."""
    summary = active_calls(app.redis())
    if as_json:
        emit_json(summary)
        return
    table = Table("kind", "name", "active", "limit")
    for row in summary["counts"]:
        table.add_row(row["kind"], row["name"], str(row["active"]), "-" if row["limit"] is None else str(row["limit"]))
    Console().print(table)
    if summary["calls"]:
        detail = Table("call-id", "direction", "trunk", "agent", "number", "state", "duration", "codecs (caller / callee)", "node")
        for call in summary["calls"]:
            duration = f"{call['duration_s']} s" if call["state"] == "answered" else f"ringing {call['age_s'] or 0} s"
            detail.add_row(call["call_id"], call.get("direction", ""), call.get("trunk", ""), call.get("agent", ""),
                           call.get("number", ""), call["state"], duration, call.get("codecs") or "-", call["node"])
        Console().print(detail)
