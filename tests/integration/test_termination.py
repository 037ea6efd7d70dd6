"""Termination (agent -> edge -> carrier): least-cost routing and failover, with real SIPp peers."""

from __future__ import annotations

import itertools

from routing.tables import keys

from .conftest import AGENT_IP, CARRIER_A, CARRIER_B, CARRIER_C, Edge
from .replies import final_invite_responses, header_values, status_line
from tests.sipp import reject_uac_scenario, reply_uas_scenario, uac, uas

GW_PORT = 5080
DEST = "+442071838750"
_runs = itertools.count()


def provision(edge: Edge, agent_max: int | None = None, a_max: int | None = None, b_max: int | None = None) -> None:
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, GW_PORT)], max_calls=a_max)
    edge.trunk("carrier-b", [f"{CARRIER_B}/32"], [(CARRIER_B, GW_PORT)], max_calls=b_max)
    edge.agent("bot", ["sip:127.0.0.21:5090"], [f"{AGENT_IP}/32"], max_calls=agent_max)
    # carrier-a is cheaper for the UK, so it is tried first
    edge.route("+44", "carrier-a", "0.0100")
    edge.route("+44", "carrier-b", "0.0200")


def place(edge: Edge, number: str = DEST) -> tuple[int, str]:
    caller = uac(edge.workdir / f"agent-{next(_runs)}", AGENT_IP, 5070, edge.sip, number,
                 scenario=reject_uac_scenario(edge.workdir))
    assert caller.wait() == 0, caller.output()
    finals = caller.final_status()
    assert len(finals) == 1, caller.messages()
    return finals[0]


def test_agent_call_reaches_cheapest_carrier_with_media(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    before = edge.rtpengine_totals()
    carrier = uas(edge.workdir / "carrier-a", CARRIER_A, GW_PORT, answer_ms=200)
    agent = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, DEST, caller="+14155550100", hold_ms=1500)
    assert agent.wait() == 0, agent.output()
    assert carrier.wait() == 0, carrier.output()
    invite = carrier.received_requests("INVITE")[0]
    assert f"INVITE sip:{DEST}@{CARRIER_A}:{GW_PORT} SIP/2.0" in invite
    assert "c=IN IP4 127.0.0.1" in invite and f"c=IN IP4 {AGENT_IP}" not in invite
    assert "X-Edge-" not in invite  # internal headers never reach a carrier
    for method in ("ACK", "INFO", "UPDATE", "BYE"):
        assert carrier.received_requests(method), f"carrier never got {method}"
    after = edge.rtpengine_totals()
    assert after["Total relayed packets"] - before.get("Total relayed packets", 0) >= 100


def test_longest_prefix_wins_over_cheaper_short_prefix(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    edge.route("+4420", "carrier-b", "0.0500")  # dearer, but a longer prefix
    carrier_b = uas(edge.workdir / "carrier-b", CARRIER_B, GW_PORT, answer_ms=50)
    assert place(edge) == (200, "OK")
    assert carrier_b.received_requests("INVITE")


def test_equal_rate_ordered_by_priority(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    edge.redis.delete(keys.route("+44"))
    edge.route("+44", "carrier-a", "0.0100", priority=20)
    edge.route("+44", "carrier-b", "0.0100", priority=5)
    carrier_b = uas(edge.workdir / "carrier-b", CARRIER_B, GW_PORT, answer_ms=50)
    assert place(edge) == (200, "OK")
    assert carrier_b.received_requests("INVITE")


def test_no_route_gets_404(clean_edge: Edge) -> None:
    provision(clean_edge)
    assert place(clean_edge, "+81312345678") == (404, "No Route")


def test_invalid_number_gets_484(clean_edge: Edge) -> None:
    provision(clean_edge)
    assert place(clean_edge, "not-a-number") == (484, "Invalid Destination Number")


def test_failover_on_5xx_to_next_carrier(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    a = uas(edge.workdir / "a", CARRIER_A, GW_PORT, scenario=reply_uas_scenario(edge.workdir, 503), rtp_echo=False)
    b = uas(edge.workdir / "b", CARRIER_B, GW_PORT, answer_ms=50)
    assert place(edge) == (200, "OK")
    assert a.received_requests("INVITE") and b.received_requests("INVITE")
    assert "failover" in edge.log()


def test_failover_on_timeout_of_unreachable_gateway(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    # nothing listens on carrier-a's gateway
    b = uas(edge.workdir / "b", CARRIER_B, GW_PORT, answer_ms=50)
    assert place(edge) == (200, "OK")
    assert b.received_requests("INVITE")


def test_failover_on_408(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    uas(edge.workdir / "a", CARRIER_A, GW_PORT, scenario=reply_uas_scenario(edge.workdir, 408), rtp_echo=False)
    b = uas(edge.workdir / "b", CARRIER_B, GW_PORT, answer_ms=50)
    assert place(edge) == (200, "OK")
    assert b.received_requests("INVITE")


def test_no_failover_on_4xx(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    uas(edge.workdir / "a", CARRIER_A, GW_PORT, scenario=reply_uas_scenario(edge.workdir, 486), rtp_echo=False)
    b = uas(edge.workdir / "b", CARRIER_B, GW_PORT, answer_ms=50)
    assert place(edge) == (486, "Test Reply 486")
    assert not b.received_requests("INVITE")


def test_no_failover_on_6xx(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    uas(edge.workdir / "a", CARRIER_A, GW_PORT, scenario=reply_uas_scenario(edge.workdir, 603), rtp_echo=False)
    b = uas(edge.workdir / "b", CARRIER_B, GW_PORT, answer_ms=50)
    assert place(edge) == (603, "Test Reply 603")
    assert not b.received_requests("INVITE")


def test_no_failover_after_early_media(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    uas(edge.workdir / "a", CARRIER_A, GW_PORT, scenario=reply_uas_scenario(edge.workdir, 503, early_media=True),
        rtp_echo=False)
    b = uas(edge.workdir / "b", CARRIER_B, GW_PORT, answer_ms=50)
    code, _ = place(edge)
    assert code == 500  # a downstream 503 is relayed as 500 (RFC 3261 section 16.7 step 6)
    assert not b.received_requests("INVITE")


def test_all_carriers_fail_best_response_wins(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    edge.trunk("carrier-c", [f"{CARRIER_C}/32"], [(CARRIER_C, GW_PORT)])
    edge.route("+44", "carrier-c", "0.0300")
    uas(edge.workdir / "a", CARRIER_A, GW_PORT, scenario=reply_uas_scenario(edge.workdir, 503), rtp_echo=False)
    uas(edge.workdir / "b", CARRIER_B, GW_PORT, scenario=reply_uas_scenario(edge.workdir, 408), rtp_echo=False)
    uas(edge.workdir / "c", CARRIER_C, GW_PORT, scenario=reply_uas_scenario(edge.workdir, 502), rtp_echo=False)
    # 408 is the lowest class received (RFC 3261 section 16.7)
    assert place(edge) == (408, "Test Reply 408")


def test_all_carriers_silent_gets_503(clean_edge: Edge) -> None:
    provision(clean_edge)
    assert place(clean_edge) == (503, "All Carriers Failed")


def test_full_trunk_is_skipped_for_the_next(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, a_max=0)
    b = uas(edge.workdir / "b", CARRIER_B, GW_PORT, answer_ms=50)
    assert place(edge) == (200, "OK")
    assert b.received_requests("INVITE")


def test_every_trunk_full_gets_503_naming_the_limit(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, a_max=0, b_max=0)
    caller = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, DEST, scenario=reject_uac_scenario(edge.workdir))
    assert caller.wait() == 0, caller.output()
    [final] = final_invite_responses(caller)
    assert status_line(final) == (503, "Trunk Limit Reached: carrier-b")
    assert header_values(final, "Retry-After") == ["7"]  # limits.retry_after_s
