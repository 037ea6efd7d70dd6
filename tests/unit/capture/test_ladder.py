"""routing.capture.ladder: lifelines, directions, details (masked) and the summary of a call."""

from __future__ import annotations

import random

from routing.capture.ladder import EDGE, build, endpoint, summarize
from tests.unit.capture.samples import (
    AGENT, CALL_ID, CARRIER, EDGE_SOCKETS, NONCE, RESPONSE, answered_call, pkt, refused_call, sip,
)


def test_directions_lanes_and_order() -> None:
    packets = answered_call()
    shuffled = random.Random(1).sample(packets, len(packets))
    ladder = build(CALL_ID, shuffled, EDGE_SOCKETS)
    assert ladder.lanes == ("192.0.2.11:5070", EDGE, "192.0.2.21:5090")
    assert [e.ts for e in ladder.entries] == sorted(p.ts for p in packets)
    rows = [(e.direction, e.src, e.dst, e.label) for e in ladder.entries]
    assert rows[0] == ("in", "192.0.2.11:5070", "192.0.2.1:5060", "INVITE")
    assert rows[2] == ("out", "192.0.2.1:5060", "192.0.2.21:5090", "INVITE")
    assert rows[3] == ("in", "192.0.2.21:5090", "192.0.2.1:5060", "200 OK")
    assert ladder.entries[3].cseq == "2 INVITE"
    assert ladder.entries[0].time == "00:01:40.000"


def test_details_show_the_headers_that_matter_masked() -> None:
    ladder = build(CALL_ID, answered_call(), EDGE_SOCKETS)
    first, relayed = ladder.entries[0], ladder.entries[2]
    assert "R-URI: sip:+14155550100@192.0.2.1" in first.details
    assert "SDP: 192.0.2.1 audio 20000 RTP/AVP 0 101" in first.details
    auth = next(d for d in first.details if d.startswith("Proxy-Authorization"))
    assert 'response="***"' in auth and 'nonce="***"' in auth and 'username="pbx"' in auth
    assert RESPONSE not in first.text and NONCE not in first.text
    assert "X-Edge-Trunk: pbx" in relayed.details and "X-Edge-DID: +14155550100" in relayed.details


def test_wildcard_listener_matches_any_address_on_its_port() -> None:
    ladder = build(CALL_ID, answered_call(), [("0.0.0.0", 5060)])
    assert ladder.entries[0].direction == "in" and ladder.entries[0].dst_lane == EDGE


def test_ipv6_endpoints_in_brackets_and_loops() -> None:
    assert endpoint("::1", 5060) == "[::1]:5060"
    loop = build("x", [pkt(("192.0.2.1", 5060), ("192.0.2.1", 5060), 1.0, sip("BYE sip:x SIP/2.0", "9 BYE"))],
                 EDGE_SOCKETS)
    assert loop.entries[0].direction == "loop" and loop.lanes == (EDGE,)


def test_summary_of_an_answered_and_a_refused_call() -> None:
    answered = summarize(build(CALL_ID, answered_call(), EDGE_SOCKETS))
    assert (answered.status, answered.caller, answered.callee, answered.attempts, answered.messages) == (
        200, "+14155550123", "+14155550100", 1, 11)
    assert not answered.failed and answered.source == "192.0.2.11:5070"
    refused = summarize(build("refused@192.0.2.99", refused_call(), EDGE_SOCKETS))
    assert (refused.status, refused.reason, refused.attempts, refused.failed) == (403, "Source Not Allowed", 0, True)


def test_failover_attempts_are_counted_and_the_caller_answer_is_final() -> None:
    gw_a, gw_b = ("192.0.2.31", 5080), ("192.0.2.32", 5080)
    packets = [
        pkt(AGENT, ("192.0.2.1", 5060), 1.0, sip("INVITE sip:+44@192.0.2.1 SIP/2.0", "1 INVITE")),
        pkt(("192.0.2.1", 5060), gw_a, 1.1, sip("INVITE sip:+44@gw SIP/2.0", "1 INVITE")),
        pkt(gw_a, ("192.0.2.1", 5060), 1.2, sip("SIP/2.0 503 Service Unavailable", "1 INVITE", to_tag=";tag=1")),
        pkt(("192.0.2.1", 5060), gw_b, 1.3, sip("INVITE sip:+44@gw SIP/2.0", "1 INVITE")),
        pkt(gw_b, ("192.0.2.1", 5060), 1.4, sip("SIP/2.0 486 Busy Here", "1 INVITE", to_tag=";tag=2")),
        pkt(("192.0.2.1", 5060), AGENT, 1.5, sip("SIP/2.0 486 Busy Here", "1 INVITE", to_tag=";tag=2")),
    ]
    summary = summarize(build(CALL_ID, packets, EDGE_SOCKETS))
    assert (summary.attempts, summary.status, summary.failed) == (2, 486, True)
    assert build(CALL_ID, packets, EDGE_SOCKETS).lanes == ("192.0.2.21:5090", EDGE, "192.0.2.31:5080", "192.0.2.32:5080")


def test_no_initial_invite_no_summary() -> None:
    bye_only = [pkt(CARRIER, ("192.0.2.1", 5060), 1.0, sip("BYE sip:x SIP/2.0", "3 BYE", to_tag=";tag=1"))]
    assert summarize(build(CALL_ID, bye_only, EDGE_SOCKETS)) is None


def test_a_request_is_put_before_a_response_to_it_stamped_earlier() -> None:
    edge = ("192.0.2.1", 5060)
    packets = [
        pkt(CARRIER, edge, 1.000, sip("INVITE sip:x SIP/2.0", "1 INVITE")),
        pkt(AGENT, edge, 1.002, sip("SIP/2.0 180 Ringing", "1 INVITE", to_tag=";tag=1")),  # read first
        pkt(edge, AGENT, 1.003, sip("INVITE sip:agent SIP/2.0", "1 INVITE")),               # stamped after
        pkt(edge, CARRIER, 1.004, sip("SIP/2.0 180 Ringing", "1 INVITE", to_tag=";tag=1")),
    ]
    ladder = build(CALL_ID, packets, EDGE_SOCKETS)
    assert [(e.direction, e.label) for e in ladder.entries] == [
        ("in", "INVITE"), ("out", "INVITE"), ("in", "180 Ringing"), ("out", "180 Ringing")]


def test_tls_messages_are_told_by_the_edges_tls_socket() -> None:
    tls_edge = ("192.0.2.1", 5061)
    packets = [pkt(CARRIER, tls_edge, 1.0, sip("INVITE sip:x SIP/2.0", "1 INVITE")),
               pkt(("192.0.2.1", 5060), AGENT, 1.1, sip("INVITE sip:agent SIP/2.0", "1 INVITE"))]
    ladder = build(CALL_ID, packets, [("192.0.2.1", 5060), tls_edge], tls_sockets=[tls_edge])
    assert [e.transport for e in ladder.entries] == ["tls", "udp"]
    assert ladder.entries[0].direction == "in"
