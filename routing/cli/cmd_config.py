"""``edgectl config render`` and ``edgectl config check``."""

from __future__ import annotations

import click

from routing.ops import services
from routing.ops.hostcheck import check_addresses
from routing.ops.render import render_to_dir
from . import AppContext, fail, pass_app


@click.group()
def config() -> None:
    """Render and validate the configs generated from the settings file."""


@config.command()
@pass_app
def render(app: AppContext) -> None:
    """Validate the settings and write kamailio.cfg, rtpengine.conf, redis.conf and routing.json."""
    errors = check_addresses(app.settings)
    if errors:
        raise fail("; ".join(errors))
    run_dir = render_to_dir(app.settings)
    click.echo(f"rendered into {run_dir}")


@config.command()
@pass_app
def check(app: AppContext) -> None:
    """Render, run `kamailio -c`, then start a throw-away Kamailio to prove the Python plugin imports."""
    errors = check_addresses(app.settings)
    if errors:
        raise fail("; ".join(errors))
    render_to_dir(app.settings)
    services.kamailio_check(app.settings)
    services.kamailio_startup_check(app.settings)
    click.echo("config OK: kamailio -c passed and the routing plugin loaded at start-up")
