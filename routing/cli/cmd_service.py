"""``edgectl up``, ``down`` and ``status``: run the edge's processes."""

from __future__ import annotations

import dataclasses

import click
from rich.console import Console
from rich.table import Table

from routing.ops import services
from . import AppContext, emit_json, fail, pass_app


def _print_states(states: list[services.ServiceState], as_json: bool) -> None:
    if as_json:
        emit_json([dataclasses.asdict(s) for s in states])
        return
    table = Table("service", "pid", "state", "detail")
    for s in states:
        state = "up" if s.healthy else ("running, not answering" if s.running else "down")
        if s.draining:
            state += ", draining"
        table.add_row(s.name, str(s.pid or "-"), state, s.detail)
    Console().print(table)
    kamailio = next((s for s in states if s.name == "kamailio"), None)
    if kamailio is not None and kamailio.calls_left is not None:
        click.echo(("draining (edgectl undrain puts it back in service): " if kamailio.draining else "in service: ")
                   + f"{kamailio.calls_left} call{'' if kamailio.calls_left == 1 else 's'} "
                   + ("left" if kamailio.draining else "in progress"))
    elif kamailio is not None and kamailio.draining:
        click.echo("draining: kamailio will start drained (edgectl undrain puts it back in service)")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the service states as JSON.")
@pass_app
def up(app: AppContext, as_json: bool) -> None:
    """Start redis (when managed), rtpengine and Kamailio in the background; return once the edge answers SIP."""
    states = services.up(app.settings)
    _print_states(states, as_json)
    if not all(s.healthy for s in states):
        raise fail("some services are not healthy")


@click.command()
@pass_app
def down(app: AppContext) -> None:
    """Stop Kamailio, rtpengine and the managed redis."""
    stopped = services.down(app.settings)
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the service states as JSON.")
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """Show whether each service runs and answers its protocol; exit 1 when one does not."""
    states = services.status(app.settings)
    _print_states(states, as_json)
    if not all(s.healthy for s in states):
        raise SystemExit(1)


@click.command()
@click.argument("service", type=click.Choice(["redis", "rtpengine", "kamailio", "monitor"]))
@click.option("--json", "as_json", is_flag=True, help="Print the service state as JSON.")
@pass_app
def restart(app: AppContext, service: str, as_json: bool) -> None:
    """Stop SERVICE and start it again from the settings (e.g. the monitor after a health change)."""
    state = services.restart(app.settings, service)
    _print_states([state], as_json)
    if not state.healthy:
        raise fail(f"{service} is not healthy")


COMMANDS = [up, down, status, restart]
