"""routing.call.acl.classify_source: longest prefix across trunks and agents, trunk wins ties."""

from __future__ import annotations

import pytest

from routing.call.acl import Peer, classify_source
from routing.tables.model import Agent, Trunk
from routing.tables.store import Topology


def topology(trunks: dict[str, tuple[str, ...]], agents: dict[str, tuple[str, ...]]) -> Topology:
    """Trunks and agents with only names and CIDRs, as classification needs."""
    return Topology(
        trunks={name: Trunk(name=name, cidrs=cidrs) for name, cidrs in trunks.items()},
        agents={name: Agent(name=name, uris=("sip:a.example.com",), cidrs=cidrs) for name, cidrs in agents.items()},
    )


TOPO = topology(
    trunks={
        "carrier-wide": ("10.0.0.0/8",),
        "carrier-narrow": ("10.1.0.0/16", "192.0.2.0/24"),
        "v6carrier": ("2001:db8::/32",),
        "tie-trunk": ("172.16.5.0/24",),
    },
    agents={
        "bot-host": ("10.1.2.3/32",),
        "bot-net": ("10.1.2.0/24", "2001:db8:1::/48"),
        "tie-agent": ("172.16.5.0/24",),
        "v6host": ("2001:db8:1::5/128",),
    },
)


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ("10.200.0.1", Peer("trunk", "carrier-wide", "10.0.0.0/8")),
        ("10.1.9.9", Peer("trunk", "carrier-narrow", "10.1.0.0/16")),
        ("192.0.2.77", Peer("trunk", "carrier-narrow", "192.0.2.0/24")),
        ("10.1.2.4", Peer("agent", "bot-net", "10.1.2.0/24")),  # /24 agent beats /16 trunk
        ("10.1.2.3", Peer("agent", "bot-host", "10.1.2.3/32")),  # /32 beats everything
    ],
)
def test_longest_prefix_wins_across_trunks_and_agents(src: str, expected: Peer) -> None:
    assert classify_source(src, TOPO) == expected


def test_trunk_wins_a_tie_at_equal_prefix_length() -> None:
    assert classify_source("172.16.5.9", TOPO) == Peer("trunk", "tie-trunk", "172.16.5.0/24")


def test_trunk_wins_a_tie_regardless_of_insertion_order() -> None:
    agents_first = Topology(
        trunks={"t": Trunk(name="t", cidrs=("203.0.113.0/24",))},
        agents={"a": Agent(name="a", cidrs=("203.0.113.0/24",))},
    )
    assert classify_source("203.0.113.1", agents_first) == Peer("trunk", "t", "203.0.113.0/24")


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ("2001:db8:ffff::1", Peer("trunk", "v6carrier", "2001:db8::/32")),
        ("2001:db8:1::9", Peer("agent", "bot-net", "2001:db8:1::/48")),
        ("2001:db8:1::5", Peer("agent", "v6host", "2001:db8:1::5/128")),
        ("2001:DB8:1:0:0:0:0:5", Peer("agent", "v6host", "2001:db8:1::5/128")),
    ],
)
def test_ipv6_sources(src: str, expected: Peer) -> None:
    assert classify_source(src, TOPO) == expected


@pytest.mark.parametrize("src", ["198.51.100.1", "11.0.0.1", "2001:db9::1", "::1", "127.0.0.1"])
def test_stranger_is_none(src: str) -> None:
    assert classify_source(src, TOPO) is None


@pytest.mark.parametrize("src", ["", "not-an-ip", "10.0.0", "10.0.0.256", "[2001:db8::1]", "10.0.0.1:5060"])
def test_unparsable_source_is_none(src: str) -> None:
    assert classify_source(src, TOPO) is None


def test_ipv4_source_never_matches_ipv6_networks() -> None:
    v6_only = topology(trunks={"t": ("::/0",)}, agents={})
    assert classify_source("10.0.0.1", v6_only) is None
    assert classify_source("2001:db8::1", v6_only) == Peer("trunk", "t", "::/0")


def test_empty_topology() -> None:
    assert classify_source("10.0.0.1", Topology(trunks={}, agents={})) is None
