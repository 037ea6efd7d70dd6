"""``edgectl demo``: start the embedded default edge, provision a sample carrier
trunk, agent, DID and route, place real SIPp calls through it in both
directions with RTP, and report what happened.

Addresses (all loopback): edge 127.0.0.1:5060, sample carrier 127.0.0.11
(calls from :5070, gateway on :5080), sample agent 127.0.0.21:5090,
stranger 127.0.0.99.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import redis

from routing.tables import admin
from routing.tables.calls import lease_counts
from routing.tables.model import Agent, Did, Direction, Gateway, RouteEntry, Trunk
from routing.call.numbers import NumberFormat
from routing.ops.settings import Settings
from routing.ops.sipp import SippRun, reject_uac_scenario, stop_all, uac, uas

__all__ = ["Outcome", "provision_sample", "run_demo", "SAMPLE"]

CARRIER_IP = "127.0.0.11"
AGENT_IP = "127.0.0.21"
STRANGER_IP = "127.0.0.99"
SAMPLE = {
    "trunk": "sample-carrier",
    "agent": "sample-agent",
    "did": "+14155550100",
    "destination": "+442071838750",
}


@dataclass
class Outcome:
    """What one demo scenario did.

    Attributes:
        name: scenario title.
        placed: calls attempted (calls).
        codes: final SIP status -> count.
        note: extra facts (RTP packets relayed...).
    """

    name: str
    placed: int
    codes: dict[str, int] = field(default_factory=dict)
    note: str = ""

    @property
    def answered(self) -> int:
        """Calls answered with 200."""
        return sum(n for code, n in self.codes.items() if code.startswith("200"))

    @property
    def rejected(self) -> int:
        """Calls that ended with a final status >= 300."""
        return sum(n for code, n in self.codes.items() if not code.startswith("2"))


def provision_sample(client: redis.Redis) -> None:
    """Write the sample trunk, agent, DID and default route (replacing earlier samples)."""
    trunk = Trunk(
        name=SAMPLE["trunk"],
        direction=Direction.BOTH,
        max_calls=10,
        cidrs=(f"{CARRIER_IP}/32",),
        gateways=(Gateway(host=CARRIER_IP, port=5080),),
        number_format=NumberFormat(country_code="1", national_length=10, international_prefix="011"),
    )
    agent = Agent(name=SAMPLE["agent"], uris=(f"sip:{AGENT_IP}:5090",), cidrs=(f"{AGENT_IP}/32",), max_calls=5)
    admin.put_trunk(client, trunk, replace=admin.get_trunk(client, trunk.name) is not None)
    admin.put_agent(client, agent, replace=admin.get_agent(client, agent.name) is not None)
    admin.put_did(client, Did(SAMPLE["did"], trunk.name, agent.name), replace=True)
    admin.put_route(client, RouteEntry("+", trunk.name, Decimal("0.0100")), replace=True)


def _codes(run: SippRun) -> dict[str, int]:
    counts: dict[str, int] = {}
    for code, reason in run.final_status():
        label = f"{code} {reason}"
        counts[label] = counts.get(label, 0) + 1
    return counts


def _relayed(settings: Settings) -> int:
    out = subprocess.run(
        ["rtpengine-ctl", "-ip", "127.0.0.1", "-port", str(settings.rtpengine.cli_port), "list", "totals"],
        capture_output=True, text=True, timeout=10,
    ).stdout
    for line in out.splitlines():
        if line.strip().startswith("Total relayed packets ") or line.strip().startswith("Total relayed packets:"):
            return int(float(line.split(":")[-1]))
    return 0


def run_demo(settings: Settings, client: redis.Redis, calls: int = 3) -> list[Outcome]:
    """Place the demo calls against a running edge; returns one :class:`Outcome` per scenario.

    Raises:
        SippError: SIPp missing or a peer did not start.
    """
    provision_sample(client)
    host, port = settings.sip_target
    edge = f"{host}:{port}"
    work = Path(tempfile.mkdtemp(prefix="edge-demo-"))
    outcomes = []
    try:
        # origination: carrier -> edge -> agent, with RTP echoed by the agent
        before = _relayed(settings)
        agent = uas(work / "agent", AGENT_IP, 5090, calls=calls, answer_ms=200)
        carrier = uac(work / "carrier", CARRIER_IP, 5070, edge, "4155550100", caller="+12125550199",
                      calls=calls, rate=calls, hold_ms=2000)
        carrier.wait(timeout=60)
        agent.wait(timeout=30)
        outcomes.append(Outcome("origination carrier->agent", calls, _codes(carrier),
                                f"{_relayed(settings) - before} RTP packets relayed by rtpengine"))
        # termination: agent -> edge -> carrier gateway
        before = _relayed(settings)
        gateway = uas(work / "gateway", CARRIER_IP, 5080, calls=calls, answer_ms=200)
        agent_call = uac(work / "agent-out", AGENT_IP, 5070, edge, SAMPLE["destination"], caller=SAMPLE["did"],
                         calls=calls, rate=calls, hold_ms=2000)
        agent_call.wait(timeout=60)
        gateway.wait(timeout=30)
        outcomes.append(Outcome("termination agent->carrier", calls, _codes(agent_call),
                                f"{_relayed(settings) - before} RTP packets relayed by rtpengine"))
        # refusals
        stranger = uac(work / "stranger", STRANGER_IP, 5070, edge, SAMPLE["did"],
                       scenario=reject_uac_scenario(work / "s1"))
        stranger.wait(timeout=30)
        outcomes.append(Outcome("stranger 127.0.0.99 -> DID", 1, _codes(stranger), "source not in any allowlist"))
        unknown = uac(work / "unknown", CARRIER_IP, 5070, edge, "+14155550999",
                      scenario=reject_uac_scenario(work / "s2"))
        unknown.wait(timeout=30)
        outcomes.append(Outcome("carrier -> unknown DID", 1, _codes(unknown), "DID not provisioned"))
    finally:
        stop_all()
    deadline = time.monotonic() + 5
    while (leases := sum(lease_counts(client).values())) and time.monotonic() < deadline:
        time.sleep(0.05)  # the last BYEs release their slots as they complete
    outcomes.append(Outcome("concurrency slots held after the demo", 0, {}, f"{leases} (must be 0)"))
    return outcomes

