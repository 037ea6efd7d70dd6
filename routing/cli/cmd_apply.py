"""``edgectl export`` and ``edgectl apply``: the routing tables as one YAML file (config as code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from routing.tables import keys, tableset
from routing.ops import services
from routing.tables.model import DataError
from . import AppContext, emit_json, handle_errors, pass_app

__all__ = ["export", "apply", "format_plan"]


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) if not isinstance(v, dict) else _compact(v) for v in value) + "]"
    return str(value)


def _compact(value: dict[str, Any]) -> str:
    return "{" + " ".join(f"{k}={_show(v)}" for k, v in value.items()) + "}"


def format_plan(plan: tableset.Plan) -> list[str]:
    """Lines of a diff: ``+ trunk x``, ``~ trunk x`` then ``    field: old -> new``, ``- did +1...``."""
    marks = {"add": "+", "change": "~", "remove": "-"}
    lines = []
    for change in plan.changes:
        lines.append(f"{marks[change.action]} {change.kind} {change.key}")
        for name, old, new in change.fields:
            lines.append(f"    {name}: {_show(old)} -> {_show(new)}")
    counts = plan.counts
    lines.append(
        f"{counts['add']} to add, {counts['change']} to change, {counts['remove']} to remove, "
        f"{counts['unchanged']} unchanged"
    )
    return lines


def _reload_tls(app: AppContext) -> None:
    """Rewrite and reload the per-trunk TLS CA profiles (trunk ``tls_ca``), as ``edgectl trunk add``
    does; the note goes to stderr so ``--json`` output stays JSON."""
    if not app.settings.tls_enabled:
        return
    try:
        if services.tls_profiles(app.settings, app.redis(), reload=services.kamailio_running(app.settings)):
            click.echo("tls.cfg: per-trunk CA profiles rewritten and reloaded", err=True)
    except RuntimeError as exc:
        raise DataError(f"tables applied, but {exc}") from None


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of standard output.")
@pass_app
@handle_errors
def export(app: AppContext, output: Path | None) -> None:
    """Write every trunk, agent, DID and route as YAML (passwords are never exported)."""
    text = tableset.dump_document(tableset.export_document(tableset.read_tables(app.redis())))
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"exported to {output}", err=True)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate and show the differences; write nothing.")
@click.option("--prune", is_flag=True,
              help="Also remove trunks, agents, DIDs and routes that the file's sections do not list.")
@click.option("--json", "as_json", is_flag=True, help="Print the changes as JSON.")
@pass_app
@handle_errors
def apply(app: AppContext, file: Path, dry_run: bool, prune: bool, as_json: bool) -> None:
    """Make the routing tables match FILE (YAML, as written by `edgectl export`).

    Every entry is validated, and the resulting tables checked, before anything is
    written; the changes are then written in one redis transaction.  Entities not
    in FILE are kept unless --prune is given (a section missing from FILE is never pruned).
    """
    desired = tableset.load_document(str(file))
    client = app.redis()
    plan = tableset.apply_document(client, desired, prune=prune, dry_run=dry_run, box_factory=app.secrets)
    applied = bool(plan.changes) and not dry_run
    version = client.get(keys.VERSION) if applied else None
    if applied and any(c.kind == "trunk" for c in plan.changes):
        _reload_tls(app)  # per-trunk tls_ca profiles, as after edgectl trunk add
    if as_json:
        emit_json({
            "dry_run": dry_run,
            "applied": applied,
            "version": int(version) if version else None,
            "counts": plan.counts,
            "changes": [c.as_dict() for c in plan.changes],
        })
        return
    for line in format_plan(plan):
        click.echo(line)
    if dry_run:
        click.echo("dry run: nothing written")
    elif applied:
        click.echo(f"applied (edge:version {version})")
    else:
        click.echo("nothing to change")
