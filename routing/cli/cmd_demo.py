"""``edgectl demo``: start the embedded default edge and place sample calls through it."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from routing.ops import services
from routing.ops.demo import SAMPLE, run_demo
from . import AppContext, fail, handle_errors, pass_app


@click.command()
@click.option("--calls", default=3, show_default=True, type=click.IntRange(1, 10), help="Calls per direction.")
@pass_app
@handle_errors
def demo(app: AppContext, calls: int) -> None:
    """Start the edge, provision a sample trunk/agent/DID/route, place SIPp calls both ways, print the outcome."""
    console = Console(width=140)
    services.up(app.settings)
    host, port = app.settings.sip_target
    console.print(f"edge up on {host}:{port}; sample trunk {SAMPLE['trunk']}, agent {SAMPLE['agent']}, DID {SAMPLE['did']}")
    outcomes = run_demo(app.settings, app.redis(), calls=calls)
    table = Table("scenario", "placed", "answered", "rejected", "SIP final responses", "notes")
    for o in outcomes:
        codes = ", ".join(f"{n}x {code}" for code, n in sorted(o.codes.items())) or "-"
        table.add_row(o.name, str(o.placed), str(o.answered), str(o.rejected), codes, o.note)
    console.print(table)
    console.print("The edge keeps running: `edgectl status`, `edgectl calls`, `edgectl down` to stop it.")
    expected = [calls, calls, 0, 0]
    if [o.answered for o in outcomes[:4]] != expected or outcomes[-1].note != "0 (must be 0)":
        raise fail("demo calls did not complete as expected (see the table above)")
