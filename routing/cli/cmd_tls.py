"""``edgectl tls selfsigned``: a test certificate for the TLS listener."""

from __future__ import annotations

import click

from routing.ops.tlscert import write_selfsigned
from . import AppContext, handle_errors, pass_app


@click.group()
def tls() -> None:
    """TLS certificates of the edge."""


@tls.command()
@click.option("--name", "names", multiple=True, metavar="HOST|IP",
              help="Host name or address for the certificate (repeatable); default: every TLS listen address.")
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 3650))
@pass_app
@handle_errors
def selfsigned(app: AppContext, names: tuple[str, ...], days: int) -> None:
    """Write a self-signed certificate and key to the paths in sip.tls (for testing only)."""
    settings = app.settings
    chosen = list(names) or sorted({l.advertise or l.address for l in settings.sip.listen if l.transport == "tls"})
    if not chosen:
        chosen = ["127.0.0.1"]
    write_selfsigned(settings.tls_certificate, settings.tls_private_key, chosen, days)
    click.echo(f"wrote {settings.tls_certificate} and {settings.tls_private_key} for {', '.join(chosen)}")
