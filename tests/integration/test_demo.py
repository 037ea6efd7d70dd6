"""``edgectl demo``'s calls (routing.ops.demo with its own SIPp launcher, routing.ops.sipp) through
the running edge: both directions answered with RTP relayed, both refusals, no slot left."""

from __future__ import annotations

from routing.ops.demo import SAMPLE, run_demo

from .conftest import NET, Edge


def test_demo_calls_complete_both_ways_and_leave_no_slot(clean_edge: Edge) -> None:
    outcomes = run_demo(clean_edge.settings, clean_edge.redis, calls=2, net=NET)

    by_name = {o.name: o for o in outcomes}
    origination, termination = by_name["origination carrier->agent"], by_name["termination agent->carrier"]
    assert (origination.answered, termination.answered) == (2, 2), outcomes
    for answered in (origination, termination):
        assert int(answered.note.split()[0]) > 0, answered.note  # RTP packets relayed by rtpengine
    assert by_name[f"stranger {NET}.99 -> DID"].codes == {"403 Source Not Allowed": 1}
    assert by_name["carrier -> unknown DID"].codes == {"404 DID Not Found": 1}
    assert outcomes[-1].note == "0 (must be 0)"
    assert clean_edge.redis.exists(f"edge:did:{SAMPLE['did']}")
