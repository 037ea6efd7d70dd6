"""CSeq renumbering when the edge sends requests on one side's behalf (routing/call/cseq.py)."""

from __future__ import annotations

import pytest

from routing.call.cseq import MAX_CSEQ, CseqMap, SideSeq, local, relay


def _caller(invite: int = 1) -> SideSeq:
    return SideSeq(last=invite, top=invite, invite=invite, invite_out=invite)


def test_without_edge_requests_numbers_pass_unchanged() -> None:
    out, seq = relay(_caller(), 2, "BYE")
    assert out == 2 and seq.last == 2 and seq.top == 2


def test_edge_requests_are_numbered_above_everything_and_later_requests_above_them() -> None:
    seq = _caller(1)
    first, seq = local(seq)
    second, seq = local(seq)
    bye, seq = relay(seq, 2, "BYE")  # the caller's own next request
    assert 1 < first < second < bye


def test_a_side_that_sent_nothing_yet_is_renumbered_above_the_edge_requests() -> None:
    number, seq = local(SideSeq())
    out, seq = relay(seq, 1, "BYE")  # the callee's first request, its own numbering
    assert out > number


def test_ack_and_cancel_repeat_the_relayed_invite_number_even_after_an_edge_request() -> None:
    seq = _caller(1)
    _, seq = local(seq)
    invite_out, seq = relay(seq, 2, "INVITE")  # re-INVITE
    _, seq = local(seq)  # a digit between the re-INVITE and its ACK
    assert relay(seq, 2, "ACK")[0] == invite_out
    assert relay(seq, 2, "CANCEL")[0] == invite_out


def test_the_initial_ack_keeps_its_number() -> None:
    assert relay(_caller(7), 7, "ACK")[0] == 7


def test_interleaved_requests_keep_the_receiver_order_strictly_increasing() -> None:
    seq, seen, number = SideSeq(), [], 0
    for step in "LRLLRRL":
        if step == "L":
            out, seq = local(seq)
        else:
            number += 1
            out, seq = relay(seq, number, "INFO")
        seen.append(out)
    assert seen == sorted(set(seen))


def test_numbers_beyond_rfc3261_range_are_refused() -> None:
    with pytest.raises(ValueError):
        relay(SideSeq(shift=5), MAX_CSEQ - 1, "BYE")
    with pytest.raises(ValueError):
        local(SideSeq(top=MAX_CSEQ))
    with pytest.raises(ValueError):
        relay(SideSeq(), -1, "BYE")


def test_map_round_trips_through_its_htable_form() -> None:
    state = CseqMap("ft", "tt", SideSeq(1, 2, 3, 4, 5), SideSeq(6, 7, 8, 9, 10))
    assert CseqMap.decode(state.encode()) == state
    assert state.side(True).last == 1 and state.side(False).last == 6
    assert state.with_side(False, SideSeq()).callee == SideSeq()


@pytest.mark.parametrize("text", ["", "ft;tt;1,2,3", "ft;;1,2,3,4,5,6,7,8,9,10", "ft;tt;1,2,3,4,5,6,7,8,9,-1",
                                  "ft;tt;a,2,3,4,5,6,7,8,9,10"])
def test_malformed_map_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        CseqMap.decode(text)
