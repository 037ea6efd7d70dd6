"""The Ansible deployment (ansible/), applied for real to this machine.

Two edge nodes and their shared redis are deployed to localhost (``connection: local``) from a
snapshot of the repository, as two independent prefixes so they do not collide with a real
edge or with the other tests:

    node test-a  /opt/byoc-edge-test-a  SIP 127.0.0.1:15060  ng 12223  cli 19900  RTP 50000-50999
                 + the shared redis 127.0.0.1:16379 (inventory group `redis`)
    node test-b  /opt/byoc-edge-test-b  one network per side (byoc_edge_carrier_* / byoc_edge_agent_*):
                                          carriers on 127.0.0.2:15060 (advertised as 127.0.0.2),
                                          agents on 127.0.0.3:15060
                                          ng 12224  cli 19901  RTP 51000-51999
    rtpengine host media-1  /etc/byoc-edge-test-m  ng and cli on 127.0.0.4 (12225, 19902), media 127.0.0.4
                 RTP 52000-52999 (inventory group `rtpengine`): node A relays its media through it
                 (settings rtpengine.nodes), node B keeps its own rtpengine

Then: ansible-lint is clean at the production profile; the first run deploys and reports the
rtpengine forwarding mode, and gives every node its settings and the site's trunk-password
key; node A's settings are exactly those of a node without per-side variables, node B's have
a listener per side, rtpengine.sides and topoh's mask address; the rtpengine host gets the edge's
rtpengine.conf with its ng listener on its own address, and node A gets it as its rtpengine set; a
second run changes nothing; a carrier's SIPp call reaches the agent through each node, node A's with
its media relayed by the rtpengine host (routing tables provisioned once, with
node A's edgectl, in the shared redis), through node B from carrier side to agent side; a trunk
limit of 1 holds across the nodes; the nftables rules drop SIP from a source that is neither
carrier nor agent, and on node B SIP and RTP to one side's address from the other side's
networks, and the rtpengine host's ng port to a stranger; the per-side variables are checked with messages that name them; every Kamailio runs with Debian's embedded-Python environment (PATH, PYTHONHOME); a killed Kamailio is restarted by its service manager
(systemd, or the fallback manager where systemd is not PID 1, as on CI containers).
Everything is removed at the end with ansible/uninstall.yml; kernel parameters and
/etc/nftables.conf are restored.

Addresses of the SIPp peers: carrier 127.0.0.111, agent 127.0.0.121, stranger 127.0.0.99.
"""

from __future__ import annotations

import base64
import fcntl
import grp
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from routing.ops.settings import load_settings
from tests.sipp import reject_uac_scenario, stop_all, uac, uas
from routing.monitor.sipprobe import rtpengine_ping, sip_options
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SNAPSHOT_PATHS = ["pyproject.toml", "README.md", "routing", "kamailio", "templates", "sipp", "ansible"]

SIP_PORT = 15060
REDIS_PORT = 16379
#: the site's redis replica (group redis_replica) and its three Sentinels (group redis_sentinel), each
#: an inventory host of its own on this machine, with a prefix of its own
REPLICA = ("redis-replica", "byoc-edge-test-r", 16380)
SENTINELS = tuple((f"sentinel-{i}", f"byoc-edge-test-s{i}", 26390 + i) for i in (1, 2, 3))
MASTER_NAME = "byoc-edge-test"
REDIS_PASSWORD = "ansible-test-secret"
#: the site's trunk-password key (Fernet), distributed to every node
SECRET_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()
CARRIER = "127.0.0.111"
AGENT = "127.0.0.121"
STRANGER = "127.0.0.99"
AGENT_PORT = 15090
#: topoh's mask address of a node with one network per side and no byoc_edge_topology_mask_ip
MASK_IP = "192.0.2.1"
#: lines of a SIP message whose addresses tell the topology: Via, Record-Route, Contact, SDP c=/o=
TOPOLOGY_LINE = re.compile(r"^(via|v|record-route|contact|m)\s*:|^[co]=", re.IGNORECASE)
IPV4 = re.compile(r"(?<![0-9.])(\d{1,3}(?:\.\d{1,3}){3})(?![0-9])")
DID = "+14155550100"
TRUNK = "test-carrier"


@dataclass(frozen=True)
class Node:
    host: str
    prefix: str
    node_id: str
    sip: str
    ng_port: int
    cli_port: int
    rtp: tuple[int, int]
    advertise: str = ""
    #: the agent-side address of a node with one network per side (``sip`` is then its carrier side)
    agent_side: str = ""

    @property
    def edgectl(self) -> str:
        return f"/usr/local/bin/{self.prefix}-edgectl"

    @property
    def run_dir(self) -> Path:
        return Path(f"/var/lib/{self.prefix}/run")

    @property
    def target(self) -> str:
        return f"{self.sip}:{SIP_PORT}"

    def host_vars(self) -> dict[str, object]:
        values: dict[str, object] = {
            "byoc_edge_prefix": self.prefix,
            "byoc_edge_node": self.node_id,
            "byoc_edge_sip_address": self.sip,
            "byoc_edge_rtpengine_ng_port": self.ng_port,
            "byoc_edge_rtpengine_cli_port": self.cli_port,
            "byoc_edge_rtp_port_min": self.rtp[0],
            "byoc_edge_rtp_port_max": self.rtp[1],
            # two nodes on one host: each serves its metrics endpoints on its own address
            "edge_settings_extra": {
                "sip": {"workers": 2, "tcp_workers": 1, "max_call_duration_s": 60},
                "metrics": {"address": self.sip},
            },
        }
        if self.sip != "127.0.0.1":  # two monitors on one host: node B's HEP collector (SIP capture) on its address
            values["edge_settings_extra"]["capture"] = {"address": self.sip}  # type: ignore[index]
        if self.agent_side:
            values.update({
                "byoc_edge_carrier_sip_address": self.sip,
                "byoc_edge_carrier_advertise": self.advertise,
                "byoc_edge_agent_sip_address": self.agent_side,
                "byoc_edge_carrier_media_cidrs": [f"{CARRIER}/32"],
                "byoc_edge_agent_media_cidrs": [f"{AGENT}/32"],
            })
        elif self.advertise:
            values["byoc_edge_advertise"] = self.advertise
        return values


NODE_A = Node("edge-a", "byoc-edge-test-a", "test-a", "127.0.0.1", 12223, 19900, (50000, 50999))
NODE_B = Node("edge-b", "byoc-edge-test-b", "test-b", "127.0.0.2", 12224, 19901, (51000, 51999), advertise="127.0.0.2",
              agent_side="127.0.0.3")
NODES = (NODE_A, NODE_B)


@dataclass(frozen=True)
class MediaHost:
    """An rtpengine host (inventory group ``rtpengine``, role rtpengine_host)."""

    host: str
    prefix: str
    address: str
    ng_port: int
    cli_port: int
    rtp: tuple[int, int]
    weight: int

    @property
    def run_dir(self) -> Path:
        return Path(f"/var/lib/{self.prefix}/run")

    def host_vars(self) -> dict[str, object]:
        return {
            "byoc_edge_prefix": self.prefix,
            "rtpengine_host_ng_address": self.address,
            "rtpengine_host_weight": self.weight,
            "byoc_edge_rtpengine_address": self.address,
            "byoc_edge_rtpengine_ng_port": self.ng_port,
            "byoc_edge_rtpengine_cli_port": self.cli_port,
            "byoc_edge_rtp_port_min": self.rtp[0],
            "byoc_edge_rtp_port_max": self.rtp[1],
            "byoc_edge_metrics_address": self.address,
            # one kernel: node A reserves its RTP ports
            "sysctl_reserve_rtp_ports": False,
            # the edge's rtpengine options reach the host (final-timeout = max_call_duration_s + 60)
            "edge_settings_extra": {"sip": {"max_call_duration_s": 60}},
        }


MEDIA = MediaHost("media-1", "byoc-edge-test-m", "127.0.0.4", 12225, 19902, (52000, 52999), weight=2)
#: node A's rtpengine set: the rtpengine host, as the edge role writes it into settings rtpengine.nodes
MEDIA_NODES = [{"address": MEDIA.address, "ng_port": MEDIA.ng_port, "weight": MEDIA.weight}]

#: kernel parameters the sysctl role may set; restored after the test
SYSCTL_KEYS = [
    "net.core.rmem_max", "net.core.wmem_max", "net.core.rmem_default", "net.core.wmem_default",
    "net.core.netdev_max_backlog", "net.core.somaxconn", "net.ipv4.udp_rmem_min", "net.ipv4.udp_wmem_min",
    "net.ipv4.ip_local_reserved_ports", "vm.overcommit_memory",
]


def inventory() -> dict[str, object]:
    return {
        "all": {
            "vars": {
                # this machine, as root, without sudo
                "ansible_connection": "local",
                "ansible_python_interpreter": "/usr/bin/python3",
                "ansible_become": False,
                "byoc_edge_redis_host": "127.0.0.1",
                "byoc_edge_redis_port": REDIS_PORT,
                "byoc_edge_redis_password": REDIS_PASSWORD,
                "byoc_edge_redis_master_name": MASTER_NAME,
                "byoc_edge_secret_key": SECRET_KEY,
                "byoc_edge_sip_port": SIP_PORT,
                "byoc_edge_carrier_cidrs": [f"{CARRIER}/32"],
                "byoc_edge_agent_cidrs": [f"{AGENT}/32"],
                "byoc_edge_monitoring_cidrs": ["127.0.0.0/8"],
                # a shared CI machine: restrict only the edge's ports, leave other traffic (and
                # SSH) alone
                "firewall_policy": "accept",
                "firewall_management_tcp_ports": [],
                "firewall_metrics_ports": [19100],
            },
            "children": {
                "edge": {
                    "hosts": {
                        NODE_A.host: NODE_A.host_vars(),
                        # one host has one kernel: the second node leaves ip_local_reserved_ports alone
                        # node B reaches the redis through the Sentinels (node A directly)
                        # node B has one network per side: its own rtpengine, not the rtpengine host
                        NODE_B.host: {**NODE_B.host_vars(), "sysctl_reserve_rtp_ports": False,
                                      "byoc_edge_rtpengine_hosts": [],
                                      "byoc_edge_redis_sentinels": [f"127.0.0.1:{port}" for _, _, port in SENTINELS],
                                      # and its own metrics ports (node A keeps the defaults)
                                      "byoc_edge_metrics_kamailio_port": 9261,
                                      "byoc_edge_metrics_rtpengine_port": 9262,
                                      "byoc_edge_metrics_exporter_port": 9263},
                    }
                },
                "rtpengine": {"hosts": {MEDIA.host: MEDIA.host_vars()}},
                "redis": {"hosts": {NODE_A.host: None}},
                "redis_replica": {"hosts": {REPLICA[0]: {"byoc_edge_prefix": REPLICA[1], "redis_bind": "127.0.0.1",
                                                         "redis_port": REPLICA[2]}}},
                "redis_sentinel": {"hosts": {host: {"byoc_edge_prefix": prefix, "sentinel_bind": "127.0.0.1",
                                                    "sentinel_port": port} for host, prefix, port in SENTINELS}},
            },
        }
    }


@dataclass
class Run:
    rc: int
    output: str
    recap: dict[str, dict[str, int]]

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def _env() -> dict[str, str]:
    return dict(
        os.environ,
        PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        PY_COLORS="0",
    )


def _recap(output: str) -> dict[str, dict[str, int]]:
    recap = {}
    section = output.split("PLAY RECAP", 1)[-1]
    for match in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", section, re.M):
        recap[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return recap


def playbook(workdir: Path, name: str, log: str, *extra: str, timeout: int = 400) -> Run:
    ansible_dir = workdir / "src" / "ansible"
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(workdir / "hosts.yml"), name, *extra],
        cwd=ansible_dir,
        env=dict(_env(), ANSIBLE_CONFIG=str(ansible_dir / "ansible.cfg")),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = proc.stdout + proc.stderr
    (workdir / log).write_text(output)
    return Run(proc.returncode, output, _recap(proc.stdout))


def edgectl(node: Node, *args: str) -> str:
    proc = subprocess.run([node.edgectl, *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"{node.edgectl} {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def relayed_packets(node: Node | MediaHost) -> float:
    """Packets relayed so far by the rtpengine of an edge node (cli on 127.0.0.1) or of an rtpengine host."""
    address = node.address if isinstance(node, MediaHost) else "127.0.0.1"
    out = subprocess.run(
        ["rtpengine-ctl", "-ip", address, "-port", str(node.cli_port), "list", "totals"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout
    match = re.search(r"Total relayed packets\s*:\s*([0-9.]+)", out)
    assert match, out
    return float(match.group(1))


def kamailio_pid(node: Node) -> int | None:
    try:
        pid = int((node.run_dir / "kamailio.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def which(binary: str) -> str | None:
    return shutil.which(binary, path=f"{os.environ.get('PATH', '')}:/usr/local/sbin:/usr/sbin:/sbin")


def _sysctl(key: str) -> str | None:
    proc = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _leftover_processes() -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    ports = (REDIS_PORT, REPLICA[2], *(port for _, _, port in SENTINELS))
    prefixes = (*(n.prefix for n in NODES), MEDIA.prefix, REPLICA[1], *(prefix for _, prefix, _ in SENTINELS))
    return [l for l in out.splitlines() if any(p in l for p in prefixes) or any(f"127.0.0.1:{port}" in l for port in ports)]


# --------------------------------------------------------------------------------------------


def test_ansible_lint_is_clean_at_the_production_profile() -> None:
    lint = VENV_BIN / "ansible-lint"
    assert lint.exists(), "ansible-lint is not installed in the venv (run scripts/bootstrap)"
    proc = subprocess.run(
        [str(lint), "--profile", "production", "--offline", "--nocolor"],
        cwd=REPO / "ansible", env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr


FIREWALL_RENDER = """
- name: Render the firewall of a production edge node (policy drop)
  hosts: edge-a
  gather_facts: true
  vars_files:
    - {roles}/byoc_edge/defaults/main.yml
    - {roles}/firewall/defaults/main.yml
    - {roles}/firewall/vars/main.yml
  tasks:
    - name: Render the rules
      ansible.builtin.template:
        src: {roles}/firewall/templates/edge.nft.j2
        dest: {dest}
        mode: "0644"
        validate: nft -c -f %s
      vars:
        byoc_edge_prefix: byoc-edge
        byoc_edge_sip_address: 10.0.1.11
        byoc_edge_carrier_cidrs: [192.76.120.0/24, "2001:db8:5::/48"]
        byoc_edge_agent_cidrs: [203.0.113.0/24]
        byoc_edge_monitoring_cidrs: [10.0.9.0/24]
        byoc_edge_management_cidrs: [10.0.8.0/24]
        byoc_edge_internal_cidrs: [10.0.1.0/24]
"""


def test_production_firewall_rules_pass_nft_check(tmp_path: Path) -> None:
    """The default policy (drop, SSH from the management network) renders and passes `nft -c`, unloaded."""
    assert which("nft"), "nft is not installed (apt-get install nftables)"
    dest = tmp_path / "byoc-edge.nft"
    (tmp_path / "render.yml").write_text(FIREWALL_RENDER.format(roles=REPO / "ansible" / "roles", dest=dest))
    hosts = {"all": {"children": {"edge": {"hosts": {"edge-a": {"ansible_connection": "local",
             "ansible_python_interpreter": "/usr/bin/python3"}}}, "redis": {"hosts": {"edge-a": None}}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(hosts))
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "hosts.yml", "render.yml"], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    rules = dest.read_text()
    assert "policy drop;" in rules
    assert "meta l4proto { udp, tcp } th dport { 5060 } ip saddr @sip_peers_v4 accept" in rules
    assert "elements = { 127.0.0.1/32, 10.0.1.11/32, 192.76.120.0/24, 203.0.113.0/24 }" in rules
    assert "udp dport 30000-40000 accept" in rules
    assert "tcp dport { 9100 } ip saddr @monitoring_v4 accept" in rules
    assert "tcp dport { 22, 9900 } ip saddr @management_v4 accept" in rules
    assert "tcp dport 6380 ip saddr @redis_clients_v4 accept" in rules


FIREWALL_RTPENGINE_RENDER = """
- name: Render the firewall of a production rtpengine host (policy drop)
  hosts: rtp-a
  gather_facts: true
  vars_files:
    - {roles}/byoc_edge/defaults/main.yml
    - {roles}/firewall/defaults/main.yml
    - {roles}/firewall/vars/main.yml
  tasks:
    - name: Render the rules
      ansible.builtin.template:
        src: {roles}/firewall/templates/edge.nft.j2
        dest: {dest}
        mode: "0644"
        validate: nft -c -f %s
      vars:
        byoc_edge_prefix: byoc-edge
        byoc_edge_management_cidrs: [10.0.8.0/24]
        firewall_ng_extra_cidrs: ["fd00:1::/64"]
"""


def test_production_firewall_rules_of_an_rtpengine_host_pass_nft_check(tmp_path: Path) -> None:
    """An rtpengine host's rules (policy drop) pass `nft -c`: RTP open, ng from the edge nodes' addresses
    (inventory, per side) only, the cli port with the management ports, no SIP or redis rule."""
    assert which("nft"), "nft is not installed (apt-get install nftables)"
    dest = tmp_path / "byoc-edge.nft"
    (tmp_path / "render.yml").write_text(FIREWALL_RTPENGINE_RENDER.format(roles=REPO / "ansible" / "roles", dest=dest))
    local = {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}
    hosts = {"all": {"children": {
        "edge": {"hosts": {"edge-a": {"byoc_edge_sip_address": "10.0.1.11"},
                           "edge-b": {"byoc_edge_carrier_sip_address": "10.0.1.12", "byoc_edge_agent_sip_address": "10.0.2.12"}}},
        "rtpengine": {"hosts": {"rtp-a": local}}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(hosts))
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "hosts.yml", "render.yml"], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    rules = dest.read_text()
    assert "policy drop;" in rules and "rtpengine host" in rules.splitlines()[2]
    sets = dict(re.findall(r"set (\w+) \{[^}]*?elements = \{ ([^}]*) \}", rules))
    assert sets["ng_clients_v4"] == "127.0.0.1/32, 10.0.1.11/32, 10.0.1.12/32, 10.0.2.12/32"
    assert sets["ng_clients_v6"] == "::1/128, fd00:1::/64"
    lines = [line.strip() for line in rules.splitlines()]
    for rule in ("udp dport { 2223 } ip saddr @ng_clients_v4 accept",
                 'udp dport { 2223 } counter drop comment "rtpengine ng from an unlisted source"',
                 "udp dport 30000-40000 accept",
                 "tcp dport { 22, 9900 } ip saddr @management_v4 accept"):
        assert rule in lines, rules
    assert "sip_peers" not in rules and "redis_clients" not in rules and "th dport { 5060 }" not in rules


SIDES_CHECK = """
- name: Check the per-side variables of every host
  hosts: all
  gather_facts: false
  tasks:
    - name: The checks of the byoc_edge role (its defaults under the inventory, as in site.yml)
      ansible.builtin.include_role:
        name: {roles}/byoc_edge
        tasks_from: sides.yml
"""

#: one network per side, done right: carriers on a NATed address, agents in a VPC
GOOD_SIDES = {"byoc_edge_carrier_sip_address": "10.0.1.10", "byoc_edge_carrier_advertise": "203.0.113.10",
              "byoc_edge_agent_sip_address": "10.0.2.10"}

#: host -> (its variables, what the failure must say, naming the variable; None: the checks pass)
SIDES_CASES: dict[str, tuple[dict[str, object], str | None]] = {
    "single-network": ({"byoc_edge_advertise": "198.51.100.30"}, None),
    "two-sides": (GOOD_SIDES, None),
    "two-sides-v6": ({"byoc_edge_carrier_sip_address": "2001:db8:1::10", "byoc_edge_agent_sip_address": "fd00:2::10",
                      "byoc_edge_carrier_rtpengine_address": "2001:db8:1::11", "byoc_edge_topology_mask_ip": "::ffff:192.0.2.1",
                      "byoc_edge_agent_media_cidrs": ["fd00:2::/64"]}, None),
    "only-carrier": ({"byoc_edge_carrier_sip_address": "10.0.1.10"}, "byoc_edge_agent_sip_address is not set"),
    "only-agent-advertise": ({"byoc_edge_agent_advertise": "203.0.113.20"}, "byoc_edge_agent_advertise is set, but"),
    "media-cidrs-alone": ({"byoc_edge_carrier_media_cidrs": ["192.76.120.0/24"]},
                          "byoc_edge_carrier_media_cidrs is set, but"),
    "host-name": ({**GOOD_SIDES, "byoc_edge_agent_sip_address": "agents.internal"},
                  'byoc_edge_agent_sip_address: "agents.internal" is not an IP address'),
    "bad-octet": ({**GOOD_SIDES, "byoc_edge_carrier_advertise": "203.0.113.300"},
                  'byoc_edge_carrier_advertise: "203.0.113.300" is not an IP address'),
    "bad-media-address": ({**GOOD_SIDES, "byoc_edge_agent_rtpengine_address": "10.0.2"},
                          'byoc_edge_agent_rtpengine_address: "10.0.2" is not an IP address'),
    "bad-mask": ({"byoc_edge_topology_mask_ip": "192.0.2"}, 'byoc_edge_topology_mask_ip: "192.0.2" is not an IP address'),
    "same-address": ({**GOOD_SIDES, "byoc_edge_agent_sip_address": "10.0.1.10"},
                     "byoc_edge_carrier_sip_address / byoc_edge_agent_sip_address"),
    "wildcard": ({**GOOD_SIDES, "byoc_edge_carrier_sip_address": "0.0.0.0"},
                 "byoc_edge_carrier_sip_address / byoc_edge_agent_sip_address"),
    "mixed-media-families": ({**GOOD_SIDES, "byoc_edge_agent_rtpengine_address": "fd00:2::10"},
                             "byoc_edge_carrier_rtpengine_address / byoc_edge_agent_rtpengine_address"),
    "with-single-advertise": ({**GOOD_SIDES, "byoc_edge_advertise": "203.0.113.10"},
                              "cannot be combined with byoc_edge_advertise"),
    "with-edge-sip-listen": ({**GOOD_SIDES, "edge_sip_listen": [{"transport": "udp", "address": "10.0.1.10"}]},
                             "cannot be combined with edge_sip_listen"),
}


def _failure_messages(result: dict[str, object]) -> list[str]:
    items = result.get("results") or [result]
    # a failed assert names its expression ("assertion"); the tree callback drops the top-level "failed"
    return [str(r.get("msg", "")) for r in items if isinstance(r, dict) and (r.get("failed") or "assertion" in r)]


def test_per_side_variables_are_checked_with_messages_that_name_them(tmp_path: Path) -> None:
    """Each bad combination fails before anything is changed, with a message naming the variable;
    the good ones (one network, two sides over IPv4 and IPv6) pass."""
    roles = REPO / "ansible" / "roles"
    (tmp_path / "check.yml").write_text(SIDES_CHECK.format(roles=roles))
    local = {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}
    hosts = {"all": {"hosts": {name: {**local, **values} for name, (values, _) in SIDES_CASES.items()}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(hosts))
    # the tree callback writes each host's last result (its failure, if any) as JSON
    tree = tmp_path / "results"
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "hosts.yml", "check.yml"], cwd=tmp_path,
                          env=dict(_env(), ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.tree",
                                   ANSIBLE_CALLBACK_TREE_DIR=str(tree)),
                          capture_output=True, text=True, timeout=120)
    failures = {host: _failure_messages(json.loads((tree / host).read_text())) for host in SIDES_CASES}
    for host, (_, names) in SIDES_CASES.items():
        if names is None:
            assert not failures.get(host), (host, failures.get(host))
        else:
            assert failures.get(host), f"{host}: no check failed"
            assert any(names in " ".join(msg.split()) for msg in failures[host]), (host, failures[host])
    assert proc.returncode != 0


def test_site_yml_checks_the_per_side_variables_before_changing_anything(tmp_path: Path) -> None:
    """The checks run in site.yml's first play, before the byoc_edge role creates anything."""
    hosts = {"all": {"children": {"edge": {"hosts": {"edge-x": {
        "ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3", "ansible_become": False,
        "byoc_edge_prefix": "byoc-edge-test-sides", "byoc_edge_carrier_sip_address": "10.0.1.10"}}}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(hosts))
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"), "--check", "site.yml"],
                          cwd=REPO / "ansible", env=_env(), capture_output=True, text=True, timeout=180)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert ("byoc_edge_carrier_sip_address is set, but one network per side needs both byoc_edge_carrier_sip_address "
            "and byoc_edge_agent_sip_address; byoc_edge_agent_sip_address is not set") in " ".join(output.split()), \
        output[-3000:]
    assert "Create the byoc-edge directories" not in output, output[-3000:]
    assert not Path("/etc/byoc-edge-test-sides").exists()


FIREWALL_SIDES_RENDER = """
- name: Render the firewall of an edge node with one network per side (policy drop)
  hosts: edge-a
  gather_facts: true
  vars_files:
    - {roles}/byoc_edge/defaults/main.yml
    - {roles}/firewall/defaults/main.yml
    - {roles}/firewall/vars/main.yml
  tasks:
    - name: Render the rules
      ansible.builtin.template:
        src: {roles}/firewall/templates/edge.nft.j2
        dest: {dest}
        mode: "0644"
        validate: nft -c -f %s
      vars:
        byoc_edge_prefix: byoc-edge
        byoc_edge_sip_address: 10.0.1.11
        byoc_edge_carrier_sip_address: 10.0.1.11
        byoc_edge_carrier_advertise: 198.51.100.11
        byoc_edge_agent_sip_address: "fd00:2::11"
        byoc_edge_agent_rtpengine_address: "fd00:2::12"
        byoc_edge_carrier_cidrs: [192.76.120.0/24]
        byoc_edge_agent_cidrs: ["fd00:2::/64"]
        byoc_edge_agent_media_cidrs: ["fd00:2::/64"]
        byoc_edge_management_cidrs: [10.0.8.0/24]
"""


def test_per_side_firewall_rules_pass_nft_check(tmp_path: Path) -> None:
    """Per-side rules over both IP families render and pass `nft -c`: SIP to each side's address from
    that side only, RTP to the agent side from its media networks only, the carrier side's RTP open."""
    assert which("nft"), "nft is not installed (apt-get install nftables)"
    dest = tmp_path / "byoc-edge.nft"
    (tmp_path / "render.yml").write_text(FIREWALL_SIDES_RENDER.format(roles=REPO / "ansible" / "roles", dest=dest))
    hosts = {"all": {"children": {"edge": {"hosts": {"edge-a": {"ansible_connection": "local",
             "ansible_python_interpreter": "/usr/bin/python3"}}}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(hosts))
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "hosts.yml", "render.yml"], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    rules = dest.read_text()
    sip = "meta l4proto { udp, tcp } th dport { 5060 }"
    expected = [
        f"{sip} ip daddr 10.0.1.11 ip saddr @sip_carrier_v4 counter accept",
        f'{sip} ip daddr 10.0.1.11 counter drop comment "SIP to the carrier side from an unlisted source"',
        f"{sip} ip6 daddr fd00:2::11 ip6 saddr @sip_agent_v6 counter accept",
        f'{sip} ip6 daddr fd00:2::11 counter drop comment "SIP to the agent side from an unlisted source"',
        f"{sip} ip saddr @sip_peers_v4 accept",
        "udp dport 30000-40000 ip6 daddr fd00:2::12 ip6 saddr @media_agent_v6 counter accept",
        'udp dport 30000-40000 ip6 daddr fd00:2::12 counter drop comment "RTP to the agent side from an unlisted source"',
        "udp dport 30000-40000 accept",
    ]
    lines = [line.strip() for line in rules.splitlines()]
    assert [line for line in lines if line in expected] == expected, rules  # present, in this order
    assert "@media_carrier" not in rules  # no carrier media CIDRs: the carrier side's RTP stays open
    sets = dict(re.findall(r"set (\w+) \{[^}]*?elements = \{ ([^}]*) \}", rules))
    assert sets["sip_carrier_v4"] == "127.0.0.1/32, 10.0.1.11/32, 192.76.120.0/24"
    assert sets["sip_agent_v6"] == "::1/128, fd00:2::11/128, fd00:2::12/128, fd00:2::/64"
    assert sets["sip_agent_v4"] == "127.0.0.1/32, 10.0.1.11/32"


@dataclass
class Deployment:
    workdir: Path
    first: Run
    second: Run


#: the deployment writes host-wide paths (/etc, /opt, units, nftables) under fixed prefixes:
#: test runs sharing a machine take turns on this lock instead of undoing each other's work
HOST_LOCK = Path("/tmp/byoc-edge-ansible-test.lock")


@pytest.fixture(scope="module")
def host_lock() -> Iterator[None]:
    """Hold the machine-wide lock of the Ansible test for the whole module (blocks until free)."""
    with open(HOST_LOCK, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, host_lock: None) -> Iterator[Deployment]:
    # the test's own tools; kamailio, rtpengine, redis and nftables are installed by the playbook
    for binary in ("sipp", "start-stop-daemon"):
        assert which(binary), f"{binary} is not installed (run scripts/bootstrap)"
    assert (VENV_BIN / "ansible-playbook").exists(), "ansible-core is not installed in the venv (run scripts/bootstrap)"

    workdir = tmp_path_factory.mktemp("ansible")
    for rel in SNAPSHOT_PATHS:  # deploy a snapshot: edits to the checkout during the test change nothing
        source, target = REPO / rel, workdir / "src" / rel
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".build", "*.egg-info"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (workdir / "hosts.yml").write_text(yaml.safe_dump(inventory(), sort_keys=False))

    nftables_conf = Path("/etc/nftables.conf")
    saved_nftables = nftables_conf.read_bytes() if nftables_conf.exists() else None
    nftables_d_existed = Path("/etc/nftables.d").exists()
    saved_sysctl = {key: _sysctl(key) for key in SYSCTL_KEYS}

    # leftovers of an interrupted earlier run
    playbook(workdir, "uninstall.yml", "uninstall-before.log", "-e", "byoc_edge_purge=true")
    try:
        first = playbook(workdir, "site.yml", "first-run.log")
        assert first.rc == 0, f"first run failed (log {workdir / 'first-run.log'}):\n{first.tail(80)}"
        for binary in ("kamailio", "rtpengine", "rtpengine-ctl", "redis-server", "nft"):
            assert which(binary), f"{binary} is not installed after the first run"
        second = playbook(workdir, "site.yml", "second-run.log")
        assert second.rc == 0, f"second run failed (log {workdir / 'second-run.log'}):\n{second.tail(80)}"
        yield Deployment(workdir, first, second)
    finally:
        stop_all()
        removed = playbook(workdir, "uninstall.yml", "uninstall.log", "-e", "byoc_edge_purge=true")
        for key, value in saved_sysctl.items():
            if value is not None and _sysctl(key) != value:
                subprocess.run(["sysctl", "-q", "-w", f"{key}={value}"], check=False)
        if saved_nftables is None:
            nftables_conf.unlink(missing_ok=True)
        elif nftables_conf.read_bytes() != saved_nftables:
            nftables_conf.write_bytes(saved_nftables)
        if not nftables_d_existed and Path("/etc/nftables.d").exists() and not any(Path("/etc/nftables.d").iterdir()):
            Path("/etc/nftables.d").rmdir()
        assert removed.rc == 0, f"uninstall failed:\n{removed.tail(60)}"
        assert not _leftover_processes(), _leftover_processes()


def test_first_run_deploys_every_node_and_reports_the_forwarding_mode(deployment: Deployment) -> None:
    run = deployment.first
    assert set(run.recap) == {NODE_A.host, NODE_B.host, MEDIA.host, REPLICA[0], *(host for host, _, _ in SENTINELS)}, \
        run.tail()
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in run.recap.values()), run.recap
    for node in NODES:
        mode_file = Path(f"/etc/{node.prefix}/rtpengine-mode")
        mode = mode_file.read_text().splitlines()[0]
        assert mode in ("kernel", "userspace")
        assert re.search(rf"rtpengine forwarding on {node.host}: {mode} \(", run.output), run.output[-3000:]
        # each node's own settings file, id and addresses; the shared redis
        settings = yaml.safe_load(Path(f"/etc/{node.prefix}/settings.yaml").read_text())
        assert settings["node"] == node.node_id
        via_sentinels = {"sentinels": [f"127.0.0.1:{port}" for _, _, port in SENTINELS], "master_name": MASTER_NAME}
        assert settings["redis"] == {"host": "127.0.0.1", "port": REDIS_PORT, "db": 0, "manage": False,
                                     "password": REDIS_PASSWORD, **(via_sentinels if node is NODE_B else {})}
        assert {l["address"] for l in settings["sip"]["listen"]} == {node.sip, node.agent_side} - {""}
        # one trunk-password key for the site, readable by Kamailio (which runs as kamailio)
        key = Path(f"/etc/{node.prefix}/secret.key")
        assert settings["security"]["secret_key_file"] == str(key)
        assert key.read_text() == SECRET_KEY
        assert key.stat().st_mode & 0o777 == 0o640 and grp.getgrgid(key.stat().st_gid).gr_name == "kamailio"
        # configs rendered by the project's renderer, as `edgectl config render` renders them
        cfg = (node.run_dir / "kamailio.cfg").read_text()
        assert f"listen=udp:{node.sip}:{SIP_PORT}" in cfg
        assert ("advertise 127.0.0.2:15060" in cfg) == bool(node.advertise)
        routing = json.loads((node.run_dir / "routing.json").read_text())
        assert routing["node"] == node.node_id and routing["redis_port"] == REDIS_PORT
        assert routing["python_paths"][0] == f"/opt/{node.prefix}"
        rtpengine_conf = (node.run_dir / "rtpengine.conf").read_text()
        assert f"port-min = {node.rtp[0]}" in rtpengine_conf
        assert f"listen-ng = 127.0.0.1:{node.ng_port}" in rtpengine_conf
        # both service managers get the same definition; the rules passed `nft -c`
        assert Path(f"/etc/systemd/system/{node.prefix}-kamailio.service").exists()
        assert Path(f"/etc/{node.prefix}/services/kamailio.env").exists()
        assert Path(f"/etc/systemd/system/{node.prefix}-monitor.service").exists()
        assert Path(f"/etc/{node.prefix}/services/monitor.env").exists()
        assert Path(f"/etc/nftables.d/{node.prefix}.nft").exists()
        json.loads(edgectl(node, "status", "--json"))


def test_a_node_without_per_side_variables_gets_the_settings_it_always_had(deployment: Deployment) -> None:
    """Backward compatibility: no per-side variable, so no `side`, no `rtpengine.sides`, no mask address
    (and `rtpengine.nodes` from the inventory's rtpengine host)."""
    settings = yaml.safe_load(Path(f"/etc/{NODE_A.prefix}/settings.yaml").read_text())
    assert settings == {
        "node": NODE_A.node_id,
        "run_dir": str(NODE_A.run_dir),
        "sip": {"listen": [{"transport": t, "address": NODE_A.sip, "port": SIP_PORT} for t in ("udp", "tcp")],
                "workers": 2, "tcp_workers": 1, "max_call_duration_s": 60},
        "rtpengine": {"address": NODE_A.sip, "ng_port": NODE_A.ng_port, "cli_port": NODE_A.cli_port,
                      "port_min": NODE_A.rtp[0], "port_max": NODE_A.rtp[1],
                      # the one addition: the inventory's rtpengine host (group rtpengine) as its set
                      "nodes": MEDIA_NODES},
        "redis": {"host": "127.0.0.1", "port": REDIS_PORT, "db": 0, "manage": False, "password": REDIS_PASSWORD},
        "metrics": {"address": NODE_A.sip, "kamailio_port": 9161, "rtpengine_port": 9162, "exporter_port": 9163},
        "security": {"secret_key_file": f"/etc/{NODE_A.prefix}/secret.key"},
    }


def test_per_side_variables_give_each_side_its_listeners_and_media_interface(deployment: Deployment) -> None:
    node = NODE_B
    path = Path(f"/etc/{node.prefix}/settings.yaml")
    settings = yaml.safe_load(path.read_text())
    assert settings["sip"]["listen"] == [
        {"transport": "udp", "address": node.sip, "port": SIP_PORT, "advertise": node.advertise, "side": "carrier"},
        {"transport": "tcp", "address": node.sip, "port": SIP_PORT, "advertise": node.advertise, "side": "carrier"},
        {"transport": "udp", "address": node.agent_side, "port": SIP_PORT, "side": "agent"},
        {"transport": "tcp", "address": node.agent_side, "port": SIP_PORT, "side": "agent"},
    ]
    assert settings["rtpengine"]["sides"] == {"carrier": {"address": node.sip, "advertise": node.advertise},
                                              "agent": {"address": node.agent_side}}
    assert "advertise" not in settings["rtpengine"]
    # no mask address set: the one of neither network (docs/media.md)
    assert settings["security"]["topology_mask_ip"] == MASK_IP
    # the real settings model takes it as one network per side
    model = load_settings(path)
    assert model.sip.sided and model.rtpengine.sides is not None
    assert model.rtpengine.sides.agent.advertise is None
    # rendered by the project's renderer
    cfg = (node.run_dir / "kamailio.cfg").read_text()
    for proto in ("udp", "tcp"):
        assert f"listen={proto}:{node.sip}:{SIP_PORT} advertise {node.advertise}:{SIP_PORT}" in cfg
        assert f"listen={proto}:{node.agent_side}:{SIP_PORT}\n" in cfg
    rtpengine_conf = (node.run_dir / "rtpengine.conf").read_text()
    assert f"interface = carrier/{node.sip}!{node.advertise};agent/{node.agent_side}\n" in rtpengine_conf
    # the play reports both sides
    report = " ".join(deployment.first.output.split())
    assert (f"node {node.node_id}: carrier side SIP udp+tcp {node.sip}:{SIP_PORT} advertised as {node.advertise}, "
            f"media {node.sip} advertised as {node.advertise}; agent side SIP udp+tcp {node.agent_side}:{SIP_PORT}, "
            f"media {node.agent_side}; RTP ports {node.rtp[0]}-{node.rtp[1]}") in report, deployment.first.output[-4000:]


def conf_values(path: Path) -> dict[str, str]:
    """``key = value`` lines of an rtpengine.conf."""
    return dict(line.split(" = ", 1) for line in path.read_text().splitlines() if " = " in line and not line.startswith("#"))


def test_the_rtpengine_host_runs_the_edges_rtpengine_config_on_its_own_address(deployment: Deployment) -> None:
    """The rtpengine host's rtpengine.conf is the edge's template with the ng and cli listeners on the
    host's address; node A gets the host as its rtpengine set, and its edgectl status pings it."""
    conf = conf_values(MEDIA.run_dir / "rtpengine.conf")
    assert conf["listen-ng"] == f"{MEDIA.address}:{MEDIA.ng_port}"
    assert conf["listen-cli"] == f"{MEDIA.address}:{MEDIA.cli_port}"
    assert conf["interface"] == MEDIA.address
    assert (conf["port-min"], conf["port-max"]) == tuple(str(p) for p in MEDIA.rtp)
    assert "dtmf-log-dest" not in conf  # the edge recording the digits listens on its own loopback
    # the rtpengine options node A renders for its own rtpengine, from the same settings
    own = conf_values(NODE_A.run_dir / "rtpengine.conf")
    assert own["listen-ng"] == f"127.0.0.1:{NODE_A.ng_port}"
    for key in ("table", "timeout", "silent-timeout", "final-timeout", "delete-delay", "log-level"):
        assert conf[key] == own[key], key
    assert conf["final-timeout"] == "120"
    # rtpengine alone: its forwarding mode and service, no Kamailio, no code
    assert Path(f"/etc/{MEDIA.prefix}/rtpengine-mode").read_text().split()[0] in ("kernel", "userspace")
    assert Path(f"/etc/{MEDIA.prefix}/services/rtpengine.env").exists()
    assert Path(f"/etc/systemd/system/{MEDIA.prefix}-rtpengine.service").exists()
    assert not Path(f"/etc/systemd/system/{MEDIA.prefix}-kamailio.service").exists()
    assert not Path(f"/opt/{MEDIA.prefix}").exists()
    report = " ".join(deployment.first.output.split())
    assert (f"rtpengine host {MEDIA.host}: ng {MEDIA.address}:{MEDIA.ng_port} (weight {MEDIA.weight}), media "
            f"{MEDIA.address} ports {MEDIA.rtp[0]}-{MEDIA.rtp[1]}") in report, deployment.first.output[-4000:]
    assert (f"idle: media through the rtpengine hosts {MEDIA.address}:{MEDIA.ng_port} (weight {MEDIA.weight}), "
            f"redis 127.0.0.1:{REDIS_PORT}") in report, deployment.first.output[-4000:]
    # node A uses it (settings rtpengine.nodes), node B (one network per side) does not
    assert yaml.safe_load(Path(f"/etc/{NODE_A.prefix}/settings.yaml").read_text())["rtpengine"]["nodes"] == MEDIA_NODES
    assert "nodes" not in yaml.safe_load(Path(f"/etc/{NODE_B.prefix}/settings.yaml").read_text())["rtpengine"]
    states = {s["name"]: s for s in json.loads(edgectl(NODE_A, "status", "--json"))}
    assert states[f"rtpengine udp:{MEDIA.address}:{MEDIA.ng_port}"]["healthy"] is True, states


def _redis_cli(port: int, *args: str, password: str = "") -> str:
    env = {**os.environ, "REDISCLI_AUTH": password} if password else None
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True, text=True,
                          timeout=10, env=env, check=True).stdout


def test_the_replica_copies_the_master_and_three_sentinels_watch_both(deployment: Deployment) -> None:
    info = _redis_cli(REPLICA[2], "info", "replication", password=REDIS_PASSWORD)
    assert "role:slave" in info and "master_link_status:up" in info and f"master_port:{REDIS_PORT}" in info, info
    for _, prefix, port in SENTINELS:
        assert _redis_cli(port, "sentinel", "get-master-addr-by-name", MASTER_NAME).split() == ["127.0.0.1", str(REDIS_PORT)]
        # each Sentinel learns the replica (from the master's INFO) and the two others (their hello messages)
        wait_until(lambda port=port: f"{REPLICA[2]}" in _redis_cli(port, "sentinel", "replicas", MASTER_NAME)
                   and _redis_cli(port, "sentinel", "master", MASTER_NAME).split("\n")[
                       _redis_cli(port, "sentinel", "master", MASTER_NAME).split("\n").index("num-other-sentinels") + 1] == "2",
                   timeout=20, what=f"Sentinel {port} knowing the replica and the two other Sentinels")
        # Sentinel's own file (it rewrites it, with the master's password, at its umask's mode): in a
        # directory only the redis user and group enter
        conf = Path(f"/var/lib/{prefix}/sentinel/sentinel.conf")
        assert conf.exists() and "sentinel myid" in conf.read_text(), conf
        assert conf.parent.stat().st_mode & 0o777 == 0o750 and conf.parent.owner() == "redis", conf.parent
    # node B follows the Sentinels (settings redis.sentinels), node A talks to the master
    settings_b = yaml.safe_load(Path(f"/etc/{NODE_B.prefix}/settings.yaml").read_text())
    assert settings_b["redis"]["sentinels"] == [f"127.0.0.1:{port}" for _, _, port in SENTINELS]
    assert settings_b["redis"]["master_name"] == MASTER_NAME
    assert "sentinels" not in yaml.safe_load(Path(f"/etc/{NODE_A.prefix}/settings.yaml").read_text())["redis"]


def test_second_run_changes_nothing(deployment: Deployment) -> None:
    recap = deployment.second.recap
    assert set(recap) == {NODE_A.host, NODE_B.host, MEDIA.host, REPLICA[0], *(host for host, _, _ in SENTINELS)}, \
        deployment.second.tail()
    changed = [line for line in deployment.second.output.splitlines() if line.startswith("changed:")]
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in recap.values()), (recap, changed)


@pytest.fixture(scope="module")
def provisioned(deployment: Deployment) -> Deployment:
    """One trunk (max 1 call), agent and DID, written once through node A into the shared redis."""
    edgectl(NODE_A, "trunk", "add", TRUNK, "--replace", "--gateway", f"{CARRIER}:15080", "--cidr", f"{CARRIER}/32",
            "--max-calls", "1")
    # the agent is a SIPp callee that answers INVITEs only: not probed (the deployed monitors ping agent URIs)
    edgectl(NODE_A, "agent", "add", "test-bot", "--replace", "--uri", f"sip:{AGENT}:{AGENT_PORT}", "--cidr", f"{AGENT}/32",
            "--no-probe")
    edgectl(NODE_A, "did", "add", DID, "--replace", "--trunk", TRUNK, "--agent", "test-bot")
    # node B sees the same tables
    assert json.loads(edgectl(NODE_B, "did", "show", DID, "--json"))["agent"] == "test-bot"
    return deployment


def trunk_active(node: Node) -> int:
    counts = json.loads(edgectl(node, "calls", "--json"))["counts"]
    return sum(c["active"] for c in counts if c["kind"] == "trunk" and c["name"] == TRUNK)


@pytest.mark.parametrize("node", NODES, ids=lambda n: n.node_id)
def test_carrier_call_reaches_the_agent_through_the_node(provisioned: Deployment, node: Node, tmp_path: Path) -> None:
    """Node A relays the call's media through the rtpengine host (its rtpengine set), node B through its own."""
    relay: Node | MediaHost = MEDIA if node is NODE_A else node
    before = relayed_packets(relay)
    own_before = relayed_packets(node)
    agent = uas(tmp_path / "agent", AGENT, AGENT_PORT, answer_ms=200)
    carrier = uac(tmp_path / "carrier", CARRIER, 15070, node.target, DID, hold_ms=1500)
    assert carrier.wait(60) == 0, carrier.output()
    assert agent.wait(30) == 0, agent.output()
    assert carrier.final_status() == [(200, "OK")]
    invite = agent.received_requests("INVITE")[0]
    assert f"X-Edge-Trunk: {TRUNK}" in invite
    assert f"X-Edge-DID: {DID}" in invite
    # SDP anchored in the relaying rtpengine; the agent reaches the node at its agent-side address
    facing_agent = node.agent_side or node.advertise or node.sip
    media = MEDIA.address if relay is MEDIA else facing_agent
    assert f"c=IN IP4 {media}" in invite, invite
    if relay is MEDIA:
        port = int(re.search(r"^m=audio (\d+) ", invite, re.M).group(1))  # type: ignore[union-attr]
        assert MEDIA.rtp[0] <= port <= MEDIA.rtp[1], invite
    assert re.search(rf"^Record-Route: <sip:{re.escape(facing_agent)}:{SIP_PORT}", invite, re.M), invite
    if node.agent_side:
        # one network per side: the agent sees no address of the carrier side (docs/media.md)
        seen = {ip for line in invite.splitlines() if TOPOLOGY_LINE.match(line) for ip in IPV4.findall(line)}
        assert seen <= {node.agent_side, AGENT, MASK_IP} and node.agent_side in seen, (seen, invite)
    assert relayed_packets(relay) - before >= 50
    if relay is MEDIA:
        assert relayed_packets(node) == own_before  # the node's own rtpengine stays idle
    wait_until(lambda: trunk_active(node) == 0, timeout=15, what="the call's trunk slot released")


def test_trunk_limit_holds_across_nodes(provisioned: Deployment, tmp_path: Path) -> None:
    agent = uas(tmp_path / "agent", AGENT, AGENT_PORT, answer_ms=100)
    first = uac(tmp_path / "via-a", CARRIER, 15070, NODE_A.target, DID, hold_ms=5000)
    # the slot taken through node A is visible from node B (one redis)
    wait_until(lambda: trunk_active(NODE_B) == 1, timeout=15, what="the call through node A holding the trunk's slot")
    scenario = reject_uac_scenario(tmp_path)
    second = uac(tmp_path / "via-b", CARRIER, 15071, NODE_B.target, DID, scenario=scenario)
    assert second.wait(30) == 0, second.output()
    assert second.final_status() == [(503, f"Trunk Limit Reached: {TRUNK}")]
    assert first.wait(60) == 0, first.output()
    assert agent.wait(30) == 0, agent.output()
    assert first.final_status() == [(200, "OK")]
    wait_until(lambda: trunk_active(NODE_A) == 0, timeout=15, what="the trunk's slot released")


def nft_table(node: Node) -> str:
    return subprocess.run(["nft", "list", "table", "inet", node.prefix.replace("-", "_")], capture_output=True,
                          text=True, check=True).stdout


def dropped(node: Node, comment: str) -> int:
    """Packets counted by the drop rule of ``node``'s table with this comment."""
    table = nft_table(node)
    match = re.search(rf'counter packets (\d+) bytes \d+ drop comment "{re.escape(comment)}"', table)
    assert match, table
    return int(match.group(1))


def test_firewall_opens_sip_only_to_carriers_and_agents(deployment: Deployment) -> None:
    single = [node for node in NODES if not node.agent_side]
    for node in single:
        assert sip_options(node.sip, SIP_PORT, timeout_s=2, source=CARRIER).code == 200
        assert sip_options(node.sip, SIP_PORT, timeout_s=2, source=AGENT).code == 200
        answer = sip_options(node.sip, SIP_PORT, timeout_s=1.5, source=STRANGER)
        assert answer.code == 0, f"{node.node_id}: a stranger got {answer}"
    # every node's table has the rule for other addresses of the host, on the one SIP port this
    # host's kernel shares: either table may be the one that drops
    assert sum(dropped(node, "SIP from an unlisted source") for node in NODES) >= len(single)


def udp_probe(source: str, target: str, port: int) -> str:
    """Send one UDP datagram from ``source`` to ``target:port`` where nothing listens: ``refused`` when
    the firewall let it in (the kernel answered ICMP port unreachable), ``silence`` when it was dropped."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.connect((target, port))
        sock.settimeout(1.5)
        sock.send(b"\x80\x00\x00\x01" + bytes(168))  # an RTP-sized datagram
        try:
            sock.recv(2048)
        except ConnectionRefusedError:
            return "refused"
        except socket.timeout:
            return "silence"
        return "answered"


def free_udp_port(addresses: list[str], low: int, high: int) -> int:
    """A port of ``low``-``high`` (the node's RTP range) that nothing holds on any of ``addresses``."""
    for port in range(high, low, -1):
        try:
            for address in addresses:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.bind((address, port))
        except OSError:
            continue
        return port
    raise AssertionError(f"no free port in {low}-{high}")


def test_firewall_opens_each_side_only_to_that_side(deployment: Deployment) -> None:
    """Node B (one network per side): SIP and RTP to the carrier-side address only from carriers, to
    the agent-side address only from agents; each drop is counted by that side's rule."""
    node = NODE_B
    sides = {"carrier": (node.sip, CARRIER, AGENT), "agent": (node.agent_side, AGENT, CARRIER)}
    port = free_udp_port([node.sip, node.agent_side], *node.rtp)
    for side, (address, own, other) in sides.items():
        sip_before = dropped(node, f"SIP to the {side} side from an unlisted source")
        rtp_before = dropped(node, f"RTP to the {side} side from an unlisted source")
        assert sip_options(address, SIP_PORT, timeout_s=2, source=own).code == 200, f"{side} side from {own}"
        answer = sip_options(address, SIP_PORT, timeout_s=1.5, source=other)
        assert answer.code == 0, f"the {side} side answered {other}: {answer}"
        answer = sip_options(address, SIP_PORT, timeout_s=1.5, source=STRANGER)
        assert answer.code == 0, f"the {side} side answered a stranger: {answer}"
        assert udp_probe(own, address, port) == "refused", f"RTP to the {side} side from {own} was not let in"
        assert udp_probe(other, address, port) == "silence", f"RTP to the {side} side from {other} was let in"
        # the other side's OPTIONS passes node A's table (carriers and agents may reach its address), so
        # this side's rule dropped it; the stranger's may have been dropped by node A's table first
        assert dropped(node, f"SIP to the {side} side from an unlisted source") - sip_before >= 1
        assert dropped(node, f"RTP to the {side} side from an unlisted source") - rtp_before == 1


def test_the_rtpengine_hosts_ng_port_is_open_to_the_edge_nodes_only(deployment: Deployment) -> None:
    """The rtpengine host's firewall: ng pings from an edge node's address answered, from a stranger
    dropped (counted by the host's own rule)."""
    table = subprocess.run(["nft", "list", "table", "inet", MEDIA.prefix.replace("-", "_")], capture_output=True,
                           text=True, check=True).stdout
    assert f"udp dport {MEDIA.rtp[0]}-{MEDIA.rtp[1]} accept" in table, table
    before = int(re.search(r'counter packets (\d+) bytes \d+ drop comment "rtpengine ng from an unlisted source"',
                           table).group(1))  # type: ignore[union-attr]
    assert rtpengine_ping(MEDIA.address, MEDIA.ng_port, timeout_s=2, source=NODE_B.sip)
    assert not rtpengine_ping(MEDIA.address, MEDIA.ng_port, timeout_s=1.5, source=STRANGER)
    table = subprocess.run(["nft", "list", "table", "inet", MEDIA.prefix.replace("-", "_")], capture_output=True,
                           text=True, check=True).stdout
    after = int(re.search(r'counter packets (\d+) bytes \d+ drop comment "rtpengine ng from an unlisted source"',
                          table).group(1))  # type: ignore[union-attr]
    assert after - before == 1, table


def test_a_kamailio_restart_drains_the_node_and_waits_for_its_call(provisioned: Deployment, tmp_path: Path) -> None:
    """A settings change restarts node A's Kamailio: the handler drains the node first and waits for the
    call in progress, which ends with its BYE answered through the old Kamailio (a restart mid-call
    would answer that BYE 481); the node is back in service after."""
    workdir = provisioned.workdir
    changed = inventory()
    node_a = changed["all"]["children"]["edge"]["hosts"][NODE_A.host]  # type: ignore[index]
    node_a["edge_settings_extra"]["limits"] = {"retry_after_s": 6}  # routing.json changes: Kamailio restarts
    (workdir / "hosts-drain.yml").write_text(yaml.safe_dump(changed, sort_keys=False))
    old_pid = kamailio_pid(NODE_A)
    log = workdir / "drain-run.log"
    ansible_dir = workdir / "src" / "ansible"
    with open(log, "w") as out:
        run = subprocess.Popen(
            [str(VENV_BIN / "ansible-playbook"), "-i", str(workdir / "hosts-drain.yml"), "site.yml", "--limit", NODE_A.host],
            cwd=ansible_dir, env=dict(_env(), ANSIBLE_CONFIG=str(ansible_dir / "ansible.cfg")),
            stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        # the call starts once the new configs are being installed, so it is in progress when the handlers run
        wait_until(lambda: "Install the Kamailio configs" in log.read_text() or run.poll() is not None, timeout=300,
                   interval=0.2, what="the play installing the new Kamailio configs")
        agent = uas(tmp_path / "agent", AGENT, AGENT_PORT, scenario="uas_answer.xml", answer_ms=100, rtp_echo=False)
        call = uac(tmp_path / "carrier", CARRIER, 15070, NODE_A.target, DID, scenario="uac_simple.xml", hold_ms=12000)
        assert run.wait(timeout=400) == 0, log.read_text()[-6000:]
    finally:
        if run.poll() is None:
            run.kill()
    output = log.read_text()
    assert call.wait(60) == 0, call.output()
    assert call.final_status() == [(200, "OK")]
    assert agent.wait(30) == 0, agent.output()
    assert re.search(r"RUNNING HANDLER \[byoc_edge : Drain kamailio before its restart\][^\n]*\nchanged: \[edge-a\]",
                     output), output[-6000:]
    assert "RUNNING HANDLER [byoc_edge : Put kamailio back in service after its restart]" in output
    new_pid = kamailio_pid(NODE_A)
    assert new_pid and new_pid != old_pid
    kamailio = next(s for s in json.loads(edgectl(NODE_A, "status", "--json")) if s["name"] == "kamailio")
    assert kamailio["draining"] is False
    assert sip_options(NODE_A.sip, SIP_PORT, timeout_s=2, source=CARRIER).code == 200
    wait_until(lambda: trunk_active(NODE_A) == 0, timeout=15, what="the call's trunk slot released")


def test_kamailio_runs_with_debians_embedded_python_environment(deployment: Deployment) -> None:
    # the unit's PATH and PYTHONHOME (routing.ops.services.kamailio_environment), whatever PATH the
    # service manager or the shell that ran it had: app_python3 then loads /usr/lib/python3.11
    from routing.ops.services import EMBEDDED_PYTHON_HOME, KAMAILIO_PATH

    for node in NODES:
        pid = kamailio_pid(node)
        assert pid, f"no kamailio pid on {node.host}"
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"PATH={KAMAILIO_PATH}".encode() in environ, environ
        assert f"PYTHONHOME={EMBEDDED_PYTHON_HOME}".encode() in environ, environ


def test_a_killed_kamailio_is_restarted_by_its_service_manager(deployment: Deployment) -> None:
    node = NODE_B
    old = kamailio_pid(node)
    assert old, "no kamailio pid"
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: (kamailio_pid(node) or old) != old, timeout=30, what="kamailio started again")
    wait_until(lambda: sip_options(node.sip, SIP_PORT, timeout_s=0.5).code == 200, timeout=30,
               what="the restarted kamailio answering OPTIONS")
    # the service manager reports it running
    manager = Path(f"/usr/local/sbin/{node.prefix}-service")
    if manager.exists():
        status = subprocess.run([str(manager), "status", "kamailio"], capture_output=True, text=True)
        assert status.returncode == 0 and "kamailio running" in status.stdout, status.stdout + status.stderr
    else:
        status = subprocess.run(["systemctl", "is-active", f"{node.prefix}-kamailio.service"], capture_output=True,
                                text=True)
        assert status.stdout.strip() == "active"
    time.sleep(0.5)
