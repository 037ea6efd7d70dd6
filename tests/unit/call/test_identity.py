"""The carrier's STIR/SHAKEN verification of the caller (routing.call.identity)."""

from __future__ import annotations

import pytest

from routing.call.identity import verstat


@pytest.mark.parametrize(("from_user", "pai", "expected"), [
    ("+14155550123;verstat=TN-Validation-Passed", "", "TN-Validation-Passed"),
    ("+14155550123", "<sip:+14155550123;verstat=TN-Validation-Failed@carrier.example;user=phone>", "TN-Validation-Failed"),
    ("+14155550123;VERSTAT=No-TN-Validation", "<sip:+1;verstat=TN-Validation-Passed@x>", "No-TN-Validation"),  # From first
    ("+14155550123", "<tel:+14155550123;verstat=TN-Validation-Passed>", "TN-Validation-Passed"),
    ("+14155550123", "", ""),
    ("+14155550123;verstat=bad value<script>", "", "bad"),  # a token only: nothing else reaches a header
])
def test_verstat_from_the_from_user_else_the_pai(from_user: str, pai: str, expected: str) -> None:
    assert verstat(from_user, pai) == expected
