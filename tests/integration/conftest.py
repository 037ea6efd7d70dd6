"""A real edge for the integration tests: redis, rtpengine and Kamailio started with
``routing.ops.services.up`` from a settings file, exactly as ``edgectl up`` does.

Addresses: edge 127.0.0.1, carriers 127.0.0.11-.13, agents 127.0.0.21-.22,
stranger 127.0.0.99.  After every test the concurrency counters must be back
to exactly zero and rtpengine must hold no session.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import pytest
import redis
import yaml

from routing.tables import admin
from routing.ops import services
from routing.tables.calls import lease_counts
from routing.tables.cdrstore import Spool
from routing.call.numbers import NumberFormat
from routing.tables.model import Agent, Did, Direction, Gateway, RouteEntry, Trunk
from routing.ops.secrets import SecretBox, create_key
from routing.ops.settings import load_settings, Settings
from routing.ops.tlscert import write_selfsigned
from routing.tables.store import connect

from tests.helpers import free_port, free_port_both, wait_until
from tests.sipp import stop_all

#: loopback /24 the peers use; another value lets two test runs share one machine
NET = os.environ.get("EDGE_TEST_NET", "127.0.0")
EDGE_IP = f"{NET}.1"
CARRIER_A = f"{NET}.11"
CARRIER_B = f"{NET}.12"
CARRIER_C = f"{NET}.13"
AGENT_IP = f"{NET}.21"
AGENT2_IP = f"{NET}.22"
STRANGER = f"{NET}.99"
#: an edge with one network per side (fixture ``sided_edge``): carriers reach EDGE_IP through the
#: 1:1 NAT address PUBLIC_IP (fixture ``one_to_one_nat``), agents reach AGENT_FACING_IP
AGENT_FACING_IP = f"{NET}.2"
PUBLIC_IP = f"{NET}.201"
#: the carrier behind the NAT: used by no other test, so no conntrack entry of its NATed flows
#: can outlive the nft table into another test's traffic
NAT_CARRIER = f"{NET}.14"
DID = "+14155550100"


@dataclass
class Edge:
    """Handle on the running edge."""

    settings: Settings
    redis: redis.Redis
    workdir: Path

    @property
    def sip(self) -> str:
        host, port = self.settings.sip_target
        return f"{host}:{port}"

    @property
    def port(self) -> int:
        return self.settings.sip_target[1]

    @property
    def tls_port(self) -> int:
        return next(l.port for l in self.settings.sip.listen if l.transport == "tls")

    def rtpengine_totals(self) -> dict[str, float]:
        """Numbers from ``rtpengine-ctl list totals`` by label."""
        out = subprocess.run(
            ["rtpengine-ctl", "-ip", "127.0.0.1", "-port", str(self.settings.rtpengine.cli_port), "list", "totals"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
        values = {}
        for line in out.splitlines():
            match = re.match(r"^\s*(.+?)\s*:\s*([0-9.]+)", line)
            if match:
                values.setdefault(match.group(1), float(match.group(2)))
        return values

    def rtpengine_sessions(self) -> int:
        return int(self.rtpengine_totals().get("Total sessions", 0))

    def leases(self) -> dict[str, int]:
        return lease_counts(self.redis)

    def secret_box(self) -> SecretBox:
        """The box that encrypts trunk passwords in redis, its key file created on first use."""
        create_key(self.settings.secret_key_path)
        return SecretBox(self.settings.secret_key_path)

    def active_leases(self) -> int:
        return sum(self.leases().values())

    def stored(self, pattern: str = "*") -> dict[str, bytes]:
        """Every key of ``pattern`` and its DUMP, but the nodes' heartbeats (``edge:node:*``, renewed
        every second by the call clock): what a write-nothing check compares."""
        return {k: self.redis.dump(k) for k in sorted(self.redis.keys(pattern)) if not k.startswith("edge:node:")}

    def call_records(self) -> list[str]:
        """Call records of calls holding slots (fences of abandoned admissions are no calls)."""
        return [k for k in self.redis.scan_iter(match="edge:call:*") if self.redis.hget(k, "fenced") is None]

    def log(self) -> str:
        return (Path(self.settings.run_dir) / "kamailio.log").read_text(errors="replace")

    # -- provisioning through the same admin API as edgectl ---------------
    def trunk(self, name: str, cidrs: list[str], gateways: list[tuple[str, int]] = (), direction: str = "both",
              max_calls: int | None = None, number_format: NumberFormat = NumberFormat(),
              probe: bool = True, **extra: object) -> Trunk:
        """Put a trunk; ``extra`` sets any other :class:`Trunk` field (billing_increment, max_rate...)."""
        trunk = Trunk(
            name=name,
            direction=Direction(direction),
            max_calls=max_calls,
            cidrs=tuple(cidrs),
            gateways=tuple(Gateway(host=h, port=p) for h, p in gateways),
            number_format=number_format,
            probe=probe,
            **extra,  # type: ignore[arg-type]
        )
        admin.put_trunk(self.redis, trunk)
        return trunk

    def agent(self, name: str, uris: list[str], cidrs: list[str], max_calls: int | None = None,
              **extra: object) -> Agent:
        """Put an agent; ``extra`` sets any other :class:`Agent` field (probe, answer_timeout_ms...)."""
        agent = Agent(name=name, uris=tuple(uris), cidrs=tuple(cidrs), max_calls=max_calls, **extra)  # type: ignore[arg-type]
        admin.put_agent(self.redis, agent)
        return agent

    def did(self, number: str, trunk: str, agent: str) -> None:
        admin.put_did(self.redis, Did(number=number, trunk=trunk, agent=agent))

    def metrics(self, which: str = "exporter") -> str:
        """Text of a /metrics endpoint: ``kamailio``, ``rtpengine`` or ``exporter``."""
        import urllib.request

        m = self.settings.metrics
        port = {"kamailio": m.kamailio_port, "rtpengine": m.rtpengine_port, "exporter": m.exporter_port}[which]
        with urllib.request.urlopen(f"http://{m.address}:{port}/metrics", timeout=5) as reply:
            return reply.read().decode()

    def route(self, prefix: str, trunk: str, rate: str, priority: int = 10) -> None:
        admin.put_route(self.redis, RouteEntry(prefix=prefix, trunk=trunk, rate=Decimal(rate), priority=priority))


@pytest.fixture(scope="session")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    workdir = tmp_path_factory.mktemp("edge")
    sip_port = free_port_both(EDGE_IP)
    tls_port = free_port(EDGE_IP)  # SOCK_DGRAM
    config = {
        "node": "edge-test",
        "run_dir": str(workdir / "run"),
        "sip": {
            "listen": [
                {"transport": "udp", "address": EDGE_IP, "port": sip_port},
                {"transport": "tcp", "address": EDGE_IP, "port": sip_port},
                {"transport": "tls", "address": EDGE_IP, "port": tls_port},
            ],
            "workers": 4,
            "failover_timeout_ms": 1000,
            "ringing_timeout_ms": 10000,
            "max_call_duration_s": 12,  # dialog timeout; calls in these tests last < 4 s, the RTP timeout test < 10 s
        },
        "rtpengine": {
            "ng_port": free_port(EDGE_IP, kind=socket.SOCK_DGRAM),
            "cli_port": free_port(EDGE_IP),
            "port_min": 20000 + 1000 * (int(NET.rsplit(".", 1)[1]) % 40),
            "port_max": 20999 + 1000 * (int(NET.rsplit(".", 1)[1]) % 40),
            "media_timeout_s": 60,
        },
        "redis": {"port": free_port(EDGE_IP), "manage": True, "timeout_ms": 200, "connect_timeout_ms": 200},
        "limits": {"retry_after_s": 7},
        "dtmf": {"log_port": free_port("127.0.0.1", kind=socket.SOCK_DGRAM)},
        # the HEP collector of the SIP capture (monitor) on a port of its own: test runs share 127.0.0.1
        "capture": {"port": free_port("127.0.0.1", kind=socket.SOCK_DGRAM)},
        # the DID fallback announcements (test_announcement.py writes its WAV files there)
        "media": {"check_interval_s": 1, "first_audio_poll_ms": 250, "announcements_dir": str(workdir / "announcements")},
        # the gateways in most tests are SIPp callees that do not expect OPTIONS: probing is
        # switched on only by the tests of gateway health (fixture `probing_edge`)
        "health": {"enabled": False},
        "metrics": {"address": EDGE_IP, "kamailio_port": free_port(EDGE_IP), "rtpengine_port": free_port(EDGE_IP),
                    "exporter_port": free_port(EDGE_IP)},
        # registrations checked every second so a 10 s registration is refreshed within the test
        "registration": {"timer_interval_s": 1, "retry_interval_s": 5, "sync_interval_s": 1},
    }
    path = workdir / "settings.yaml"
    path.write_text(yaml.safe_dump(config))
    settings = load_settings(path)
    write_selfsigned(settings.tls_certificate, settings.tls_private_key, [EDGE_IP])
    services.down(settings)
    try:
        services.up(settings)
    except BaseException:
        services.down(settings)  # what did start must not outlive the session
        raise
    client = connect(settings.redis.host, settings.redis.port, timeout_ms=2000, connect_timeout_ms=2000)
    handle = Edge(settings=settings, redis=client, workdir=workdir)
    try:
        yield handle
    finally:
        services.down(settings)


@pytest.fixture(scope="module")
def probing_edge(edge: Edge) -> Iterator[Edge]:
    """The edge with its monitor restarted to ping gateways fast (every 0.3 s, down after 2
    failures, up after 2 successes); the monitor is restarted without probing afterwards."""
    health = edge.settings.health.model_copy(update={"enabled": True, "interval_s": 0.3, "timeout_ms": 250,
                                                      "down_after": 2, "up_after": 2})
    with restarted(edge, "monitor", health=health):
        yield edge


@contextlib.contextmanager
def restarted(edge: Edge, service: str, **sections: object) -> Iterator[Edge]:
    """Restart ``service`` with the edge's settings' ``sections`` replaced, and again with the
    usual settings afterwards."""
    usual = edge.settings
    edge.settings = usual.model_copy(update=sections)
    services.restart(edge.settings, service)
    try:
        yield edge
    finally:
        edge.settings = usual
        services.restart(usual, service)


@pytest.fixture(scope="module")
def sided_edge(edge: Edge) -> Iterator[Edge]:
    """The edge restarted with one network per side: carriers on EDGE_IP (UDP, advertised as
    PUBLIC_IP in SIP and SDP), agents on AGENT_FACING_IP (UDP, no advertise), rtpengine with a
    ``carrier`` and an ``agent`` interface, topoh masking with 192.0.2.1 (an address of neither
    side), and loopback not counted as private (``media.private_networks``), so a loopback peer
    writing a private address into its SDP counts as a peer behind NAT.  The session's settings
    are restored afterwards."""
    base = edge.settings
    data = base.model_dump(mode="json")
    port = base.sip_target[1]
    # the agent socket first: traffic toward carriers must leave from the carrier socket because the
    # edge chooses it, not because Kamailio's default (the first socket) happens to be it
    data["sip"]["listen"] = [
        {"transport": "udp", "address": AGENT_FACING_IP, "port": free_port_both(AGENT_FACING_IP), "side": "agent"},
        {"transport": "udp", "address": EDGE_IP, "port": port, "advertise": PUBLIC_IP, "side": "carrier"},
    ]
    data["rtpengine"]["sides"] = {"carrier": {"address": EDGE_IP, "advertise": PUBLIC_IP},
                                  "agent": {"address": AGENT_FACING_IP}}
    data["security"]["topology_mask_ip"] = "192.0.2.1"
    data["media"]["private_networks"] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
    with sided_settings(edge, Settings.model_validate(data)):
        yield edge


@pytest.fixture(scope="module")
def transport_sides_edge(edge: Edge, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """The edge restarted with one network per side and a transport of its own per side: carriers
    on EDGE_IP over UDP only, agents on AGENT_FACING_IP over TCP and TLS only (no advertise, no
    NAT); rtpengine with a ``carrier`` and an ``agent`` interface; topoh masking with 192.0.2.1.
    The edge's certificate names both addresses (agents verify AGENT_FACING_IP); the CA list the
    edge verifies TLS agents with (``sip.tls.ca_list``) is a self-signed certificate for AGENT_IP,
    its key beside it as ``agent.key``.  The session's settings are restored afterwards."""
    base = edge.settings
    data = base.model_dump(mode="json")
    pki = tmp_path_factory.mktemp("transport-sides")
    write_selfsigned(pki / "edge.crt", pki / "edge.key", [EDGE_IP, AGENT_FACING_IP])
    write_selfsigned(pki / "agent.crt", pki / "agent.key", [AGENT_IP])
    data["sip"]["listen"] = [
        {"transport": "tcp", "address": AGENT_FACING_IP, "port": free_port_both(AGENT_FACING_IP), "side": "agent"},
        {"transport": "tls", "address": AGENT_FACING_IP, "port": free_port(AGENT_FACING_IP), "side": "agent"},
        {"transport": "udp", "address": EDGE_IP, "port": base.sip_target[1], "side": "carrier"},
    ]
    data["sip"]["tls"].update({"certificate": str(pki / "edge.crt"), "private_key": str(pki / "edge.key"),
                               "ca_list": str(pki / "agent.crt")})
    data["rtpengine"]["sides"] = {"carrier": {"address": EDGE_IP}, "agent": {"address": AGENT_FACING_IP}}
    data["security"]["topology_mask_ip"] = "192.0.2.1"
    with sided_settings(edge, Settings.model_validate(data)):
        yield edge


#: the agent side of ``ipv6_sides_edge``: IPv6 loopback (the only IPv6 address a host has without configuration)
AGENT_IP6 = "::1"


@pytest.fixture(scope="module")
def ipv6_sides_edge(edge: Edge) -> Iterator[Edge]:
    """The edge restarted with carriers on EDGE_IP (UDP, IPv4) and agents on [::1] (UDP, IPv6):
    a SIP socket and an rtpengine interface per side, topoh masking with 192.0.2.1.  The session's
    settings are restored afterwards."""
    data = edge.settings.model_dump(mode="json")
    data["sip"]["listen"] = [
        {"transport": "udp", "address": AGENT_IP6, "port": free_port_both(AGENT_IP6), "side": "agent"},
        {"transport": "udp", "address": EDGE_IP, "port": edge.settings.sip_target[1], "side": "carrier"},
    ]
    data["rtpengine"]["sides"] = {"carrier": {"address": EDGE_IP}, "agent": {"address": AGENT_IP6}}
    data["security"]["topology_mask_ip"] = "192.0.2.1"
    with sided_settings(edge, Settings.model_validate(data)):
        yield edge


@contextlib.contextmanager
def sided_settings(edge: Edge, sided: Settings) -> Iterator[Edge]:
    """Kamailio and rtpengine restarted with ``sided`` settings, and with the edge's usual ones after."""
    base = edge.settings
    edge.settings = sided
    try:
        for name in ("kamailio", "rtpengine"):  # kamailio's restart renders every config
            services.restart(sided, name)
        yield edge
    finally:
        edge.settings = base
        for name in ("kamailio", "rtpengine"):
            services.restart(base, name)


@pytest.fixture(scope="module")
def one_to_one_nat() -> Iterator[str]:
    """A 1:1 NAT on loopback (nftables): packets to PUBLIC_IP are sent to EDGE_IP (DNAT, nat/output),
    packets from EDGE_IP to NAT_CARRIER leave from PUBLIC_IP (SNAT, nat/postrouting), and conntrack
    un-NATs the replies, as a cloud elastic IP does.  The table is named after the test net and
    always deleted afterwards.  Yields the table name; fails (never skips) without ``nft``."""
    nft = shutil.which("nft")
    if nft is None:
        pytest.fail("nft is not installed (apt-get install nftables): the NAT tests need it")
    table = "byoc_nat_" + NET.replace(".", "_")
    subprocess.run([nft, "delete", "table", "ip", table], capture_output=True, timeout=10)  # a crashed run's
    script = (
        f"table ip {table} {{\n"
        f"  chain out {{ type nat hook output priority -100; ip daddr {PUBLIC_IP} dnat to {EDGE_IP}; }}\n"
        f"  chain post {{ type nat hook postrouting priority 100; "
        f"ip saddr {EDGE_IP} ip daddr {NAT_CARRIER} snat to {PUBLIC_IP}; }}\n"
        "}\n"
    )
    result = subprocess.run([nft, "-f", "-"], input=script, capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, f"nft refused the NAT table: {result.stderr}"
    try:
        yield table
    finally:
        subprocess.run([nft, "delete", "table", "ip", table], check=True, capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def long_call_edge(edge: Edge) -> Iterator[Edge]:
    """The edge with Kamailio restarted for calls longer than the dialog keepalive interval:
    ``sip.max_call_duration_s`` 90 s (the call clock would end calls at 12 s) and one failed keepalive
    enough to end a call (``media.keepalive_failures: 1``); restarted with the usual settings after."""
    sip = edge.settings.sip.model_copy(update={"max_call_duration_s": 90})
    media = edge.settings.media.model_copy(update={"keepalive_failures": 1})
    with restarted(edge, "kamailio", sip=sip, media=media):
        yield edge


@pytest.fixture
def clean_edge(edge: Edge, tmp_path: Path) -> Iterator[Edge]:
    """The edge with empty routing tables and no banned source; afterwards every counter
    must be exactly zero."""
    edge.redis.flushdb()
    for table in ("ipban", "authfail", "regreply"):
        subprocess.run(["kamcmd", "-s", f"unix:{edge.settings.run_dir}/kamailio_ctl", "htable.flush", table],
                       check=True, capture_output=True, timeout=10)
    edge.workdir = tmp_path
    yield edge
    stop_all()
    wait_until(lambda: edge.active_leases() == 0, timeout=15, what=f"leases back to zero: {edge.leases()}")
    wait_until(lambda: not edge.call_records(), timeout=15, what="call records released")
    wait_until(lambda: edge.rtpengine_sessions() == 0, timeout=15, what="rtpengine sessions deleted")
    # records spooled while redis was down are replayed by the call clock, not left to the next test
    spool = Spool(edge.settings.cdr_spool_path)
    wait_until(lambda: spool.pending() == 0, timeout=30, what="spooled call records replayed")
    assert all(v == 0 for v in edge.leases().values())
