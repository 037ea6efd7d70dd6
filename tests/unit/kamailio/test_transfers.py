"""An agent's transfer relayed to the carrier (routing.kamailio.transfers): the REFER checked and
rewritten, its reply and the carrier's NOTIFYs kept with the call, the hang-up after a 2xx sipfrag."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest

from routing.tables.model import ReferToFormat
from routing.tables.store import StoreUnavailable
from tests.unit.kamailio.fakehtable import HTables
from tests.unit.kamailio.fakeksr import MSG, FakeKSR, FakeStore, counted, request

DEADLINE = "1900000000:11:22:ft1:tt1"


@pytest.fixture
def tables(ksr: FakeKSR) -> HTables:
    """An answered origination call (trunk telnyx, agent bot): its record state and call clock."""
    ht = HTables(ksr)
    ht.table("cdr")["call-1"] = json.dumps({"start": 1, "answer": 2})
    ht.table("deadline")["call-1"] = DEADLINE
    return ht


def _from_agent(ksr: FakeKSR, method: str, **pvs: Any) -> None:
    """An in-dialog request of the agent (the callee of an origination call) toward the carrier."""
    request(ksr, method=method, **{"$ft": "tt1", "$dlg(from_tag)": "ft1", "$dlg_var(edge_dir)": "origination",
                                   "$dlg_var(edge_trunk)": "telnyx", "$dlg_var(edge_agent)": "bot",
                                   "$fU": "+14155550100", "$RAi": "203.0.113.1", "$rd": "192.0.2.5", **pvs})
    ksr.returns["siputils.has_totag"] = 1
    ksr.returns["textops.has_body_type"] = -1


def _from_carrier(ksr: FakeKSR, method: str, **pvs: Any) -> None:
    _from_agent(ksr, method, **{"$ft": "ft1", **pvs})


def _refer(ksr: FakeKSR, router: Any, refer_to: str, **pvs: Any) -> None:
    _from_agent(ksr, "REFER", **{"$hdr(Refer-To)": refer_to, **pvs})
    router.ksr_in_dialog(MSG)


def _appended(ksr: FakeKSR, name: str) -> list[str]:
    return [a[0] for a in ksr.args_of("hdr.append") if a[0].startswith(name + ":")]


def test_agents_refer_to_a_number_is_rewritten_for_the_carrier_and_kept(ksr: FakeKSR, router: Any,
                                                                        tables: HTables) -> None:
    ksr.returns["hdr.is_present"] = 1  # a Referred-By naming the agent
    _refer(ksr, router, "<sip:+442071838751@edge.example.net?X-Ctx=7&X-Secret=1&Route=%3Csip:x%3E>")
    assert ksr.replies == [] and ksr.args_of("tm.t_relay") == [()]
    # the trunk's first gateway, the agent's X- allow-list (none here), the From the carrier knows
    assert _appended(ksr, "Refer-To") == ["Refer-To: <sip:+442071838751@192.0.2.10>\r\n"]
    assert _appended(ksr, "Referred-By") == ["Referred-By: <sip:+14155550100@203.0.113.1>\r\n"]
    assert ("Refer-To",) in ksr.args_of("hdr.remove") and ("Referred-By",) in ksr.args_of("hdr.remove")
    state = json.loads(tables.table("cdr")["call-1"])
    assert state["xfer"] == {"mode": "refer", "target": "+442071838751", "refer_to": "sip:+442071838751@192.0.2.10"}
    assert ksr.pv["$avp(edge_refer)"] == 1 and ("ksr_onreply_manage",) in ksr.args_of("tm.t_on_reply")


def test_refer_to_format_and_allowed_headers_follow_the_trunk_and_agent(ksr: FakeKSR, router: Any, store: FakeStore,
                                                                       tables: HTables) -> None:
    store.trunks["telnyx"] = replace(store.trunks["telnyx"], refer_to=ReferToFormat.SIP_NATIONAL)
    store.agents["bot"] = replace(store.agents["bot"], x_headers=("X-Ctx",))
    _refer(ksr, router, "<tel:+14155550123?X-Ctx=7&User-to-User=a1>")
    assert _appended(ksr, "Refer-To") == ["Refer-To: <sip:4155550123@192.0.2.10?X-Ctx=7&User-to-User=a1>\r\n"]


def test_refer_to_a_listed_pbx_host_passes_as_written(ksr: FakeKSR, router: Any, store: FakeStore,
                                                      tables: HTables) -> None:
    store.agents["bot"] = replace(store.agents["bot"], transfer_hosts=("pbx.example.com",))
    _refer(ksr, router, "<sip:1001@pbx.example.com>")
    assert _appended(ksr, "Refer-To") == ["Refer-To: <sip:1001@pbx.example.com>\r\n"]
    assert json.loads(tables.table("cdr")["call-1"])["xfer"]["target"] == "sip:1001@pbx.example.com"


def test_refer_to_an_agents_own_host_is_on_net(ksr: FakeKSR, router: Any, tables: HTables) -> None:
    _refer(ksr, router, "<sip:humans@agent.example.com:5080>")  # the host of bot's first URI
    assert _appended(ksr, "Refer-To") == ["Refer-To: <sip:humans@agent.example.com:5080>\r\n"]


@pytest.mark.parametrize(("refer_to", "reply", "tag"), [
    ("<sip:+19005550123@edge.example.net>", ("sl", 403, "Transfer Not Allowed"), "transfer_policy"),  # deny prefix
    ("<sip:1001@pbx.example.com>", ("sl", 403, "Transfer Target Not Allowed"), "transfer_host"),  # nobody listed it
    ("<sip:192.0.2.5>", ("sl", 403, "Transfer Target Not Allowed"), "transfer_host"),  # no user part at all
    ("<mailto:human@example.com>", ("sl", 400, "Bad Refer-To"), "bad_refer_to"),
])
def test_refused_transfers_are_answered_counted_and_not_relayed(ksr: FakeKSR, router: Any, store: FakeStore,
                                                                tables: HTables, refer_to: str, reply: tuple,
                                                                tag: str) -> None:
    store.agents["bot"] = replace(store.agents["bot"], deny_prefixes=("+1900",))
    _refer(ksr, router, refer_to)
    assert ksr.replies == [reply] and ksr.args_of("tm.t_relay") == []
    assert ("byoc_edge_transfers_total", "refer", "denied") in counted(ksr)
    # kept for the record and edgectl explain
    assert json.loads(tables.table("cdr")["call-1"])["xfer"] == {
        "mode": "refer", "target": refer_to, "result": str(reply[1]), "refused": f"{reply[2]} [{tag}]"}


def test_refer_during_a_store_outage_gets_503_with_retry_after(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.topology_error = StoreUnavailable("Timeout reading from socket")
    _refer(ksr, router, "<sip:+14155550123@10.9.0.2>")
    assert ksr.replies == [("sl", 503, "Routing Store Unavailable")]
    assert ksr.args_of("hdr.append_to_reply") == [("Retry-After: 7\r\n",)]
    assert ksr.args_of("tm.t_relay") == []


def test_carriers_refer_to_the_agent_is_relayed_as_it_is(ksr: FakeKSR, router: Any, tables: HTables) -> None:
    _from_carrier(ksr, "REFER", **{"$hdr(Refer-To)": "<sip:anything@198.51.100.1>"})
    router.ksr_in_dialog(MSG)
    assert ksr.args_of("tm.t_relay") == [()] and ksr.args_of("hdr.remove") == []


@pytest.mark.parametrize(("code", "result"), [(202, None), (501, "501"), (403, "403")])
def test_carriers_answer_to_the_refer_is_kept(ksr: FakeKSR, router: Any, tables: HTables, code: int,
                                              result: str | None) -> None:
    tables.table("cdr")["call-1"] = json.dumps({"start": 1, "answer": 2, "xfer": {"mode": "refer", "target": "+1"}})
    request(ksr, method="REFER", **{"$rs": code, "$rm": "REFER", "$avp(edge_refer)": 1})
    router.ksr_onreply_manage(MSG)
    xfer = json.loads(tables.table("cdr")["call-1"])["xfer"]
    assert xfer["refer_code"] == str(code) and xfer.get("result") == result
    assert (("byoc_edge_transfers_total", "refer", "refused") in counted(ksr)) == (result is not None)


def _notify(ksr: FakeKSR, router: Any, body: str, event: str = "refer") -> None:
    _from_carrier(ksr, "NOTIFY", **{"$hdr(Event)": event, "$rb": body, "$cT": "message/sipfrag"})
    router.ksr_in_dialog(MSG)


def test_final_2xx_sipfrag_records_the_result_and_ends_the_call_after_the_delay(ksr: FakeKSR, router: Any,
                                                                                 tables: HTables) -> None:
    tables.table("cdr")["call-1"] = json.dumps({"start": 1, "answer": 2, "xfer": {"mode": "refer", "target": "+1"}})
    _notify(ksr, router, "SIP/2.0 100 Trying\r\n")
    assert tables.table("deadline")["call-1"] == DEADLINE  # progress only
    before = time.time()
    _notify(ksr, router, "SIP/2.0 200 OK\r\n")
    assert ksr.args_of("tm.t_relay") == [(), ()]  # both NOTIFYs reach the agent
    assert json.loads(tables.table("cdr")["call-1"])["xfer"]["result"] == "200"
    due = int(tables.table("deadline")["call-1"].split(":")[0])
    assert int(before) + 2 <= due <= int(before) + 3  # RuntimeSettings.transfer_bye_delay_s = 2
    assert tables.table("deadline")["call-1"].split(":", 1)[1] == DEADLINE.split(":", 1)[1]
    assert ("byoc_edge_transfers_total", "refer", "accepted") in counted(ksr)


def test_failed_sipfrag_keeps_the_call(ksr: FakeKSR, router: Any, tables: HTables) -> None:
    tables.table("cdr")["call-1"] = json.dumps({"start": 1, "answer": 2, "xfer": {"mode": "refer", "target": "+1"}})
    _notify(ksr, router, "SIP/2.0 486 Busy Here\r\n")
    assert json.loads(tables.table("cdr")["call-1"])["xfer"]["result"] == "486"
    assert tables.table("deadline")["call-1"] == DEADLINE
    assert ("byoc_edge_transfers_total", "refer", "failed") in counted(ksr)


def test_notify_of_another_event_or_call_without_transfer_changes_nothing(ksr: FakeKSR, router: Any,
                                                                         tables: HTables) -> None:
    _notify(ksr, router, "SIP/2.0 200 OK\r\n")  # no transfer kept for this call
    _notify(ksr, router, "SIP/2.0 200 OK\r\n", event="presence")
    assert "xfer" not in json.loads(tables.table("cdr")["call-1"]) and tables.table("deadline")["call-1"] == DEADLINE


# -- the edge's own bridge (routing.kamailio.bridge): auto falls back after a refusal, bridge at once ----------

CARRIER_SDP = "v=0\r\no=- 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def _bridge_refer(ksr: FakeKSR, router: Any) -> None:
    """The agent's REFER of an origination call whose carrier SDP the edge keeps."""
    router.worker.settings = replace(router.worker.settings, loop_socket="udp:203.0.113.1:5060")
    _refer(ksr, router, "<sip:+442071838751@edge.example.net?X-Ctx=7>",
           **{"$dlg_var(edge_sdp)": CARRIER_SDP, "$dlg(to_tag)": "tt1", "$cs": "3", "$dlg(from_cseq)": "1"})


def test_auto_trunk_relays_the_refer_and_keeps_what_a_bridge_needs(ksr: FakeKSR, router: Any, tables: HTables) -> None:
    _bridge_refer(ksr, router)
    assert ksr.args_of("tm.t_relay") == [()] and ksr.replies == []
    assert ("ksr_refer_failure",) in ksr.args_of("tm.t_on_failure")
    start = json.loads(ksr.pv["$avp(edge_xfer)"])
    bridge = json.loads(start["bridge"])
    assert (bridge["leg"], bridge["carrier_tag"], bridge["agent_tag"], bridge["refer_cseq"]) == ("xfer-call-1", "ft1", "tt1", 3)
    assert start["sdp"] == CARRIER_SDP and (bridge["caller"], bridge["did"]) == ("+14155550100", "")


def test_carrier_refusing_the_refer_makes_the_edge_place_the_leg(ksr: FakeKSR, router: Any, tables: HTables) -> None:
    tables.table("cdr")["call-1"] = json.dumps({"start": 1, "answer": 2, "number": "+14155550100",
                                                "caller": "+12125550123"})
    _bridge_refer(ksr, router)
    ksr.pv["$T_reply_code"] = 501
    router.ksr_refer_failure(MSG)
    assert ksr.args_of("tm.t_reply") == [(202, "Accepted")]
    assert ksr.args_of("uac.uac_req_send") == [()]
    assert ksr.pv["$uac_req(callid)"] == "xfer-call-1" and ksr.pv["$uac_req(body)"] == CARRIER_SDP
    assert ksr.pv["$uac_req(ouri)"] == "sip:203.0.113.1:5060" and ksr.pv["$uac_req(evparam)"] == "call-1"
    headers = ksr.pv["$uac_req(hdrs)"]
    assert f"X-Edge-Transfer: {router.worker.token};call-1\r\n" in headers
    assert "X-Ctx" not in headers  # bot's X- allow-list is empty
    # From the original caller; the Diversion naming the DID is the hop trunk's (forwarded_caller_id), added per branch
    assert ksr.pv["$uac_req(furi)"] == "sip:+12125550123@203.0.113.1:5060" and "Diversion" not in headers
    assert json.loads(tables.table("xfer")["call-1"])["did"] == "+14155550100"
    assert ksr.pv["$uac_req(ruri)"] == "sip:+442071838751@203.0.113.1:5060"
    state = json.loads(tables.table("cdr")["call-1"])["xfer"]
    assert (state["mode"], state["refer_code"], state["transferred_to"]) == ("bridge", "501", "xfer-call-1")


def test_another_failure_of_the_refer_reaches_the_agent(ksr: FakeKSR, router: Any, tables: HTables) -> None:
    _bridge_refer(ksr, router)
    ksr.pv["$T_reply_code"] = 486
    router.ksr_refer_failure(MSG)
    assert ksr.args_of("tm.t_reply") == [] and ksr.args_of("uac.uac_req_send") == []


def test_bridge_trunk_answers_the_refer_itself(ksr: FakeKSR, router: Any, tables: HTables, store: FakeStore) -> None:
    from routing.tables.model import TransferMode
    store.trunks["telnyx"] = replace(store.trunks["telnyx"], transfer=TransferMode.BRIDGE)
    _bridge_refer(ksr, router)
    assert ksr.args_of("tm.t_relay") == [] and ksr.args_of("tm.t_reply") == [(202, "Accepted")]
    assert ksr.args_of("uac.uac_req_send") == [()]
