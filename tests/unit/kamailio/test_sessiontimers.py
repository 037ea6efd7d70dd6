"""Session timers kept for the agent (routing.kamailio.sessiontimers, RFC 4028): the carrier made
the refresher at the answer, refresh UPDATEs answered by the edge, refresh re-INVITEs relayed
without timer headers, and the call clock ending a call the carrier stopped refreshing."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.unit.kamailio.fakehtable import HTables
from tests.unit.kamailio.fakeksr import LEASE_A, MSG, FakeKSR, FakeStore, origination_plan, request, termination_plan


def _answer(ksr: FakeKSR, router: Any, ht: HTables, **pvs: Any) -> None:
    """The agent's 2xx to the carrier's INVITE (an origination call)."""
    ht.table("cdr")["call-1"] = json.dumps({"cseq": "1", "start": 1000, "dir": "origination"})
    ksr.pv.update({"$ci": "call-1", "$rs": 200, "$rm": "INVITE", "$avp(edge_plan)": origination_plan().dumps(),
                   "$ft": "ft1", **pvs})
    ksr.returns["textops.has_body_type"] = -1
    router.ksr_onreply_manage(MSG)


def _appended(ksr: FakeKSR) -> list[str]:
    return [a[0] for a in ksr.args_of("hdr.append")]


def test_the_carrier_is_made_the_refresher_when_the_agent_answers_without_timers(ksr: FakeKSR, router: Any) -> None:
    ht = HTables(ksr)
    _answer(ksr, router, ht, **{"$T_req($hdr(Session-Expires))": "1800", "$T_req($hdr(Supported))": "100rel, timer",
                                "$hdr(Session-Expires)": ""})
    assert _appended(ksr) == ["Session-Expires: 1800;refresher=uac\r\nRequire: timer\r\n"]
    assert ksr.pv["$dlg_var(edge_st)"] == "1800:uac"
    assert int(time.time()) + 1768 - 1 <= int(ht.table("sessiontimer")["call-1"]) <= int(time.time()) + 1768


def test_nothing_changes_when_the_agent_does_timers_or_nobody_asked(ksr: FakeKSR, router: Any) -> None:
    ht = HTables(ksr)
    _answer(ksr, router, ht, **{"$T_req($hdr(Session-Expires))": "1800", "$T_req($hdr(Supported))": "timer",
                                "$hdr(Session-Expires)": "1800;refresher=uas"})
    _answer(ksr, router, ht)
    assert _appended(ksr) == [] and "sessiontimer" not in ht.tables


def _from_carrier(ksr: FakeKSR, method: str, sdp: bool, **pvs: Any) -> None:
    request(ksr, method=method, **{"$ft": "ft1", "$dlg(from_tag)": "ft1", "$dlg_var(edge_dir)": "origination",
                                   "$dlg_var(edge_st)": "90:uac", **pvs})
    ksr.returns["siputils.has_totag"] = 1
    ksr.returns["textops.has_body_type"] = 1 if sdp else -1


def test_a_refresh_update_without_sdp_is_answered_by_the_edge(ksr: FakeKSR, router: Any) -> None:
    ht = HTables(ksr)
    _from_carrier(ksr, "UPDATE", sdp=False)
    router.ksr_in_dialog(MSG)
    assert ksr.replies == [("tm", 200, "OK")] and ksr.args_of("tm.t_relay") == []
    assert ksr.args_of("hdr.append_to_reply") == [("Session-Expires: 90;refresher=uac\r\nRequire: timer\r\n",)]
    assert int(ht.table("sessiontimer")["call-1"]) >= int(time.time()) + 59  # 90 - min(32, 30)


def test_a_refresh_reinvite_reaches_the_agent_without_timer_headers_and_its_2xx_gets_them_back(
        ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    ht = HTables(ksr)
    _from_carrier(ksr, "INVITE", sdp=True, **{"$hdr(Require)": "timer"})
    router.ksr_in_dialog(MSG)
    assert ksr.args_of("tm.t_relay") == [()] and ksr.replies == []
    assert {a[0] for a in ksr.args_of("hdr.remove")} >= {"Session-Expires", "Min-SE", "Require"}
    assert ksr.pv["$avp(edge_refresh)"] == "90:uac"
    ksr.calls.clear()
    ksr.pv.update({"$rs": 200, "$rm": "INVITE", "$hdr(Session-Expires)": ""})
    router.ksr_onreply_manage(MSG)
    assert "Session-Expires: 90;refresher=uac\r\nRequire: timer\r\n" in _appended(ksr)
    assert "call-1" in ht.table("sessiontimer")


def test_the_agents_own_update_is_relayed(ksr: FakeKSR, router: Any) -> None:
    HTables(ksr)
    _from_carrier(ksr, "UPDATE", sdp=False, **{"$ft": "tt1"})  # the callee (agent) of an origination call
    router.ksr_in_dialog(MSG)
    assert ksr.args_of("tm.t_relay") == [()] and ksr.replies == []


def test_the_call_clock_ends_a_call_the_carrier_stopped_refreshing(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    ht = HTables(ksr)
    ht.table("sessiontimer")["call-1"] = str(int(time.time()) - 1)
    ht.table("deadline")["call-1"] = "1900000000:11:22:ft1:tt1"
    reasons: list[dict[str, str]] = []
    store.record_media = lambda call_id, fields, keep_s=0: reasons.append(fields) or True  # type: ignore[attr-defined]
    router.ksr_call_clock(MSG)
    assert "call-1" not in ht.table("sessiontimer")
    assert reasons == [{"media_end_reason": "session_expired"}]
    # ended in the same tick: its BYEs sent (here dlg.end_dlg: the fake has no UDP listener), the
    # clock now waits for dialog:end (the cleanup form)
    assert ht.table("deadline")["call-1"].split(":")[1] == "cleanup"
    assert [r["method"] for r in ht.rpcs] == ["dlg.end_dlg"]


def _termination_answer(ksr: FakeKSR, router: Any, ht: HTables, **pvs: Any) -> None:
    """The carrier's 2xx to an agent's INVITE without timers (a termination call), asking to refresh."""
    ht.table("cdr")["call-1"] = json.dumps({"cseq": "1", "start": 1000, "dir": "termination"})
    ksr.pv.update({"$ci": "call-1", "$rs": 200, "$rm": "INVITE", "$avp(edge_plan)": termination_plan(("a", LEASE_A)).dumps(),
                   "$ft": "agent-tag", "$avp(edge_dir)": "termination", "$avp(edge_from_caller)": 1,
                   "$T_req($hdr(Session-Expires))": "", "$T_req($hdr(Supported))": "100rel",
                   "$hdr(Session-Expires)": "90;refresher=uas", "$hdr(Contact)": "<sip:carrier@192.0.2.7>",
                   "$T_req($hdr(Contact))": "<sip:agent@10.9.0.7:5070>",
                   "$rb": "v=0\r\no=carrier 7 1 IN IP4 192.0.2.7\r\n", **pvs})
    ksr.returns["textops.has_body_type"] = 1
    router.ksr_onreply_manage(MSG)


def test_a_termination_calls_answer_keeps_the_invite_as_the_carrier_received_it(ksr: FakeKSR, router: Any) -> None:
    ht = HTables(ksr)
    sent = "v=0\r\no=- 1 1 IN IP4 203.0.113.5\r\nm=audio 30000 RTP/AVP 0\r\n"
    ht.table("stsent")["call-1"] = f"INVITE sip:+44@192.0.2.7 SIP/2.0\r\nContent-Length: {len(sent)}\r\n\r\n{sent}"
    _termination_answer(ksr, router, ht, **{"$avp(edge_st_sent)": 1})
    assert ksr.pv["$dlg_var(edge_st)"] == "90:uas" and _appended(ksr) == []  # the carrier refreshes already
    kept = json.loads(ksr.pv["$dlg_var(edge_st_sdp)"])
    assert kept == {"o": "o=carrier 7 1 IN IP4 192.0.2.7", "sdp": sent, "contact": "<sip:agent@10.9.0.7:5070>"}
    assert "call-1" not in ht.table("stsent")
    # a retransmitted 2xx finds the entry gone and keeps what it had
    _termination_answer(ksr, router, ht, **{"$avp(edge_st_sent)": 1})
    assert json.loads(ksr.pv["$dlg_var(edge_st_sdp)"]) == kept


def test_a_termination_call_without_the_invite_as_sent_keeps_nothing(ksr: FakeKSR, router: Any) -> None:
    ht = HTables(ksr)
    _termination_answer(ksr, router, ht)  # an INVITE the plugin did not mark (the agent offered timers)
    assert ksr.pv["$dlg_var(edge_st)"] == "90:uas" and "$dlg_var(edge_st_sdp)" not in ksr.pv


def test_a_termination_carriers_refresh_update_is_answered_with_the_carrier_as_refresher(ksr: FakeKSR, router: Any) -> None:
    HTables(ksr)
    _from_carrier(ksr, "UPDATE", sdp=False, **{"$ft": "carrier-tag", "$dlg(from_tag)": "agent-tag",
                                                "$dlg_var(edge_dir)": "termination", "$dlg_var(edge_st)": "90:uas"})
    router.ksr_in_dialog(MSG)
    assert ksr.replies == [("tm", 200, "OK")]
    assert ksr.args_of("hdr.append_to_reply") == [("Session-Expires: 90;refresher=uac\r\nRequire: timer\r\n",)]
