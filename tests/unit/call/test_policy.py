"""routing.call.policy: destination allow/deny prefixes (toll-fraud guardrails)."""

from __future__ import annotations

import pytest

from routing.call.policy import destination_allowed


@pytest.mark.parametrize("number, allow, deny, allowed", [
    ("+442071838750", (), (), True),  # no lists: everything
    ("+19005550100", (), ("+1900",), False),  # blocked prefix
    ("+14155550100", ("+1",), (), True),
    ("+442071838750", ("+1",), (), False),  # not in the allow-list
    ("+19005550100", ("+1",), ("+1900",), False),  # deny wins over allow
])
def test_destination_allowed(number: str, allow: tuple[str, ...], deny: tuple[str, ...], allowed: bool) -> None:
    assert destination_allowed(number, allow, deny) is allowed


def test_allow_may_be_a_one_shot_iterable() -> None:
    assert destination_allowed("+14155550100", iter(["+44", "+1"]), iter([]))
