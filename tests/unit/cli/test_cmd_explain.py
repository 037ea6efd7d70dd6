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


def test_transfer_line_of_a_bridged_transfer_and_its_leg() -> None:
    from routing.cli.cmd_explain import transfer_line
    done = {"mode": "bridge", "target": "+442071838751", "refer_code": "501", "result": "200", "transferred_to": "xfer-c1"}
    assert transfer_line(done) == ("transfer (bridge) to +442071838751: the carrier refused the REFER with 501, the edge "
                                   "placed leg xfer-c1, which answered 200 (bridged: caller and target joined, the agent "
                                   "hung up by the edge)")
    busy = {"mode": "bridge", "target": "+442071838751", "result": "486", "transferred_to": "xfer-c1"}
    assert transfer_line(busy).endswith("the edge placed leg xfer-c1, which answered 486 (failed: the agent kept the call)")
    assert transfer_line({"mode": "bridge", "transferred_from": "c1"}) == "transfer leg (bridge) of call c1, placed by the edge"
