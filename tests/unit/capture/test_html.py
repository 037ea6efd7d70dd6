"""routing.capture.html: one arrow per message, escaped and masked text, lifelines."""

from __future__ import annotations

from routing.capture.html import render
from routing.capture.ladder import build
from tests.unit.capture.samples import CALL_ID, EDGE_SOCKETS, NONCE, RESPONSE, answered_call, pkt, sip


def test_one_arrow_per_message_and_one_lifeline_per_endpoint() -> None:
    page = render(build(CALL_ID, answered_call(), EDGE_SOCKETS))
    assert page.count('<g class="msg"') == 11
    assert page.count('<g class="lane"') == 3
    assert page.count("<details>") == 11
    assert RESPONSE not in page and NONCE not in page


def test_text_is_escaped() -> None:
    evil = [pkt(("192.0.2.11", 5070), ("192.0.2.1", 5060), 1.0,
                sip("INVITE sip:<script>@x SIP/2.0", "1 INVITE", call_id="<b>id</b>"))]
    page = render(build("<b>id</b>", evil, EDGE_SOCKETS))
    assert "<script>" not in page and "<b>id</b>" not in page and "&lt;script&gt;" in page
