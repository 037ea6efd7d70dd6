"""Graceful overload (issue 12 item 3): no slot outlives its call, whatever the load.

A burst of calls whose callers give up as a carrier under overload does (no ACK for the 2xx, no
CANCEL while it rings) must leave no lease and no listed call within 60 s of the burst, long
before the maximum call duration; the slots of a removed trunk or agent must not linger.

The edge runs with ``sip.max_call_duration_s`` 600 here, so an answered call's lease lasts
660 s: only the admission's short lease (one hop's ``fr_timer`` + ``fr_inv_timer`` + 30 s,
``RuntimeSettings.admission_ttl_s``) and the ACK watch (``routing/kemi.py`` ``ACK_WAIT_S``, 32 s)
can free these slots in time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

from routing.tables import admin, keys
from routing.tables.calls import active_calls
from tests.sipp import uac, uas

from .conftest import AGENT_IP, CARRIER_A, DID, Edge, restarted
from tests.helpers import wait_until

AGENT_PORT = 5090
#: what the issue requires: every slot of the burst free again within this long after it
RELEASED_WITHIN_S = 60


def _giving_up_caller(workdir: Path, after: str) -> Path:
    """A caller that sends one INVITE (with SDP) and gives up as soon as it gets ``after``
    (``200``: it never ACKs the answer; ``180``: it never CANCELs the ringing call), like a
    carrier whose own timer fired while the edge was slow.  Retransmissions reaching the ended
    call are absorbed by SIPp (dead calls), never answered."""
    optional = "".join(f'  <recv response="{code}" optional="true"/>\n' for code in ("100", "180", "183")
                       if code != after)
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="caller gives up after {after}">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Caller" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[caller]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
    ]]>
  </send>
{optional}  <recv response="{after}"/>
</scenario>
"""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"uac_gives_up_after_{after}.xml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def overload_edge(edge: Edge) -> Iterator[Edge]:
    """Kamailio restarted with calls allowed to last 600 s (lease of an answered call 660 s) and a
    5 s ringing timer (admission lease 1 + 5 + 30 = 36 s); the usual settings afterwards."""
    sip = edge.settings.sip.model_copy(update={"max_call_duration_s": 600, "ringing_timeout_ms": 5000})
    with restarted(edge, "kamailio", sip=sip):
        yield edge


@pytest.fixture
def burst_edge(overload_edge: Edge, clean_edge: Edge) -> Edge:
    """The restarted edge, with empty tables and the zero-counter checks of ``clean_edge``."""
    return clean_edge


def _provision(edge: Edge) -> None:
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, 5080)], max_calls=200)
    edge.agent("bot", [f"sip:{AGENT_IP}:{AGENT_PORT}"], [f"{AGENT_IP}/32"], max_calls=200)
    edge.did(DID, "carrier-a", "bot")


def _calls_listed(edge: Edge) -> list[dict]:
    return active_calls(edge.redis)["calls"]


def test_answered_calls_whose_caller_never_acks_release_their_slots_within_60_s(burst_edge: Edge) -> None:
    """100 calls at 200 CPS; the agent answers each after 100 ms; the caller has given up and never
    ACKs.  Before the fix the leases lasted the maximum call duration (+ 60 s)."""
    edge = burst_edge
    _provision(edge)
    calls = 100
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario="uas_answer.xml", calls=calls,
                answer_ms=100, rtp_echo=False)
    caller = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID,
                 scenario=_giving_up_caller(edge.workdir, "200"), calls=calls, rate=200, limit=calls)
    assert caller.wait(timeout=60) == 0, caller.output()
    ended = time.monotonic()
    answered = caller.final_status().count((200, "OK"))
    assert answered == calls, caller.final_status()
    # the slots were taken and extended by the answer: the burst is held right after it...
    assert edge.leases().get(keys.trunk_lease("carrier-a"), 0) > 0
    agent.stop()  # the agent keeps retransmitting its 2xx for want of an ACK otherwise
    # ...and free again within 60 s of it, as is the call list (edgectl calls)
    wait_until(lambda: edge.active_leases() == 0, timeout=RELEASED_WITHIN_S - (time.monotonic() - ended),
               interval=0.5, what=f"no slot held after the burst: {edge.leases()}")
    wait_until(lambda: not _calls_listed(edge), timeout=RELEASED_WITHIN_S - (time.monotonic() - ended),
               interval=0.5, what="no call listed after the burst")
    assert time.monotonic() - ended < RELEASED_WITHIN_S
    assert "answered but no ACK within 32 s: releasing its slots" in edge.log()


def test_ringing_calls_whose_caller_gives_up_without_cancel_release_their_slots(burst_edge: Edge) -> None:
    """100 calls at 200 CPS ring at the agent, which never answers; the caller gives up at the
    180 and never CANCELs.  tm's ringing timer (5 s here) ends each attempt; nothing is left."""
    edge = burst_edge
    _provision(edge)
    calls = 100
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario="uas_cancel.xml", calls=calls,
                rtp_echo=False)
    caller = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID,
                 scenario=_giving_up_caller(edge.workdir, "180"), calls=calls, rate=200, limit=calls)
    assert caller.wait(timeout=60) == 0, caller.output()
    ended = time.monotonic()
    assert edge.leases().get(keys.trunk_lease("carrier-a"), 0) > 0  # ringing calls hold their slots
    wait_until(lambda: edge.active_leases() == 0, timeout=RELEASED_WITHIN_S, interval=0.5,
               what=f"no slot held after the burst: {edge.leases()}")
    wait_until(lambda: not _calls_listed(edge), timeout=RELEASED_WITHIN_S - (time.monotonic() - ended),
               interval=0.5, what="no call listed after the burst")
    wait_until(lambda: len(agent.received_requests("CANCEL")) == calls, timeout=10,
               what="the edge cancelled every ringing branch at its ringing timeout")


def test_removing_a_trunk_and_an_agent_removes_their_slots(burst_edge: Edge) -> None:
    """A call is up on the trunk and the agent; removing both (DID first) deletes their lease sets
    at once, and the call's own end then releases nothing that lingers."""
    edge = burst_edge
    _provision(edge)
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, answer_ms=100)
    caller = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, hold_ms=3000)
    wait_until(lambda: edge.leases().get(keys.trunk_lease("carrier-a")) == 1, what="call admitted")
    admin.remove_did(edge.redis, DID)
    admin.remove_trunk(edge.redis, "carrier-a")
    admin.remove_agent(edge.redis, "bot")
    assert not edge.redis.exists(keys.trunk_lease("carrier-a"), keys.agent_lease("bot"), keys.trunk_cps("carrier-a"))
    assert edge.active_leases() == 0
    assert caller.wait(timeout=30) == 0, caller.output()  # the call itself goes on and ends normally
    agent.stop()
    wait_until(lambda: not _calls_listed(edge), what="the call is gone from the list after its BYE")
    assert not edge.redis.exists(keys.trunk_lease("carrier-a"), keys.agent_lease("bot"))
