"""``edgectl demo``: start the embedded default edge, provision a sample carrier
trunk, agent, DID and route, place real SIPp calls through it in both
directions with RTP, and report what happened.

Addresses (all loopback): edge 127.0.0.1:5060, sample carrier 127.0.0.11
(calls from :5070, gateway on :5080), sample agent 127.0.0.21:5090,
stranger 127.0.0.99 (the peers' /24 is ``net``: the integration test runs them on its own).
SIPp is started by the demo's own launcher, :mod:`routing.ops.sipp`.
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

__all__ = ["Outcome", "Peers", "provision_sample", "run_demo", "SAMPLE", "DEFAULT_NET"]

#: the loopback /24 of the sample peers
DEFAULT_NET = "127.0.0"
SAMPLE = {
    "trunk": "sample-carrier",
    "agent": "sample-agent",
    "did": "+14155550100",
    "destination": "+442071838750",
}


@dataclass(frozen=True)
class Peers:
    """Addresses of the sample carrier (``.11``), agent (``.21``) and stranger (``.99``) of a /24."""

    carrier: str
    agent: str
    stranger: str

    @classmethod
    def on(cls, net: str = DEFAULT_NET) -> "Peers":
        """The peers on ``net`` (the first three octets, e.g. ``"127.0.0"``)."""
        return cls(f"{net}.11", f"{net}.21", f"{net}.99")


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


def provision_sample(client: redis.Redis, peers: Peers = Peers.on()) -> None:
    """Write the sample trunk, agent, DID and default route (replacing earlier samples)."""
    trunk = Trunk(
        name=SAMPLE["trunk"],
        direction=Direction.BOTH,
        max_calls=10,
        cidrs=(f"{peers.carrier}/32",),
        gateways=(Gateway(host=peers.carrier, port=5080),),
        number_format=NumberFormat(country_code="1", national_length=10, international_prefix="011"),
    )
    agent = Agent(name=SAMPLE["agent"], uris=(f"sip:{peers.agent}:5090",), cidrs=(f"{peers.agent}/32",), max_calls=5)
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


def run_demo(settings: Settings, client: redis.Redis, calls: int = 3, net: str = DEFAULT_NET) -> list[Outcome]:
    """Place the demo calls against a running edge; returns one :class:`Outcome` per scenario.

    Args:
        calls: calls per direction.
        net: the loopback /24 of the sample peers (:class:`Peers`).

    Raises:
        SippError: SIPp missing or a peer did not start.
    """
    peers = Peers.on(net)
    provision_sample(client, peers)
    host, port = settings.sip_target
    edge = f"{host}:{port}"
    work = Path(tempfile.mkdtemp(prefix="edge-demo-"))
    outcomes = []
    try:
        # origination: carrier -> edge -> agent, with RTP echoed by the agent
        before = _relayed(settings)
        agent = uas(work / "agent", peers.agent, 5090, calls=calls, answer_ms=200)
        carrier = uac(work / "carrier", peers.carrier, 5070, edge, "4155550100", caller="+12125550199",
                      calls=calls, rate=calls, hold_ms=2000)
        carrier.wait(timeout=60)
        agent.wait(timeout=30)
        outcomes.append(Outcome("origination carrier->agent", calls, _codes(carrier),
                                f"{_relayed(settings) - before} RTP packets relayed by rtpengine"))
        # termination: agent -> edge -> carrier gateway
        before = _relayed(settings)
        gateway = uas(work / "gateway", peers.carrier, 5080, calls=calls, answer_ms=200)
        agent_call = uac(work / "agent-out", peers.agent, 5070, edge, SAMPLE["destination"], caller=SAMPLE["did"],
                         calls=calls, rate=calls, hold_ms=2000)
        agent_call.wait(timeout=60)
        gateway.wait(timeout=30)
        outcomes.append(Outcome("termination agent->carrier", calls, _codes(agent_call),
                                f"{_relayed(settings) - before} RTP packets relayed by rtpengine"))
        # refusals
        stranger = uac(work / "stranger", peers.stranger, 5070, edge, SAMPLE["did"],
                       scenario=reject_uac_scenario(work / "s1"))
        stranger.wait(timeout=30)
        outcomes.append(Outcome(f"stranger {peers.stranger} -> DID", 1, _codes(stranger), "source not in any allowlist"))
        unknown = uac(work / "unknown", peers.carrier, 5070, edge, "+14155550999",
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

