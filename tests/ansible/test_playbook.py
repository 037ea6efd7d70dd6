"""The Ansible deployment (ansible/), applied for real to this machine.

Two edge nodes and their shared redis are deployed to localhost (``connection: local``) from a
snapshot of the repository, as two independent prefixes so they do not collide with a real
edge or with the other tests:

    node test-a  /opt/byoc-edge-test-a  SIP 127.0.0.1:15060  ng 12223  cli 19900  RTP 50000-50999
                 + the shared redis 127.0.0.1:16379 (inventory group `redis`)
    node test-b  /opt/byoc-edge-test-b  SIP 127.0.0.2:15060 (advertised as 127.0.0.2)
                                          ng 12224  cli 19901  RTP 51000-51999

Then: ansible-lint is clean at the production profile; the first run deploys and reports the
rtpengine forwarding mode, and gives every node its settings and the site's trunk-password
key; a second run changes nothing; a carrier's SIPp call reaches the
agent through each node (routing tables provisioned once, with node A's edgectl, in the shared
redis); a trunk limit of 1 holds across the nodes; the nftables rules drop SIP from a source
that is neither carrier nor agent; a killed Kamailio is restarted by its service manager
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
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from routing.sipp import reject_uac_scenario, stop_all, uac, uas
from routing.sipprobe import sip_options
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SNAPSHOT_PATHS = ["pyproject.toml", "README.md", "routing", "kamailio", "templates", "sipp", "ansible"]

SIP_PORT = 15060
REDIS_PORT = 16379
REDIS_PASSWORD = "ansible-test-secret"
#: the site's trunk-password key (Fernet), distributed to every node
SECRET_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()
CARRIER = "127.0.0.111"
AGENT = "127.0.0.121"
STRANGER = "127.0.0.99"
AGENT_PORT = 15090
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
        if self.advertise:
            values["byoc_edge_advertise"] = self.advertise
        return values


NODE_A = Node("edge-a", "byoc-edge-test-a", "test-a", "127.0.0.1", 12223, 19900, (50000, 50999))
NODE_B = Node("edge-b", "byoc-edge-test-b", "test-b", "127.0.0.2", 12224, 19901, (51000, 51999), advertise="127.0.0.2")
NODES = (NODE_A, NODE_B)

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
                        NODE_B.host: {**NODE_B.host_vars(), "sysctl_reserve_rtp_ports": False,
                                      # and its own metrics ports (node A keeps the defaults)
                                      "byoc_edge_metrics_kamailio_port": 9261,
                                      "byoc_edge_metrics_rtpengine_port": 9262,
                                      "byoc_edge_metrics_exporter_port": 9263},
                    }
                },
                "redis": {"hosts": {NODE_A.host: None}},
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


def relayed_packets(node: Node) -> float:
    out = subprocess.run(
        ["rtpengine-ctl", "-ip", "127.0.0.1", "-port", str(node.cli_port), "list", "totals"],
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
    return [l for l in out.splitlines() if any(n.prefix in l for n in NODES) or f"127.0.0.1:{REDIS_PORT}" in l]


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
    assert set(run.recap) == {NODE_A.host, NODE_B.host}, run.tail()
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in run.recap.values()), run.recap
    for node in NODES:
        mode_file = Path(f"/etc/{node.prefix}/rtpengine-mode")
        mode = mode_file.read_text().splitlines()[0]
        assert mode in ("kernel", "userspace")
        assert re.search(rf"rtpengine forwarding on {node.host}: {mode} \(", run.output), run.output[-3000:]
        # each node's own settings file, id and addresses; the shared redis
        settings = yaml.safe_load(Path(f"/etc/{node.prefix}/settings.yaml").read_text())
        assert settings["node"] == node.node_id
        assert settings["redis"] == {"host": "127.0.0.1", "port": REDIS_PORT, "db": 0, "manage": False,
                                     "password": REDIS_PASSWORD}
        assert {l["address"] for l in settings["sip"]["listen"]} == {node.sip}
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


def test_second_run_changes_nothing(deployment: Deployment) -> None:
    recap = deployment.second.recap
    assert set(recap) == {NODE_A.host, NODE_B.host}, deployment.second.tail()
    changed = [line for line in deployment.second.output.splitlines() if line.startswith("changed:")]
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in recap.values()), (recap, changed)


@pytest.fixture(scope="module")
def provisioned(deployment: Deployment) -> Deployment:
    """One trunk (max 1 call), agent and DID, written once through node A into the shared redis."""
    edgectl(NODE_A, "trunk", "add", TRUNK, "--replace", "--gateway", f"{CARRIER}:15080", "--cidr", f"{CARRIER}/32",
            "--max-calls", "1")
    edgectl(NODE_A, "agent", "add", "test-bot", "--replace", "--uri", f"sip:{AGENT}:{AGENT_PORT}", "--cidr", f"{AGENT}/32")
    edgectl(NODE_A, "did", "add", DID, "--replace", "--trunk", TRUNK, "--agent", "test-bot")
    # node B sees the same tables
    assert json.loads(edgectl(NODE_B, "did", "show", DID, "--json"))["agent"] == "test-bot"
    return deployment


def trunk_active(node: Node) -> int:
    counts = json.loads(edgectl(node, "calls", "--json"))["counts"]
    return sum(c["active"] for c in counts if c["kind"] == "trunk" and c["name"] == TRUNK)


@pytest.mark.parametrize("node", NODES, ids=lambda n: n.node_id)
def test_carrier_call_reaches_the_agent_through_the_node(provisioned: Deployment, node: Node, tmp_path: Path) -> None:
    before = relayed_packets(node)
    agent = uas(tmp_path / "agent", AGENT, AGENT_PORT, answer_ms=200)
    carrier = uac(tmp_path / "carrier", CARRIER, 15070, node.target, DID, hold_ms=1500)
    assert carrier.wait(60) == 0, carrier.output()
    assert agent.wait(30) == 0, agent.output()
    assert carrier.final_status() == [(200, "OK")]
    invite = agent.received_requests("INVITE")[0]
    assert f"X-Edge-Trunk: {TRUNK}" in invite
    assert f"X-Edge-DID: {DID}" in invite
    media = node.advertise or node.sip
    assert f"c=IN IP4 {media}" in invite, invite  # SDP anchored in this node's rtpengine
    assert re.search(rf"^Record-Route: <sip:{re.escape(node.advertise or node.sip)}:{SIP_PORT}", invite, re.M), invite
    assert relayed_packets(node) - before >= 50
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


def test_firewall_opens_sip_only_to_carriers_and_agents(deployment: Deployment) -> None:
    for node in NODES:
        assert sip_options(node.sip, SIP_PORT, timeout_s=2, source=CARRIER).code == 200
        assert sip_options(node.sip, SIP_PORT, timeout_s=2, source=AGENT).code == 200
        dropped = sip_options(node.sip, SIP_PORT, timeout_s=1.5, source=STRANGER)
        assert dropped.code == 0, f"{node.node_id}: a stranger got {dropped}"
    # both nodes share this host's kernel (and SIP port): either table may be the one that drops
    dropped_packets = 0
    for node in NODES:
        table = subprocess.run(["nft", "list", "table", "inet", node.prefix.replace("-", "_")], capture_output=True,
                               text=True, check=True).stdout
        match = re.search(r'counter packets (\d+) bytes \d+ drop comment "SIP from an unlisted source"', table)
        assert match, table
        dropped_packets += int(match.group(1))
    assert dropped_packets >= 2


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
