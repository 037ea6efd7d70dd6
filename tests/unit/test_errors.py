"""One exception tree: every error byoc-edge raises on purpose is an EdgeError, and edgectl
turns one that escapes a command into a one-line error with exit status 1."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from routing.call.dtmf import DtmfError
from routing.call.numbers import NumberError
from routing.cli import main
from routing.errors import EdgeError
from routing.ngclient import NgError
from routing.ops.secrets import SecretError
from routing.ops.services import ServiceError
from routing.ops.settings import SettingsError
from routing.ops.sipp import SippError
from routing.tables.admin import ConflictError
from routing.tables.model import DataError
from routing.tables.store import StaleTopology, StoreUnavailable
from routing.tables.tableset import _NothingToDo

ERRORS = [DataError, ConflictError, _NothingToDo, StoreUnavailable, StaleTopology, NumberError, DtmfError,
          SettingsError, SecretError, ServiceError, SippError, NgError]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_every_error_is_an_edge_error(error: type[Exception]) -> None:
    assert issubclass(error, EdgeError)


@pytest.mark.parametrize("error, base", [(DataError, ValueError), (NumberError, ValueError), (DtmfError, ValueError),
                                         (SettingsError, ValueError), (StoreUnavailable, RuntimeError),
                                         (NgError, RuntimeError), (ServiceError, RuntimeError)],
                         ids=lambda e: e.__name__)
def test_errors_keep_the_builtin_base_their_callers_catch(error: type[Exception], base: type[Exception]) -> None:
    assert issubclass(error, base)


def test_edgectl_turns_any_edge_error_into_one_line_and_exit_1() -> None:
    @click.command("boom")
    def boom() -> None:
        raise ServiceError("kamailio did not start: port 5060 in use")

    main.add_command(boom)
    try:
        result = CliRunner().invoke(main, ["boom"])
    finally:
        main.commands.pop("boom")
    assert result.exit_code == 1
    assert result.output == "Error: kamailio did not start: port 5060 in use\n"
