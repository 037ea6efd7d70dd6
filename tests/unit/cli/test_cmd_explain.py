"""``edgectl explain``'s synthetic request reads the number as the edge does."""

from __future__ import annotations

import pytest

from routing.cli.cmd_explain import _user as synthetic_user


@pytest.mark.parametrize(
    ("given", "user"),
    [
        ("sip:+14155550100@192.0.2.1", "+14155550100"),
        ("<sip:%2B14155550100@192.0.2.1:5060;transport=udp>", "%2B14155550100"),
        ("tel:4155550100;phone-context=+1", "4155550100;phone-context=+1"),
        ("sip:4155550100;phone-context=+1@192.0.2.1;user=phone", "4155550100;phone-context=+1"),
        ("4155550100", "4155550100"),
    ],
)
def test_synthetic_request_reads_the_number_as_the_edge_does(given: str, user: str) -> None:
    """``edgectl explain --to URI`` keeps what the edge reads: a tel: URI's and a user part's parameters."""
    assert synthetic_user(given) == user
