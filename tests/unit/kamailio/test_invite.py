"""The initial INVITE: decision, relay, hop send and offer flags, one network per side."""

from __future__ import annotations

import json
import types
from dataclasses import replace
from decimal import Decimal
from typing import Any

from routing.tables import keys
from routing.tables.model import MediaPolicy, RouteEntry, SrtpMode
from routing.call.plan import CallPlan
from routing.tables.store import StoreUnavailable
from tests.unit.kamailio.fakeksr import (counted, failed_branch, FakeKSR, FakeStore, LEASE_A, LEASE_B,
                                         MEDIA_ERROR_AVP, MSG, PLAN_AVP, request,
                                         SDP_OFFER, termination_plan)


# -- initial INVITE ---------------------------------------------------------------------------


def test_reject_decision_is_sent_statelessly(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    request(ksr, **{"$si": "198.18.0.1"})
    router.ksr_initial_invite(MSG)
    assert ksr.replies == [("sl", 403, "Source Not Allowed")]
    # logged with its reason code and recorded for edgectl explain
    assert any(text.startswith("edge: reject 403 acl_source request ") for _, text in ksr.logs)
    record = json.loads(store.traces[ksr.pv["$ci"]])
    assert (record["code"], record["tag"], record["stage"], record["where"]) == (403, "acl_source", "acl", "request")


def test_relay_decision(ksr: FakeKSR, router: Any, kemi: types.ModuleType, store: FakeStore) -> None:
    request(ksr)
    router.ksr_initial_invite(MSG)
    assert ksr.replies == []
    assert ksr.args_of("hdr.remove") == []  # no header to strip in this request
    assert ksr.pv["$ru"] == "sip:+14155550100@agent.example.com:5080"
    assert ksr.relayed == ["sip:+14155550100@agent.example.com:5080"]
    # the agent headers, for the native branch route to append to this hop's branch
    assert ksr.args_of("hdr.append") == []
    assert ksr.pv["$avp(edge_hop_hdrs)"] == (
        "X-Edge-Trunk: telnyx\r\nX-Edge-DID: +14155550100\r\nX-Edge-Caller: +12125550123\r\n")
    armed = ksr.args_of("tm.t_on_failure") + ksr.args_of("tm.t_on_reply")
    assert armed == [("ksr_failure_manage",), ("ksr_onreply_manage",)]
    for (name,) in armed:
        assert hasattr(kemi.Edge, name) and callable(getattr(kemi.Edge, name)), name
    names = ksr.names()
    for step in ("rr.record_route",
                 "dialog.dlg_manage", "tm.t_newtran", "tm.t_on_failure", "tm.t_on_branch", "tm.t_relay"):
        assert step in names, step
    # the native branch route (tests/unit/test_settings_render.py checks it exists) makes the offer
    assert ksr.args_of("tm.t_on_branch") == [("ksr_branch_manage",)]
    assert "rtpengine.rtpengine_offer" not in names
    (flags,) = ksr.offers  # left for the branch route by the hop's relay: node default policies
    assert flags.split() == ["replace-origin", "replace-session-connection", "ICE=remove", "strict-source",
                             "endpoint-learning=heuristic", "RTP/AVP",
                             "codec-mask-all", "codec-offer-PCMU", "codec-offer-PCMA", "codec-offer-telephone-event"]
    assert names.index("dialog.dlg_manage") < names.index("tm.t_relay")
    assert names.index("tm.t_on_failure") < names.index("tm.t_relay")
    plan = CallPlan.loads(ksr.pv[PLAN_AVP])
    assert plan.call_id == "call-1" and plan.index == 0 and len(plan.targets) == 2
    assert store.released == []


def test_termination_relay(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.route_table["+1"] = [RouteEntry("+1", "telnyx", Decimal("0.01"))]
    request(ksr, **{"$si": "10.9.0.7", "$rU": "14155550100"})
    router.ksr_initial_invite(MSG)
    assert ksr.replies == []
    assert ksr.relayed == ["sip:+14155550100@192.0.2.10:5060"]
    assert ksr.args_of("hdr.append") == []
    assert [a["leases"][0].key for a in store.acquired] == [keys.agent_lease("bot"), keys.trunk_lease("telnyx")]
    # the agent offered no session timers: the native onsend_route keeps the INVITE as sent
    assert ksr.pv["$avp(edge_st_sent)"] == 1


def test_a_termination_invite_offering_timers_is_not_kept_as_sent(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.route_table["+1"] = [RouteEntry("+1", "telnyx", Decimal("0.01"))]
    request(ksr, **{"$si": "10.9.0.7", "$rU": "14155550100", "$hdr(Supported)": "100rel, timer"})
    router.ksr_initial_invite(MSG)
    assert ksr.relayed and "$avp(edge_st_sent)" not in ksr.pv


def test_an_origination_invite_is_not_kept_as_sent(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    request(ksr)
    router.ksr_initial_invite(MSG)
    assert ksr.relayed and "$avp(edge_st_sent)" not in ksr.pv


def test_store_failure_after_partial_admission_releases_the_slots(
    ksr: FakeKSR, router: Any, store: FakeStore
) -> None:
    """The agent slot was taken, then redis timed out on the trunk slot: the 503 must not
    leave the agent slot held for lease_ttl_s (no dialog exists yet to release it)."""
    store.route_table["+1"] = [RouteEntry("+1", "telnyx", Decimal("0.01"))]
    store.acquire_error_at = 2
    request(ksr, **{"$si": "10.9.0.7", "$rU": "+14155550100"})
    router.ksr_initial_invite(MSG)
    assert ksr.replies == [("tm", 503, "Routing Store Unavailable")]
    assert len(store.acquired) == 2  # agent admitted, then the trunk acquire failed
    assert store.released == ["call-1"]


def test_relay_send_error_moves_to_the_next_target(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    request(ksr)
    ksr.returns["tm.t_relay"] = -1
    router.ksr_initial_invite(MSG)
    assert ksr.relayed == ["sip:+14155550100@agent.example.com:5080", "sip:bot@10.9.0.2"]
    assert ksr.replies == [("tm", 503, "Agent Unreachable")]
    assert store.released == ["call-1"]


def test_rtpengine_failure_releases_the_slots(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    def rtpengine_refuses() -> bool:
        ksr.pv[MEDIA_ERROR_AVP] = 1  # what the native branch route does when rtpengine_offer fails
        return False

    request(ksr)
    ksr.branch_route = rtpengine_refuses
    router.ksr_initial_invite(MSG)
    assert ksr.replies == [("tm", 503, "Media Relay Unavailable")]
    assert ("Retry-After: 7\r\n",) in ksr.args_of("hdr.append_to_reply")
    assert store.released == ["call-1"]
    assert ksr.relayed == ["sip:+14155550100@agent.example.com:5080"]  # the branch was dropped, no failover


def test_hop_whose_offer_cannot_be_made_gets_503_without_a_relay(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    """No offer can be made for the failover hop (the caller's side requires SRTP and the offer is
    plain; the initial INVITE's check would have refused it with 488): the caller gets 503, nothing
    is sent (the native branch route never sees a refused offer) and the slots are released."""
    plan = termination_plan(("a", LEASE_A), ("b", LEASE_B))
    plan.caller_media = MediaPolicy(srtp=SrtpMode.SDES).to_json()
    failed_branch(ksr, plan, 503, "Service Unavailable")
    ksr.pv["$rb"] = SDP_OFFER
    router.ksr_failure_manage(MSG)
    assert ksr.relayed == []
    assert ksr.replies == [("tm", 503, "Media Relay Unavailable")]
    assert store.released == ["call-1"]


def test_srtp_required_but_plain_offer_gets_488(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.trunks["telnyx"] = replace(store.trunks["telnyx"], media=MediaPolicy(srtp=SrtpMode.SDES))
    request(ksr)
    router.ksr_initial_invite(MSG)
    assert ksr.replies == [("sl", 488, "SRTP Required")]
    assert store.released == ["call-1"]
    assert ksr.relayed == []


def test_an_offer_without_an_allowed_codec_gets_488_with_the_calls_facts(ksr: FakeKSR, router: Any,
                                                                           store: FakeStore) -> None:
    # the carrier's trunk allows opus only; its offer has PCMU, PCMA and telephone-event
    store.trunks["telnyx"] = replace(store.trunks["telnyx"], media=MediaPolicy(codecs=("opus",)))
    request(ksr)
    router.ksr_initial_invite(MSG)
    assert ksr.replies == [("sl", 488, "No Allowed Codec")]
    assert store.released == ["call-1"]
    assert ksr.relayed == [] and ksr.offers == []  # no branch, no offer left for one
    (record,) = router.worker.writer.records
    assert (record["sip_code"], record["reject_tag"]) == (488, "codecs_not_allowed")
    assert (record["direction"], record["trunk"], record["agent"]) == ("origination", "telnyx", "bot")


def test_agent_policy_shapes_the_offer(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.agents["bot"] = replace(store.agents["bot"], media=MediaPolicy(codecs=("opus",), srtp=SrtpMode.DTLS))
    request(ksr)
    router.ksr_initial_invite(MSG)
    (flags,) = ksr.offers
    assert "UDP/TLS/RTP/SAVP SDES-off" in flags and "codec-transcode-opus" in flags


def test_delayed_offer_leaves_no_offer_for_the_branch_route(ksr: FakeKSR, router: Any) -> None:
    request(ksr)
    ksr.returns["textops.has_body_type"] = -1  # an INVITE without SDP: the offer comes in the 2xx
    router.ksr_initial_invite(MSG)
    assert ksr.replies == [] and ksr.offers == [""]


def test_failover_hop_gets_its_own_offer(ksr: FakeKSR, router: Any) -> None:
    plan = termination_plan(("a", LEASE_A), ("b", LEASE_B))
    plan.targets[1] = replace(plan.targets[1], media=MediaPolicy(codecs=("PCMA",)).to_json())
    failed_branch(ksr, plan, 503, "Service Unavailable")
    ksr.pv["$rb"] = SDP_OFFER
    router.ksr_failure_manage(MSG)
    (flags,) = ksr.offers
    assert "codec-offer-PCMA" in flags.split() and "codec-offer-PCMU" not in flags.split()


def test_sip_keepalive_of_the_callee_sets_ka_dst_only(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.agents["bot"] = replace(store.agents["bot"], media=MediaPolicy(sip_keepalive=True))
    request(ksr)
    router.ksr_initial_invite(MSG)
    assert ("ka-dst",) in ksr.args_of("dialog.dlg_set_property")
    assert ("ka-src",) not in ksr.args_of("dialog.dlg_set_property")
    # the first hop of a new dialog: nothing of an earlier hop to reset
    assert not ksr.args_of("dialog.dlg_reset_property")


def test_a_failover_hop_resets_the_keepalive_of_the_hop_before(ksr: FakeKSR, router: Any) -> None:
    plan = termination_plan(("a", LEASE_A), ("b", LEASE_B))
    plan.targets[0] = replace(plan.targets[0], media=MediaPolicy(sip_keepalive=True).to_json())
    failed_branch(ksr, plan, 503, "Service Unavailable")
    router.ksr_failure_manage(MSG)
    assert ("ka-dst",) in ksr.args_of("dialog.dlg_reset_property")
    assert ("ka-dst",) not in ksr.args_of("dialog.dlg_set_property")

def test_relay_strips_spoofed_edge_headers_and_unlisted_x_headers(ksr: FakeKSR, router: Any) -> None:
    message = (
        "INVITE sip:+14155550100@edge SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.5\r\n"
        "X-Edge-Trunk: spoofed\r\nx-tenant: 7\r\nP-Asserted-Identity: <sip:+1@x>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    request(ksr, **{"$mb": message})
    router.ksr_initial_invite(MSG)
    # the carrier trunk allows no X- header but is trusted for identity
    assert ksr.args_of("hdr.remove") == [("X-Edge-Trunk",), ("x-tenant",)]

def test_relayed_call_counts_an_attempt_and_refusals_count_their_reason(ksr: FakeKSR, router: Any) -> None:
    request(ksr)
    router.ksr_initial_invite(MSG)
    assert counted(ksr) == [("byoc_edge_calls_attempted_total", "origination", "telnyx", "bot")]
    assert ksr.pv["$avp(edge_mlabels)"] == "origination|telnyx|bot"
    ksr.calls.clear()
    request(ksr, **{"$rU": "+14155559999", "$ci": "call-2"})
    router.ksr_initial_invite(MSG)
    assert counted(ksr) == [("byoc_edge_rejections_total", "did_not_found")]


def test_origination_leaves_from_the_agent_socket_naming_both_interfaces(ksr: FakeKSR, sided_router: Any) -> None:
    request(ksr)
    sided_router.ksr_initial_invite(MSG)
    assert ksr.replies == []
    assert ("$fs", "udp:10.0.2.10:5060") in ksr.args_of("pv.sets")
    (flags,) = ksr.offers
    assert flags.split()[-2:] == ["direction=carrier", "direction=agent"]  # the offer came from the carrier
    # the agent's answer names no interface: rtpengine keeps the ones the offer chose
    ksr.pv.update({"$rs": 180, "$rb": SDP_OFFER})
    ksr.pv["$avp(edge_from_caller)"] = 1
    sided_router.ksr_onreply_manage(MSG)
    (answer,) = ksr.args_of("rtpengine.rtpengine_answer")[0]
    assert "direction=" not in answer


def test_delayed_offer_from_the_agent_names_its_interface_first(ksr: FakeKSR, sided_router: Any) -> None:
    """An INVITE without SDP: the agent's 200 carries the offer, made from the agent's side."""
    request(ksr)
    ksr.returns["textops.has_body_type"] = -1
    sided_router.ksr_initial_invite(MSG)
    ksr.returns["textops.has_body_type"] = 1
    ksr.pv.update({"$rs": 200, "$rm": "INVITE", "$rb": SDP_OFFER, "$avp(edge_from_caller)": 1,
                   "$avp(edge_req_sdp)": 0})
    sided_router.ksr_onreply_manage(MSG)
    (offer,) = ksr.args_of("rtpengine.rtpengine_manage")[-1]
    assert offer.split()[-2:] == ["direction=agent", "direction=carrier"]


def test_termination_leaves_from_the_carrier_socket(ksr: FakeKSR, sided_router: Any, store: FakeStore) -> None:
    store.route_table["+1"] = [RouteEntry("+1", "telnyx", Decimal("0.01"))]
    request(ksr, **{"$si": "10.9.0.7", "$rU": "14155550100"})
    sided_router.ksr_initial_invite(MSG)
    assert ksr.relayed == ["sip:+14155550100@192.0.2.10:5060"]
    assert ("$fs", "udp:10.0.1.10:5060") in ksr.args_of("pv.sets")
    (flags,) = ksr.offers
    assert flags.split()[-2:] == ["direction=agent", "direction=carrier"]


def test_failover_hop_is_sent_from_its_sides_socket(ksr: FakeKSR, sided_router: Any) -> None:
    failed_branch(ksr, termination_plan(("a", LEASE_A), ("b", LEASE_B)), 503, "Service Unavailable")
    sided_router.ksr_failure_manage(MSG)
    assert ksr.relayed == ["sip:+14155550100@gw-b"]
    assert ("$fs", "udp:10.0.1.10:5060") in ksr.args_of("pv.sets")


def test_one_network_edge_names_no_interface_and_forces_no_socket(ksr: FakeKSR, router: Any) -> None:
    request(ksr)
    router.ksr_initial_invite(MSG)
    assert "$fs" not in [name for name, _ in ksr.args_of("pv.sets")]
    (flags,) = ksr.offers
    assert "direction=" not in flags


def test_rtpengine_failure_is_answered_when_redis_cannot_release_the_slots(ksr: FakeKSR, router: Any,
                                                                           store: FakeStore) -> None:
    def rtpengine_refuses() -> bool:
        ksr.pv[MEDIA_ERROR_AVP] = 1
        return False

    def release(call_id: str, fence_s: int = 0) -> int:
        raise StoreUnavailable("Timeout reading from socket")

    request(ksr)
    ksr.branch_route = rtpengine_refuses
    store.release = release  # type: ignore[method-assign]
    router.ksr_initial_invite(MSG)
    # failure.end_attempt: the caller is answered all the same, the lease expires on its own
    assert ksr.replies == [("tm", 503, "Media Relay Unavailable")]
    assert [text for level, text in ksr.logs if level == "err"] == [
        "edge: cannot release slots of call-id=call-1: Timeout reading from socket\n"]


def test_agents_answer_timeout_bounds_both_tm_timers_of_its_branches(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.agents["bot"] = replace(store.agents["bot"], answer_timeout_ms=1500)
    request(ksr)
    router.ksr_initial_invite(MSG)
    assert ksr.args_of("tm.t_set_fr") == [(1500, 1500)] and len(ksr.relayed) == 1
    # a failover to the next URI keeps the bound (failure route)
    plan = CallPlan.loads(ksr.pv["$avp(edge_plan)"])
    failed_branch(ksr, plan, 408, "Request Timeout", timed_out=True)
    router.ksr_failure_manage(MSG)
    assert ksr.args_of("tm.t_set_fr") == [(1500, 1500), (1500, 1500)] and len(ksr.relayed) == 2


def test_no_answer_timeout_leaves_the_node_timers(ksr: FakeKSR, router: Any) -> None:
    request(ksr)
    router.ksr_initial_invite(MSG)
    assert ksr.args_of("tm.t_set_fr") == []


def test_the_caller_id_policys_choice_replaces_the_from(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.agents["bot"] = replace(store.agents["bot"], caller_ids=("+1415",), caller_id="+14155550177")
    request(ksr, **{"$si": "10.9.0.7", "$rU": "+442071838750", "$tU": "+442071838750", "$fU": "+12125550123",
                    "$fd": "10.9.0.7"})
    store.route_table["+"] = [RouteEntry("+", "telnyx", Decimal("0.01"))]
    router.ksr_initial_invite(MSG)
    assert ksr.args_of("uac.uac_replace_from_uri") == [("sip:+14155550177@10.9.0.7",)]
    names = ksr.names()
    assert names.index("dialog.dlg_manage") < names.index("uac.uac_replace_from_uri") < names.index("tm.t_relay")


def _termination_with_timer(ksr: FakeKSR, router: Any, store: FakeStore, **pvs: Any) -> None:
    store.route_table["+1"] = [RouteEntry("+1", "telnyx", Decimal("0.01"))]
    store.trunks["telnyx"] = replace(store.trunks["telnyx"], session_timer_s=1800)
    request(ksr, **{"$si": "10.9.0.7", "$rU": "14155550100", **pvs})
    router.ksr_initial_invite(MSG)
    assert ksr.relayed == ["sip:+14155550100@192.0.2.10:5060"]


def test_a_trunk_with_session_timer_asks_the_carrier_to_refresh_for_an_agent_without_timers(
        ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    _termination_with_timer(ksr, router, store, **{"$hdr(Supported)": "100rel"})
    # added by the native branch route (RFC 4028 sections 7.1 and 9: the UAS keeps refresher=uas)
    assert ksr.pv["$avp(edge_hop_hdrs)"] == "Supported: timer\r\nSession-Expires: 1800;refresher=uas\r\n"
    assert CallPlan.loads(ksr.pv[PLAN_AVP]).current.session_timer_s == 1800


def test_a_trunk_with_session_timer_leaves_an_agent_that_does_timers_alone(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    _termination_with_timer(ksr, router, store, **{"$hdr(Supported)": "timer"})
    assert "$avp(edge_hop_hdrs)" not in ksr.pv
    ksr.pv.clear()
    ksr.calls.clear()
    ksr.relayed.clear()
    _termination_with_timer(ksr, router, store, **{"$hdr(Session-Expires)": "600"})
    assert "$avp(edge_hop_hdrs)" not in ksr.pv
