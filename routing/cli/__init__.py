"""``edgectl``: the ops CLI of byoc-edge (click).

One module per noun (``cmd_trunk.py``, ``cmd_agent.py`` ...), registered on
the :func:`main` group.  Every error is one line on stderr and a non-zero exit
(click's ``ClickException``: exit status 1; usage errors: 2): the group turns any
:class:`routing.errors.EdgeError` a command lets through into that line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import click
import redis

from routing.errors import EdgeError
from routing.ops.secrets import SecretBox, create_key
from routing.ops.settings import Settings, SettingsError, load_settings
from routing.tables.store import connect

__all__ = ["main", "AppContext", "pass_app", "emit_json", "fail", "handle_errors"]

#: Environment variable naming the settings file when ``--settings`` is not given.
SETTINGS_ENV = "EDGE_SETTINGS"

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> "click.ClickException":
    """A one-line CLI error (exit status 1)."""
    return click.ClickException(message)


@dataclass
class AppContext:
    """Shared state of one ``edgectl`` invocation.

    Attributes:
        settings_path: the settings file, or None for the embedded default.
    """

    settings_path: Path | None
    _settings: Settings | None = field(default=None, repr=False)
    _redis: redis.Redis | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        """The validated settings (loaded once).

        Raises:
            click.ClickException: invalid settings, naming the field.
        """
        if self._settings is None:
            try:
                self._settings = load_settings(self.settings_path)
            except SettingsError as exc:
                raise fail(str(exc)) from None
        return self._settings

    def secrets(self) -> SecretBox:
        """The box that encrypts trunk passwords (its key file is created 0600 when missing)."""
        path = self.settings.secret_key_path
        if create_key(path):
            click.echo(f"created secret key {path}", err=True)
        return SecretBox(path)

    def redis(self) -> redis.Redis:
        """A redis client for admin work (2 s timeouts: ops tools may wait longer than calls)."""
        if self._redis is None:
            r = self.settings.redis
            self._redis = connect(**r.client_args(), timeout_ms=2000, connect_timeout_ms=2000)
        return self._redis


pass_app = click.make_pass_decorator(AppContext)


def emit_json(value: object) -> None:
    """Print ``value`` as indented JSON (for ``--json``)."""
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def handle_errors(func: F) -> F:
    """Turn byoc-edge's own errors (:class:`EdgeError`) and redis errors into one-line CLI errors."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EdgeError as exc:
            raise fail(str(exc)) from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise fail(f"redis unreachable: {exc}") from None
        except redis.ResponseError as exc:
            raise fail(f"redis error: {exc}") from None

    return wrapper  # type: ignore[return-value]


class EdgeGroup(click.Group):
    """The ``edgectl`` group: an :class:`EdgeError` escaping any command is a one-line error (exit 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeError as exc:
            raise fail(str(exc)) from None


@click.group(cls=EdgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=lambda: os.environ.get(SETTINGS_ENV) or None,
    help=f"Settings file (YAML). Default: ${SETTINGS_ENV}, else the embedded loopback demo edge.",
)
@click.pass_context
def main(ctx: click.Context, settings_path: Path | None) -> None:
    """byoc-edge ops CLI: run the edge and edit its routing tables in redis."""
    ctx.obj = AppContext(settings_path=settings_path)


def _register() -> None:
    from . import cmd_account, cmd_agent, cmd_apply, cmd_calls, cmd_explain, cmd_config, cmd_demo, cmd_did, cmd_drain, cmd_route, cmd_service, cmd_tls, cmd_trunk

    main.add_command(cmd_config.config)
    for command in cmd_service.COMMANDS + cmd_drain.COMMANDS:
        main.add_command(command)
    main.add_command(cmd_trunk.trunk)
    main.add_command(cmd_agent.agent)
    main.add_command(cmd_did.did)
    main.add_command(cmd_route.route)
    main.add_command(cmd_account.account)
    main.add_command(cmd_calls.calls)
    main.add_command(cmd_demo.demo)
    main.add_command(cmd_tls.tls)
    main.add_command(cmd_apply.export)
    main.add_command(cmd_apply.apply)
    main.add_command(cmd_explain.explain)
    from . import cmd_ban, cmd_cdr, cmd_trace

    main.add_command(cmd_ban.ban)
    main.add_command(cmd_cdr.cdr)
    main.add_command(cmd_trace.trace)


_register()
