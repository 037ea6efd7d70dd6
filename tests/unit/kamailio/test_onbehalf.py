"""Requests the edge sends on a side's behalf, and the CSeq renumbering they take
(routing.kamailio.onbehalf)."""

from __future__ import annotations

import importlib
import types
from dataclasses import replace
from typing import Any

import pytest

from routing.call import dtmf
from routing.call.cseq import CseqMap, SideSeq
from tests.unit.kamailio.conftest import edge_over_fakes
from tests.unit.kamailio.fakehtable import HTables, provide
from tests.unit.kamailio.fakeksr import FakeKSR, FakeStore, RT

CALL = "call-1"
LOOP = "udp:0.0.0.0:5060"
CARRIER_SOCKET = "udp:10.0.1.10:5060"
AGENT_SOCKET = "udp:10.0.2.10:5060"
#: what the dialog module keeps of the call (dlg_get): the caller's side, then the callee's
DIALOG = {
    "$dlg(from_uri)": "sip:+12125550123@192.0.2.5", "$dlg(from_contact)": "<sip:carrier@192.0.2.5:5060>",
    "$dlg(from_rs)": "", "$dlg(from_bindaddr)": CARRIER_SOCKET, "$dlg(from_cseq)": "3",
    "$dlg(to_uri)": "sip:+14155550100@edge", "$dlg(to_contact)": "<sip:bot@10.9.0.2:5080>",
    "$dlg(to_rs)": "<sip:10.9.0.1;lr>", "$dlg(to_bindaddr)": AGENT_SOCKET, "$dlg(to_cseq)": "5",
}


@pytest.fixture
def onbehalf(kemi: types.ModuleType) -> types.ModuleType:
    return importlib.import_module("routing.kamailio.onbehalf")


@pytest.fixture
def ht(ksr: FakeKSR) -> HTables:
    provide(ksr, "textopsx.msg_apply_changes")
    return HTables(ksr)


@pytest.fixture
def edge(kemi: types.ModuleType, store: FakeStore) -> Any:
    """An edge with a UDP listener (the loop socket) and a DTMF log."""
    return edge_over_fakes(kemi, store, replace(RT, loop_socket=LOOP, dtmf_log_port=40000))


def _map(ht: HTables, caller: SideSeq, callee: SideSeq) -> None:
    ht.table("cseqmap")[CALL] = CseqMap("ft1", "tt1", caller, callee).encode()


def _stored(ht: HTables) -> CseqMap:
    return CseqMap.decode(ht.table("cseqmap")[CALL])


def _dialog(ksr: FakeKSR, known: bool = True, tm_sends: bool = True) -> None:
    provide(ksr, "dialog.dlg_get", 1 if known else -1)
    provide(ksr, "tm.t_uac_send", 1 if tm_sends else -1)
    ksr.pv.update(DIALOG)


def _sent(ksr: FakeKSR) -> list[tuple[Any, ...]]:
    return ksr.args_of("tm.t_uac_send")


# -- renumbering of a side's own requests ----------------------------------------------------------


def test_request_of_a_side_the_edge_spoke_for_is_shifted_and_keeps_its_number_for_the_responses(
        onbehalf: types.ModuleType, ht: HTables, ksr: FakeKSR) -> None:
    _map(ht, SideSeq(1, 0, 1, 1, 1), SideSeq(last=0, shift=3, top=3))  # the edge sent 3 INFOs as the callee
    ksr.pv.update({"$ci": CALL, "$ft": "tt1", "$cs": "1"})
    onbehalf.renumber("BYE")
    assert ksr.args_of("hdr.remove") == [("CSeq",)]
    assert ksr.args_of("hdr.append") == [("CSeq: 4 BYE\r\n",)]
    assert ksr.pv["$avp(edge_cseq)"] == "1"
    assert _stored(ht).callee == SideSeq(last=1, shift=3, top=4)
    assert ht.locks == [("lock", "cseqmap", CALL), ("unlock", "cseqmap", CALL)]


def test_ack_repeats_its_invites_relayed_number_and_keeps_none_for_responses(onbehalf: types.ModuleType,
                                                                            ht: HTables, ksr: FakeKSR) -> None:
    _map(ht, SideSeq(last=2, shift=2, top=4, invite=2, invite_out=4), SideSeq())
    ksr.pv.update({"$ci": CALL, "$ft": "ft1", "$cs": "2"})
    onbehalf.renumber("ACK")
    assert ksr.args_of("hdr.append") == [("CSeq: 4 ACK\r\n",)]
    assert "$avp(edge_cseq)" not in ksr.pv


def test_request_needing_no_shift_is_left_as_it_came(onbehalf: types.ModuleType, ht: HTables, ksr: FakeKSR) -> None:
    _map(ht, SideSeq(1, 0, 1, 1, 1), SideSeq())
    ksr.pv.update({"$ci": CALL, "$ft": "ft1", "$cs": "2"})
    onbehalf.renumber("INFO")
    assert ksr.args_of("hdr.remove") == [] and ksr.args_of("hdr.append") == []
    assert _stored(ht).caller == SideSeq(last=2, shift=0, top=2, invite=1, invite_out=1)


def test_call_without_a_cseq_map_keeps_its_numbers(onbehalf: types.ModuleType, ht: HTables, ksr: FakeKSR) -> None:
    ksr.pv.update({"$ci": CALL, "$ft": "ft1", "$cs": "2"})
    onbehalf.renumber("BYE")
    assert ksr.args_of("hdr.remove") == []
    assert any(level == "warn" and "keeps its CSeq" in text for level, text in ksr.logs)
    assert ht.locks == [("lock", "cseqmap", CALL), ("unlock", "cseqmap", CALL)]  # unlocked all the same


# -- the edge's own requests looping through it ---------------------------------------------------------


@pytest.mark.parametrize("token", ["", "forged"])
def test_request_without_the_nodes_token_is_not_the_edges(onbehalf: types.ModuleType, ht: HTables, edge: Any,
                                                          ksr: FakeKSR, token: str) -> None:
    ksr.pv.update({"$ci": CALL, "$ft": "ft1", "$hdr(X-Edge-Info)": token})
    assert onbehalf.edge_request(edge.worker, "INFO") is False
    assert ksr.relayed == [] and ksr.args_of("hdr.append") == []


def test_edges_own_info_is_numbered_above_the_receivers_top_and_sent_from_the_named_socket(
        onbehalf: types.ModuleType, ht: HTables, edge: Any, ksr: FakeKSR) -> None:
    _map(ht, SideSeq(last=4, shift=0, top=4, invite=1, invite_out=1), SideSeq())
    ksr.pv.update({"$ci": CALL, "$ft": "ft1", "$hdr(X-Edge-Info)": edge.worker.token,
                   "$hdr(X-Edge-Socket)": AGENT_SOCKET, "$hdr(Route)": "<sip:10.9.0.1;lr>", "$ru": "sip:bot@10.9.0.2"})
    assert onbehalf.edge_request(edge.worker, "INFO") is True
    assert ksr.args_of("hdr.append") == [("CSeq: 5 INFO\r\n",)]
    assert _stored(ht).caller.top == 5 and _stored(ht).caller.shift == 1  # the caller's next request goes above 5
    assert ksr.args_of("textops.remove_hf_re") == [("^X-Edge-",)]
    assert ("$fs", AGENT_SOCKET) in ksr.args_of("pv.sets") and ksr.pv["$du"] == "sip:10.9.0.1;lr"
    names = ksr.names()
    assert names.index("dialog.dlg_manage") < names.index("tm.t_relay")


def test_edges_own_bye_marks_the_hang_up_as_the_edges(onbehalf: types.ModuleType, ht: HTables, edge: Any,
                                                      ksr: FakeKSR) -> None:
    ksr.pv.update({"$ci": CALL, "$ft": "ft1", "$hdr(X-Edge-Info)": edge.worker.token})
    assert onbehalf.edge_request(edge.worker, "BYE") is True
    assert ksr.pv["$avp(edge_hangup)"] == 1
    assert ksr.args_of("hdr.append") == []  # numbered by the dialog module already
    assert len(ksr.relayed) == 1


def test_edges_own_info_for_a_call_without_a_map_gets_481(onbehalf: types.ModuleType, ht: HTables, edge: Any,
                                                          ksr: FakeKSR) -> None:
    ksr.pv.update({"$ci": CALL, "$ft": "ft1", "$hdr(X-Edge-Info)": edge.worker.token})
    assert onbehalf.edge_request(edge.worker, "INFO") is True
    assert ksr.replies == [("sl", 481, "Call/Transaction Does Not Exist")]
    assert ksr.relayed == []


# -- hanging up, sending INFO ------------------------------------------------------------------------------


def test_hang_up_sends_a_bye_to_each_side_numbered_above_what_it_has_had(onbehalf: types.ModuleType, edge: Any,
                                                                        ksr: FakeKSR) -> None:
    _dialog(ksr)
    reason = 'Reason: SIP;cause=488;text="SRTP Required"\r\n'
    assert onbehalf.hang_up(edge.worker, CALL, "ft1", "tt1", reason) is True
    (to_caller, to_callee) = _sent(ksr)
    method, ruri, nexthop, sock, headers, body = to_caller  # straight, as the callee
    assert (method, ruri, nexthop, sock, body) == ("BYE", "sip:carrier@192.0.2.5:5060", "", CARRIER_SOCKET, "")
    assert "From: <sip:+14155550100@edge>;tag=tt1\r\n" in headers and "CSeq: 6 BYE\r\n" in headers
    assert headers.endswith(reason) and "X-Edge-Info" not in headers
    method, ruri, nexthop, sock, headers, body = to_callee  # through the edge itself, as the caller
    assert (method, ruri, nexthop, sock) == ("BYE", "sip:bot@10.9.0.2:5080", "sip:127.0.0.1:5060", LOOP)
    assert "CSeq: 4 BYE\r\n" in headers and "Route: <sip:10.9.0.1;lr>\r\n" in headers
    assert f"X-Edge-Info: {edge.worker.token}\r\n" in headers and f"X-Edge-Socket: {AGENT_SOCKET}\r\n" in headers


def test_hang_up_of_a_bridged_leg_numbers_the_targets_bye_above_the_edges_own_requests(
        onbehalf: types.ModuleType, edge: Any, ksr: FakeKSR, ht: HTables) -> None:
    """The leg's caller is the edge: its relayed re-INVITEs and DTMF INFOs to the target went
    straight (the dialog module saw none), so the BYE goes above the bridge's own counter."""
    from routing.call import bridge as bx
    leg = "xfer-" + CALL
    ht.table("xfer")[leg] = bx.Bridge(CALL, leg, "bot", "telnyx", "ct", "at", "+44", True, phase="bridged",
                                      leg_tag="ft1", target_tag="tt1", leg_cseq=1, uac_cseq=9).encode()
    _dialog(ksr)
    ksr.pv["$dlg(from_contact)"] = "<sip:transfer@127.0.0.1:5060>"
    assert onbehalf.hang_up(edge.worker, leg, "ft1", "tt1") is True
    [(method, _ruri, _nexthop, _sock, headers, _body)] = _sent(ksr)  # none to the edge itself
    assert method == "BYE" and "CSeq: 10 BYE\r\n" in headers


def test_hang_up_is_false_and_logged_when_tm_refuses_the_bye_through_the_edge(onbehalf: types.ModuleType,
                                                                             edge: Any, ksr: FakeKSR) -> None:
    _dialog(ksr, tm_sends=False)
    assert onbehalf.hang_up(edge.worker, CALL, "ft1", "tt1") is False
    assert len(_sent(ksr)) == 2
    assert any(level == "warn" and "tm refused a BYE" in text for level, text in ksr.logs)


@pytest.mark.parametrize("why", ["no listener", "unknown dialog"])
def test_hang_up_leaves_it_to_the_dialog_module_when_it_cannot_send(onbehalf: types.ModuleType, kemi: types.ModuleType,
                                                                    store: FakeStore, edge: Any, ksr: FakeKSR,
                                                                    why: str) -> None:
    _dialog(ksr, known=why != "unknown dialog")
    router = edge_over_fakes(kemi, store) if why == "no listener" else edge
    assert onbehalf.hang_up(router.worker, CALL, "ft1", "tt1") is False
    assert _sent(ksr) == []


def test_digit_goes_to_the_other_side_as_an_info_through_the_edge(onbehalf: types.ModuleType, ht: HTables,
                                                                   edge: Any, ksr: FakeKSR) -> None:
    _map(ht, SideSeq(1, 0, 1, 1, 1), SideSeq())
    _dialog(ksr)
    onbehalf.send_info(edge.worker, dtmf.LoggedDigit(CALL, "ft1", "5", 40), True)
    ((method, ruri, nexthop, sock, headers, body),) = _sent(ksr)
    assert (method, ruri, nexthop, sock) == ("INFO", "sip:bot@10.9.0.2:5080", "sip:127.0.0.1:5060", LOOP)
    assert "Content-Type: application/dtmf-relay\r\n" in headers
    assert body == f"Signal=5\r\nDuration={dtmf.MIN_DURATION_MS}\r\n"  # 40 ms is below what rtpengine plays


def test_digit_of_an_unknown_call_is_not_sent(onbehalf: types.ModuleType, ht: HTables, edge: Any,
                                              ksr: FakeKSR) -> None:
    _dialog(ksr)
    onbehalf.send_info(edge.worker, dtmf.LoggedDigit(CALL, "ft1", "5", 200), True)
    assert _sent(ksr) == []
    assert any("not sent as INFO: the call is not known" in text for _, text in ksr.logs)


# -- the ACK of a call whose digits travel as INFO ----------------------------------------------------------


def test_ack_of_a_call_with_an_info_side_starts_its_map_and_blocks_the_other_sides_digits(
        onbehalf: types.ModuleType, ht: HTables, edge: Any, ksr: FakeKSR) -> None:
    edge.worker.ngclient.replies["block DTMF"] = {"result": "ok"}
    ksr.pv.update({"$ci": CALL, "$cs": "7", "$dlg(from_tag)": "ft1", "$dlg(to_tag)": "tt1",
                   "$dlg_var(edge_dtmf)": "rfc4733,info"})
    onbehalf.note_dtmf_call(edge.worker)
    assert _stored(ht) == CseqMap("ft1", "tt1", SideSeq(7, 0, 7, 7, 7), SideSeq())
    assert edge.worker.ngclient.commands == [
        ("block DTMF", {"call-id": CALL, "from-tag": "ft1", **dtmf.block_params("rfc4733")})]


@pytest.mark.parametrize(("modes", "log_port"), [("rfc4733,rfc4733", 40000), ("info,info", 40000),
                                                 ("rfc4733,info", 0)])
def test_ack_of_a_call_without_info_to_send_keeps_nothing(onbehalf: types.ModuleType, ht: HTables,
                                                          kemi: types.ModuleType, store: FakeStore, ksr: FakeKSR,
                                                          modes: str, log_port: int) -> None:
    router = edge_over_fakes(kemi, store, replace(RT, loop_socket=LOOP, dtmf_log_port=log_port))
    ksr.pv.update({"$ci": CALL, "$cs": "7", "$dlg(from_tag)": "ft1", "$dlg(to_tag)": "tt1",
                   "$dlg_var(edge_dtmf)": modes})
    onbehalf.note_dtmf_call(router.worker)
    assert ht.table("cseqmap") == {} and router.worker.ngclient.commands == []
