"""The edge on several hosts (issue 16, "no single point of failure", part 7): every component a host
of its own (a network namespace with its own address on one bridge, made by the test,
:mod:`tests.netns`), one steady load, and the failures the issue names in sequence on it.

Hosts (10.66.0.0/16, namespaces ``bx-*``): edge A and B (Kamailio + monitor, ``edgectl up``), rtpengine
1 and 2 (the edges' ``rtpengine.nodes``), a redis master and a replica, three Sentinels, a carrier
(SIPp) and an agent (SIPp answering and echoing RTP).  The carrier places 20 calls a second, 10 s each
with RTP both ways (PCMU silence played by the carrier, a packet every 200 ms, echoed by the agent), half first to A and half
first to B, and tries the other edge when one refuses (503) or does not answer at all within 3 s, as
carriers do with a trunk's second gateway.  On that load:

1. the redis master is SIGKILLed: Sentinel promotes the replica;
2. rtpengine 1 is SIGKILLed: the edges end its calls with BYE both ways (``rtpengine_lost``);
3. edge B is drained (``503 Node Draining``, its calls finish) and put back in service;
4. edge A's host dies (SIGKILL of every process in it): edge B's monitor releases each of A's calls
   once rtpengine 2 says its media stopped (``node_lost``), never while it flows (a 25 s witness call).

Per event, from the edges' call records and the carrier's own log: calls in progress dropped, seconds
until new calls succeed again (≤ 10 s), the highest count of slots held against the trunk limit (sampled
every 0.1 s), and at the end every counter back to zero.  The figures are printed (docs/operations.md).
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
import redis
import yaml

from routing.call import quality
from routing.monitor.nodeloss import REAP_EVERY_S
from routing.ngclient import NgClient, NgError
from routing.ops import drain as node_drain
from routing.ops import services
from routing.ops.render import render_sentinel
from routing.ops.settings import Settings, load_settings
from routing.tables import admin, keys
from routing.tables.calls import lease_counts
from routing.tables.cdrstore import CdrStore
from routing.tables.connection import connect
from routing.tables.model import Agent, Did, MediaPolicy, Trunk
from routing.tables.store import HEARTBEAT_TTL_S
from tests.dtmfmedia import sparse_pcap
from tests.helpers import wait_until
from tests.netns import Hosts

SUBNET = "10.66.0"
MASTER_NAME = "byoc-edge-mh"
PASSWORD = "multihost-secret"
DID = "+14155550100"
SIP_PORT = 5060
NG_PORT = 2223
#: per-host addresses (last octet)
HOSTS = {"edgea": 1, "edgeb": 2, "rtp1": 11, "rtp2": 12, "redis1": 21, "redis2": 22,
         "sent1": 31, "sent2": 32, "sent3": 33, "carrier": 41, "agent": 51}
#: the steady load: calls per second per carrier stream (two streams), call length (ms) with RTP all along
RATE_PER_STREAM = 10
HOLD_MS = 10_000
#: the trunk's and the agent's limit: above the load's ~210 concurrent calls and the dead node's calls its
#: slots hold for up to 20 s more (until their media stopped): the limit is read against the highest count
LIMIT = 340
#: no RTP from any side for this long = media stopped (the sides' rtp_timeout_s, the reaper's threshold)
RTP_TIMEOUT_S = 5
#: the witness call on the node that dies: its RTP lasts this long after its answer (ms)
WITNESS_MS = 25_000
#: the issue's bound on the time until new calls succeed again after each event (s)
RECOVERY_S = 10.0
#: event times, seconds after the load started; the load stops at LOAD_S
SCHEDULE = {"redis": 14, "rtpengine": 30, "drain": 46, "undrain": 60, "witness": 66, "edge": 70}
LOAD_S = 86


def _sdp() -> str:
    lines = ["v=0", "o=- 1 1 IN IP4 [local_ip]", "s=-", "c=IN IP4 [media_ip]", "t=0 0",
             "m=audio [media_port] RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=sendrecv"]
    return "\n".join(f"      {line}" for line in lines)


def _request(method: str, uri: str, to: str, cseq: int, extra: str = "", body: str = "") -> str:
    """A request of the carrier's call; ``to``: the To header's value."""
    head = (f"      {method} {uri} SIP/2.0\n"
            "      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
            '      From: "Carrier" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n'
            f"      To: {to}\n"
            "      Call-ID: [call_id]\n"
            f"      CSeq: {cseq} {method}\n"
            "      Contact: <sip:[caller]@[local_ip]:[local_port]>\n"
            "      Max-Forwards: 70\n")
    if extra:
        head += f"      {extra}\n"
    if body:
        return head + f"      Content-Type: application/sdp\n      Content-Length: [len]\n\n{body}\n"
    return head + "      Content-Length: 0\n\n"


def _ack_refusal(edge: str, cseq: int) -> str:
    """The ACK of a non-2xx final answer: the INVITE's branch (its Via, echoed in the answer)."""
    return (f"      ACK sip:[service]@{edge} SIP/2.0\n      [last_Via:]\n"
            '      From: "Carrier" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n'
            f"      [last_To:]\n      Call-ID: [call_id]\n      CSeq: {cseq} ACK\n      Max-Forwards: 70\n"
            "      Content-Length: 0\n\n")


def _answered_path(n: int, edge: str, cseq: int, pcap: Path, hold_ms: int) -> str:
    """ACK the 2xx, log the answer, play RTP for the call's length, then hang up, unless the edge's BYE
    comes first (an rtpengine lost): then answer it."""
    to = f"<sip:[service]@{edge}>[peer_tag_param]"
    ack = _request("ACK", "[next_url]", to, cseq, "[routes]")
    bye = _request("BYE", "[next_url]", to, cseq + 1, "[routes]")
    return f"""  <label id="answered{n}"/>
  <send><![CDATA[
{ack}    ]]></send>
  <nop><action><log message="ANSWERED [call_id]"/><exec play_pcap_audio="{pcap}"/></action></nop>
  <recv request="BYE" timeout="{hold_ms}" ontimeout="hangup{n}"/>
  <nop><action><log message="EDGE_BYE [call_id]"/></action></nop>
  <send next="end"><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]></send>
  <label id="hangup{n}"/>
  <send retrans="500"><![CDATA[
{bye}    ]]></send>
  <recv response="200" next="end"/>
"""


def carrier_scenario(path: Path, primary: str, secondary: str, pcap: Path, hold_ms: int, first_wait_ms: int = 3000) -> Path:
    """The carrier: INVITE to ``primary`` (``ip:port``); on a 503 (ACKed), no answer at all within ``first_wait_ms`` (not
    even 100 Trying: the edge is gone) or no final answer within 15 s, the same call to ``secondary`` (a
    trunk's second gateway).  The first INVITE is not retransmitted (one bridge, no loss): SIPp would send its
    retransmissions to the second edge after ``setdest``.  Logs ``START``, ``ANSWERED``, ``REFUSED``
    (both edges refused) and ``EDGE_BYE`` (the edge hung up) with the Call-ID."""
    host, port = secondary.split(":")
    invite1 = _request("INVITE", f"sip:[service]@{primary}", f"<sip:[service]@{primary}>", 1, body=_sdp())
    invite2 = _request("INVITE", f"sip:[service]@{secondary}", f"<sip:[service]@{secondary}>", 2, body=_sdp())
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="carrier">
  <nop><action><log message="START [call_id]"/></action></nop>
  <send><![CDATA[
{invite1}    ]]></send>
  <recv response="100" optional="true" timeout="{first_wait_ms}" ontimeout="failover"/>
  <recv response="180" optional="true" timeout="15000" ontimeout="failover"/>
  <recv response="503" optional="true" next="refused1" timeout="15000" ontimeout="failover"/>
  <recv response="200" rrs="true" timeout="15000" ontimeout="failover" next="answered1"/>
  <label id="refused1"/>
  <send><![CDATA[
{_ack_refusal(primary, 1)}    ]]></send>
  <label id="failover"/>
  <nop><action><setdest host="{host}" port="{port}" protocol="udp"/></action></nop>
  <send retrans="500"><![CDATA[
{invite2}    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="503" optional="true" next="refused2"/>
  <recv response="200" rrs="true" next="answered2"/>
  <label id="refused2"/>
  <send><![CDATA[
{_ack_refusal(secondary, 2)}    ]]></send>
  <nop next="end"><action><log message="REFUSED [call_id]"/></action></nop>
{_answered_path(1, primary, 1, pcap, hold_ms)}{_answered_path(2, secondary, 2, pcap, hold_ms)}  <label id="end"/>
</scenario>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@dataclass
class World:
    """The hosts and what runs on them."""

    hosts: Hosts
    workdir: Path
    edges: dict[str, Settings] = field(default_factory=dict)

    def ip(self, name: str) -> str:
        return self.hosts.addresses[name]

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        return [(self.ip(n), 26379) for n in ("sent1", "sent2", "sent3")]

    def client(self) -> redis.Redis:
        """A client of whichever redis is the master now (asked of the Sentinels)."""
        return connect(password=PASSWORD, timeout_ms=1000, connect_timeout_ms=1000, sentinels=self.sentinels,
                       master_name=MASTER_NAME)

    def master(self) -> tuple[str, int]:
        host, port = redis.Redis(*self.sentinels[0], decode_responses=True, socket_timeout=1) \
            .sentinel_get_master_addr_by_name(MASTER_NAME)
        return host, int(port)

    def sessions(self, node: str) -> set[str]:
        """Call-IDs rtpengine ``node`` holds a session of (ng ``list``)."""
        with NgClient(self.ip(node), NG_PORT, 1.0) as ng:
            return set(ng.command("list", limit=5000).get("calls", []))


def _redis_answers(host: str, port: int, password: str | None = PASSWORD) -> bool:
    try:
        return bool(redis.Redis(host, port, password=password, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _rtpengine_answers(host: str) -> bool:
    try:
        with NgClient(host, NG_PORT, 0.3) as ng:
            return ng.command("ping").get("result") == "pong"
    except NgError:
        return False


def _start_redis(w: World) -> None:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (run scripts/bootstrap)"
    for name, replica_of in (("redis1", None), ("redis2", "redis1")):
        ip = w.ip(name)
        argv = [binary, "--port", "6379", "--bind", ip, "--save", "", "--appendonly", "no", "--requirepass", PASSWORD,
                "--masterauth", PASSWORD, "--replica-announce-ip", ip, "--dir", str(w.workdir)]
        if replica_of:
            argv += ["--replicaof", w.ip(replica_of), "6379"]
        w.hosts.popen(name, argv, w.workdir / f"{name}.log")
        wait_until(lambda: _redis_answers(ip, 6379), timeout=10, what=f"{name} up")
    wait_until(lambda: redis.Redis(w.ip("redis2"), 6379, password=PASSWORD).info("replication")
               .get("master_link_status") == "up", what="the replica in sync")
    for name in ("sent1", "sent2", "sent3"):
        ip, data = w.ip(name), w.workdir / name
        data.mkdir()
        conf = data / "sentinel.conf"
        conf.write_text(render_sentinel(w.ip("redis1"), 6379, port=26379, bind=ip, data_dir=str(data),
                                        master_name=MASTER_NAME, quorum=2, master_password=PASSWORD, announce_ip=ip))
        w.hosts.popen(name, [binary, str(conf), "--sentinel"], data / "sentinel.log")
    for host, port in w.sentinels:
        sentinel = redis.Redis(host, port, decode_responses=True, socket_timeout=1)
        wait_until(lambda: _redis_answers(host, port, None) and len(sentinel.sentinel_sentinels(MASTER_NAME)) == 2
                   and len(sentinel.sentinel_slaves(MASTER_NAME)) == 1, timeout=30,
                   what=f"sentinel {host} seeing the replica and the other two")


def _start_rtpengines(w: World) -> None:
    for name in ("rtp1", "rtp2"):
        ip = w.ip(name)
        conf = w.workdir / f"{name}.conf"
        conf.write_text("\n".join([
            "[rtpengine]", "table = -1", f"interface = {ip}", f"listen-ng = {ip}:{NG_PORT}",
            "listen-cli = 127.0.0.1:9900", "port-min = 40000", "port-max = 49999", "timeout = 60",
            "delete-delay = 0", "log-level = 5", "log-stderr = true", ""]))
        w.hosts.popen(name, ["rtpengine", f"--config-file={conf}", "--foreground"], w.workdir / f"{name}.log")
        wait_until(lambda: _rtpengine_answers(ip), timeout=10, what=f"{name} answering ng")


def _edge_settings(w: World, name: str) -> Settings:
    ip = w.ip(name)
    data = {
        "node": name,
        "run_dir": str(w.workdir / name / "run"),
        "sip": {"listen": [{"transport": "udp", "address": ip, "port": SIP_PORT}], "workers": 4,
                "failover_timeout_ms": 3000, "ringing_timeout_ms": 10000, "max_call_duration_s": 60},
        "rtpengine": {"nodes": [{"address": w.ip("rtp1"), "ng_port": NG_PORT},
                                {"address": w.ip("rtp2"), "ng_port": NG_PORT}], "disable_s": 5},
        "redis": {"manage": False, "sentinels": [f"{h}:{p}" for h, p in w.sentinels], "master_name": MASTER_NAME,
                  "password": PASSWORD, "timeout_ms": 200, "connect_timeout_ms": 200},
        "media": {"check_interval_s": 2, "trunk": {"rtp_timeout_s": RTP_TIMEOUT_S},
                  "agent": {"rtp_timeout_s": RTP_TIMEOUT_S}},
        "health": {"enabled": False},
        "metrics": {"address": ip},
        # every host of this test shares one 2-core machine: the edge's own shedding on its receive backlog
        # would measure that machine's load, not the failures (each edge has a host of its own in production)
        "overload": {"shed_backlog_kb": 0},
    }
    path = w.workdir / name / "settings.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return load_settings(path)


def _edgectl(w: World, name: str, *args: str) -> None:
    edgectl = str(Path(sys.executable).parent / "edgectl")
    result = w.hosts.run(name, [edgectl, "--settings", str(w.workdir / name / "settings.yaml"), *args], timeout=120)
    assert result.returncode == 0, f"edgectl {' '.join(args)} on {name}: {result.stdout}{result.stderr}"


def _sipp_ready(w: World, host: str, port: int) -> bool:
    return bool(w.hosts.run(host, ["ss", "-Hlun", f"sport = :{port}"], timeout=10).stdout.strip())


def _sipp(w: World, name: str, scenario: Path, port: int, media_port: int, args: list[str]) -> object:
    """SIPp on the carrier or agent host, its files in its own directory."""
    host = "agent" if name == "agent" else "carrier"
    ip = w.ip(host)
    workdir = w.workdir / name
    workdir.mkdir(parents=True, exist_ok=True)
    argv = ["sipp", "-sf", str(scenario), "-i", ip, "-p", str(port), "-mi", ip, "-mp", str(media_port),
            "-trace_err", "-trace_logs", "-nostdin", "-max_recv_loops", "5000", *args]
    proc = w.hosts.popen(host, argv, workdir / "stdout.txt", cwd=workdir)
    wait_until(lambda: _sipp_ready(w, host, port) or proc.poll() is not None, what=f"sipp {name} up")
    assert proc.poll() is None, (workdir / "stdout.txt").read_text()[-2000:]
    return proc


def _logged(w: World, name: str) -> dict[str, set[str]]:
    """``{START|ANSWERED|EDGE_BYE|REFUSED: Call-IDs}`` from a carrier's SIPp log."""
    out: dict[str, set[str]] = {"START": set(), "ANSWERED": set(), "EDGE_BYE": set(), "REFUSED": set()}
    for path in (w.workdir / name).glob("*_logs.log"):
        for line in path.read_text(errors="replace").splitlines():
            word, _, call_id = line.strip().partition(" ")
            if word in out and call_id:
                out[word].add(call_id.strip())
    return out


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """Every host up: redis master, replica and Sentinels, both rtpengines, both edges provisioned
    with the trunk, the agent and the DID; every process and namespace removed afterwards."""
    hosts = Hosts("bx-", SUBNET)
    w = World(hosts, tmp_path)
    try:
        hosts.start()
        for name, octet in HOSTS.items():
            hosts.add(name, octet)
        _start_redis(w)
        _start_rtpengines(w)
        client = w.client()
        admin.put_trunk(client, Trunk(name="carrier", cidrs=(f"{w.ip('carrier')}/32",), max_calls=LIMIT,
                                      media=MediaPolicy(codecs=("PCMU",))))
        admin.put_agent(client, Agent(name="bot", uris=(f"sip:{w.ip('agent')}:{SIP_PORT}",), cidrs=(),
                                      max_calls=LIMIT, probe=False, media=MediaPolicy(codecs=("PCMU",))))
        admin.put_did(client, Did(number=DID, trunk="carrier", agent="bot"))
        for name in ("edgea", "edgeb"):
            w.edges[name] = _edge_settings(w, name)
            _edgectl(w, name, "up")
        yield w
    finally:
        for settings in w.edges.values():
            try:
                services.down(settings)
            except Exception:  # noqa: BLE001 - the namespaces go anyway
                pass
        hosts.close()


class LeaseSampler(threading.Thread):
    """The slots held per lease key, read every 0.1 s through the Sentinels; keeps the highest."""

    def __init__(self, w: World) -> None:
        super().__init__(daemon=True)
        self.w = w
        self.stop = threading.Event()
        self.highest: dict[str, int] = {}
        self.samples = 0

    def run(self) -> None:
        client = self.w.client()
        while not self.stop.wait(0.1):
            try:
                for key, count in lease_counts(client).items():
                    self.highest[key] = max(self.highest.get(key, 0), count)
                self.samples += 1
            except redis.RedisError:
                client = self.w.client()  # the master moved


def _at(started: float, offset_s: float) -> None:
    """The load's clock: return at ``started + offset_s`` (the events' schedule)."""
    time.sleep(max(0.0, started + offset_s - time.time()))


def test_the_edge_survives_each_failure_on_several_hosts(world: World) -> None:
    w = world
    pcap = sparse_pcap(w.workdir / "call.pcap", HOLD_MS)
    witness_pcap = sparse_pcap(w.workdir / "witness.pcap", WITNESS_MS)
    a, b = f"{w.ip('edgea')}:{SIP_PORT}", f"{w.ip('edgeb')}:{SIP_PORT}"
    agent_xml = w.workdir / "agent" / "agent.xml"
    agent_xml.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(__file__).resolve().parents[2] / "sipp" / "uas_answer.xml", agent_xml)
    _sipp(w, "agent", agent_xml, SIP_PORT, 6000, ["-rtp_echo", "-d", "100", "-m", "100000"])
    calls = RATE_PER_STREAM * LOAD_S
    streams = {}
    sampler = LeaseSampler(w)
    sampler.start()
    started = time.time()
    for name, (primary, secondary), port in (("to-a", (a, b), 5061), ("to-b", (b, a), 5062)):
        scenario = carrier_scenario(w.workdir / name / f"{name}.xml", primary, secondary, pcap, HOLD_MS)
        streams[name] = _sipp(w, name, scenario, port, 6000 + 10 * (port % 10),
                              ["-s", DID, "-key", "caller", "+14155550123", "-m", str(calls),
                               "-r", str(RATE_PER_STREAM), "-l", "400", primary])
    events: dict[str, float] = {}

    # 1. the redis master's host dies; Sentinel promotes the replica
    _at(started, SCHEDULE["redis"])
    events["redis"] = time.time()
    w.hosts.kill("redis1")
    wait_until(lambda: w.master() == (w.ip("redis2"), 6379), timeout=20, interval=0.1, what="the replica promoted")
    promoted_s = time.time() - events["redis"]

    # 2. rtpengine 1's host dies: the edges end its calls (BYE both ways) and send new ones to rtpengine 2
    _at(started, SCHEDULE["rtpengine"])
    events["rtpengine"] = time.time()
    w.hosts.kill("rtp1")

    # 3. edge B drained: its calls finish, new INVITEs get 503 and the carrier takes them to A
    _at(started, SCHEDULE["drain"])
    events["drain"] = time.time()
    node_drain.drain(w.edges["edgeb"])
    assert node_drain.wait_drained(w.edges["edgeb"], 30) == 0
    drained_s = time.time() - events["drain"]
    _at(started, SCHEDULE["undrain"])
    node_drain.undrain(w.edges["edgeb"])

    # 4. edge A's host dies with its calls up, one of them (the witness) with RTP for 25 s
    _at(started, SCHEDULE["witness"])
    witness_xml = carrier_scenario(w.workdir / "witness" / "witness.xml", a, b, witness_pcap, WITNESS_MS, 15_000)
    witness = _sipp(w, "witness", witness_xml, 5063, 6030,
                    ["-s", DID, "-key", "caller", "+14155550123", "-m", "1", "-cid_str", "witness-%u-%p@%s", a])
    client = w.client()
    witness_key = wait_until(lambda: next((k for k in client.scan_iter(match=keys.call("edgea", "witness-*"))
                                           if client.hget(k, "answer_ms")), None), timeout=20,
                             what="the witness call answered on edge A")
    witness_answer_s = int(client.hget(witness_key, "answer_ms")) / 1000
    assert client.hget(witness_key, "rtp_node") == f"udp:{w.ip('rtp2')}:{NG_PORT}"  # the node the reaper asks
    _at(started, SCHEDULE["edge"])
    events["edge"] = time.time()
    w.hosts.kill("edgea")
    # A's heartbeat expires; B's monitor then reaps A's calls whose media stopped, not the witness
    wait_until(lambda: not client.exists(keys.node("edgea")), timeout=HEARTBEAT_TTL_S + 5, interval=0.2,
               what="edge A's heartbeat gone")
    cdrs = CdrStore(client, 86400)

    def reaped() -> int:
        return sum(1 for r in cdrs.records(int(events["edge"] * 1000) - 30_000, int(time.time() * 1000))
                   if r["node"] == "edgea" and r["hangup"] == "node_lost")

    # B's reaper ran: it released A's calls whose media had stopped...
    wait_until(reaped, timeout=2 * REAP_EVERY_S + 1, interval=0.2, what="edge A's first calls reaped by B")
    assert time.time() < witness_answer_s + WITNESS_MS / 1000, "the witness's media ended before the check"
    witness_id = witness_key[len(keys.call("edgea", "")):]
    with NgClient(w.ip("rtp2"), NG_PORT, 1.0) as ng:
        assert quality.last_packet(ng.query(witness_id)) >= time.time() - 2, "the witness's media does not flow"
    # ...and kept the witness, whose media flows
    assert client.exists(witness_key), "the witness call was released while its media flowed"
    assert client.zscore(keys.trunk_lease("carrier"), keys.lease_member("edgea", witness_id)) is not None
    wait_until(lambda: not client.exists(witness_key), timeout=WITNESS_MS / 1000 + RTP_TIMEOUT_S + 2 * REAP_EVERY_S,
               interval=0.2, what="the witness's slots released once its media stopped")
    witness_released_s = time.time() - (witness_answer_s + WITNESS_MS / 1000)
    assert witness_released_s >= RTP_TIMEOUT_S - 1.5, witness_released_s
    assert witness_id not in w.sessions("rtp2")  # its session deleted there by the reaper

    # the load ends; every call finished, released, deleted
    for proc in streams.values():
        proc.wait(timeout=LOAD_S + 90)  # type: ignore[attr-defined]
    witness.wait(timeout=60)  # type: ignore[attr-defined]
    client = w.client()
    wait_until(lambda: sum(lease_counts(client).values()) == 0, timeout=30, what=f"no slot held: {lease_counts(client)}")
    wait_until(lambda: not list(client.scan_iter(match=keys.CALL_PATTERN)), timeout=30, what="no live call hash")
    wait_until(lambda: not w.sessions("rtp2"), timeout=30, what="no session left on rtpengine 2")
    sampler.stop.set()
    sampler.join(timeout=5)

    # -- the figures --------------------------------------------------------------------------------
    records = CdrStore(client, 86400).records(int(started * 1000) - 60_000, int(time.time() * 1000) + 1000)
    logs = {name: _logged(w, name) for name in streams}
    placed = set().union(*(log["START"] for log in logs.values()))
    answered = set().union(*(log["ANSWERED"] for log in logs.values()))
    by_call: dict[str, list[dict]] = {}
    for record in records:
        by_call.setdefault(record["call_id"], []).append(record)
    failed = placed - answered
    unknown = [c for c in failed if c not in by_call]
    assert not unknown, f"{len(unknown)} calls failed with no record on either edge: {sorted(unknown)[:5]}"
    failed_at = sorted(min(r["start_ms"] for r in by_call[c]) / 1000 for c in failed)
    answered_records = [r for r in records if r["status"] == "answered" and not r["call_id"].startswith("witness-")]
    windows = list(zip(["redis", "rtpengine", "drain", "edge"],
                       [events["redis"], events["rtpengine"], events["drain"], events["edge"]]))
    rows = []
    # a window starts a second before its event: a call whose setup was under way when it happened is its
    lead = 1.0
    for index, (event, at) in enumerate(windows):
        until = windows[index + 1][1] - lead if index + 1 < len(windows) else at + 60
        up = [r for r in answered_records if r["answer_ms"] / 1000 < at < r["end_ms"] / 1000]
        dropped = [r for r in up if r["hangup"] != "caller"]
        late = [max(0.0, t - at) for t in failed_at if at - lead <= t < until]
        rows.append((event, len(up), dropped, max(late) if late else 0.0, len(late)))
    stray = [t for t in failed_at if t < windows[0][1] - lead]
    why = Counter(f"{r['node']} {r['sip_code']} {r['reject_tag'] or r['hangup']}"
                  for c in failed for r in by_call[c])
    print(f"\nfailed calls' records: {dict(why.most_common(8))}")
    highest = sampler.highest.get(keys.trunk_lease("carrier"), 0)
    print(f"\n{len(placed)} calls placed, {len(answered)} answered, {len(failed)} failed; "
          f"highest slots held {highest} of {LIMIT} (trunk), {sampler.highest.get(keys.agent_lease('bot'), 0)} "
          f"of {LIMIT} (agent), {sampler.samples} samples; replica promoted {promoted_s:.1f} s after the master's "
          f"death; B drained in {drained_s:.1f} s; witness released {witness_released_s:.1f} s after its media stopped")
    print("| event | calls up | dropped | how they ended | new calls failing | until new calls succeed |")
    for event, up, dropped, recovery, late in rows:
        how = ", ".join(sorted({f"{r['hangup']}/{r['media'].get('media_end_reason', '')}" for r in dropped})) or "-"
        print(f"| {event} | {up} | {len(dropped)} | {how} | {late} | {recovery:.1f} s |")

    # -- what the issue asks, per event -------------------------------------------------------------
    assert not stray, f"calls failed outside every event: {stray}"
    assert highest <= LIMIT and sampler.samples > 100
    by_event = {row[0]: row for row in rows}
    for event, _, dropped, recovery, _ in rows:
        assert recovery <= RECOVERY_S, f"{event}: new calls failed for {recovery:.1f} s"
    assert by_event["redis"][2] == [], "calls dropped by the redis failover"
    assert by_event["drain"][2] == [], "calls dropped by the drain"
    # rtpengine 1's calls ended cleanly (BYE both ways by the edge), every other call went on
    lost = by_event["rtpengine"][2]
    assert lost and all((r["hangup"], r["media"].get("media_end_reason")) == ("edge", "rtpengine_lost") for r in lost)
    assert all(r["end_ms"] / 1000 - events["rtpengine"] < 8 for r in lost)
    assert {c for r in lost for c in [r["call_id"]]} <= set().union(*(log["EDGE_BYE"] for log in logs.values()))
    # edge A's calls: released by B only after their media stopped (RTP for HOLD_MS after the answer)
    gone = by_event["edge"][2]
    assert gone and all(r["node"] == "edgea" and r["hangup"] == "node_lost" for r in gone)
    [witness_record] = [r for r in records if r["call_id"] == witness_id and r["status"] == "answered"]
    assert (witness_record["hangup"], witness_record["media"].get("media_end_reason")) == ("node_lost", "media_stopped")
    for r in gone:
        media_end = r["answer_ms"] / 1000 + HOLD_MS / 1000
        assert r["end_ms"] / 1000 >= media_end + RTP_TIMEOUT_S - 1.5, (r["call_id"], r["end_ms"] / 1000 - media_end)
        assert r["media"].get("media_end_reason") in ("media_stopped", "media_gone"), r["media"]
