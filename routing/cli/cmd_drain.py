"""``edgectl drain`` and ``undrain``: take the node out of service and back (routing/ops/drain.py)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import click

from routing.ops import drain as node_drain
from routing.ops.kamrpc import RpcError
from . import AppContext, emit_json, fail, pass_app

#: exit status of ``drain --wait`` when calls are still left at the timeout (1 is any other error)
EXIT_CALLS_LEFT = 3


def _describe(state: node_drain.DrainState) -> str:
    since = (datetime.fromtimestamp(state.since_s, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
             if state.since_s else "")
    if not state.running:
        return ("kamailio does not answer: it will start drained" if state.draining
                else "kamailio does not answer: it will start in service")
    calls = f"{state.calls_left} call{'' if state.calls_left == 1 else 's'}"
    return f"draining since {since}: {calls} left" if state.draining else f"in service: {calls} in progress"


def _as_json(state: node_drain.DrainState, **extra: object) -> dict[str, object]:
    return {"draining": state.draining, "since_s": state.since_s, "calls_left": state.calls_left,
            "persisted": state.persisted, "kamailio_answers": state.running, **extra}


@click.command()
@click.option("--wait", "wait", is_flag=True, help="Return once no call is left (or at --timeout).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0), default=900.0, show_default=True,
              help="With --wait: give up after this many seconds (exit status 3, the calls left are named).")
@click.option("--json", "as_json", is_flag=True, help="Print the drain state as JSON.")
@pass_app
def drain(app: AppContext, wait: bool, timeout_s: float, as_json: bool) -> None:
    """Take this node out of service: new INVITEs and OPTIONS get 503 Node Draining with Retry-After,
    calls in progress finish.  The node stays drained across a Kamailio restart until `edgectl undrain`."""
    try:
        before = node_drain.state(app.settings)
        state = node_drain.drain(app.settings)
    except OSError as exc:
        raise fail(f"cannot write {app.settings.run_dir / node_drain.DRAIN_FILE}: {exc.strerror}") from None
    waited = 0.0
    if wait and state.running:
        started = time.monotonic()
        try:
            node_drain.wait_drained(app.settings, timeout_s)
        except RpcError as exc:
            raise fail(str(exc)) from None
        waited = time.monotonic() - started
        state = node_drain.state(app.settings)
    if as_json:
        emit_json(_as_json(state, was_draining=before.draining, waited_s=round(waited, 1)))
    else:
        click.echo(_describe(state))
    if wait and state.calls_left:
        if not as_json:
            click.echo(f"edgectl: timed out after {timeout_s:g} s: {state.calls_left} calls left", err=True)
        raise SystemExit(EXIT_CALLS_LEFT)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the drain state as JSON.")
@pass_app
def undrain(app: AppContext, as_json: bool) -> None:
    """Put this node back in service (new calls and OPTIONS answered again)."""
    try:
        state = node_drain.undrain(app.settings)
    except OSError as exc:
        raise fail(f"cannot remove {app.settings.run_dir / node_drain.DRAIN_FILE}: {exc.strerror}") from None
    except RpcError as exc:
        raise fail(f"{exc}; drain.cfg is removed: kamailio starts in service") from None
    if as_json:
        emit_json(_as_json(state))
    else:
        click.echo(_describe(state))


COMMANDS = [drain, undrain]
