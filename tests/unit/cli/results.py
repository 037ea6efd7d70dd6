"""Checks of an edgectl run's result, shared by the edgectl tests."""

from __future__ import annotations

from click.testing import Result


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def one_line_error(result: Result) -> str:
    """Assert a failed command printed exactly one line on stderr and nothing on stdout."""
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]
