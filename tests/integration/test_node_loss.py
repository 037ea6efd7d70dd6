"""A node that dies gives its slots back, never early, on the running edge: this node's Kamailio
keeps its heartbeat in redis; the calls another node left behind without one are released by this
node's monitor and recorded as ended by the node's loss, while this node's own call in progress
keeps its slots."""

from __future__ import annotations

import time

from routing.tables import keys
from routing.tables.calls import lease_counts
from routing.tables.cdrstore import CdrStore
from routing.tables.store import Lease, RedisStore
from tests.sipp import uac, uas
from tests.helpers import wait_until

from .conftest import AGENT_IP, CARRIER_A, DID, Edge


def test_a_dead_nodes_calls_are_reaped_and_a_live_call_is_not(clean_edge: Edge) -> None:
    edge = clean_edge
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], probe=False, max_calls=5)
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [], probe=False)
    edge.did(DID, "carrier-a", "bot")
    # this node lives: its call clock renews its heartbeat every second
    wait_until(lambda: edge.redis.ttl(keys.node(edge.settings.node)) > 0, what="this node's heartbeat")
    # a call of this node, held through the reaper's rounds
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario="uas_answer.xml", answer_ms=50, rtp_echo=False)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario="uac_simple.xml", hold_ms=11_000,
                  extra=["-timeout", "40"])
    trunk = keys.trunk_lease("carrier-a")
    wait_until(lambda: lease_counts(edge.redis).get(trunk) == 1, what="the live call's slot")
    # a node that died with an answered call on the same trunk: its slot, no heartbeat
    ghost = RedisStore(edge.redis, "ghost-node")
    started = int(time.time() * 1000)
    assert ghost.acquire("ghost-call", [Lease(trunk, 5, "trunk carrier-a")], 3600,
                         facts={"direction": "origination", "trunk": "carrier-a", "agent": "bot", "number": DID,
                                "start_ms": str(started)}).admitted
    ghost.update_call("ghost-call", {"answer_ms": str(started)}, extend_s=3600)
    assert lease_counts(edge.redis).get(trunk) == 2
    # the monitor's next round (every 5 s) gives the dead node's slot back and records its call
    wait_until(lambda: lease_counts(edge.redis).get(trunk) == 1, timeout=15, what="the dead node's slot released")
    assert not edge.redis.exists(keys.call("ghost-node", "ghost-call"))
    [record] = [r for r in CdrStore(edge.redis, 86400).records(started - 1000, int(time.time() * 1000) + 1000)
                if r["node"] == "ghost-node"]
    assert (record["call_id"], record["hangup"], record["trunk"]) == ("ghost-call", "node_lost", "carrier-a")
    # this node's own call kept its slot all along, and ends normally
    assert edge.redis.exists(next(iter(edge.call_records())))
    assert carrier.wait(timeout=40) == 0, carrier.output()
    assert agent.wait(timeout=10) == 0, agent.output()
