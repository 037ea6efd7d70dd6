"""An rtpengine set on the real stack (settings ``rtpengine.nodes``, docs/media.md#rtpengine-sets).

The test edge's Kamailio is restarted with a set of two nodes: the edge's own rtpengine
(127.0.0.1, its ng port) and a second rtpengine this module starts on another loopback address
(NODE_IP, its own ng and CLI ports and RTP port range).  SIPp carriers call the DID, a SIPp agent
answers; each node's sessions are read with ng ``list`` (the Call-IDs it holds).

* the calls spread over both nodes, every Call-ID on exactly one node, and once they end both
  nodes hold no session (each call's delete reached its own node);
* a hold re-INVITE answered with the media address of the call's own node, and calls cancelled
  while ringing leaving no session on either node;
* the plugin's own first-audio queries and final delete reaching each call's node;
* a delayed offer: the node the module chose in the 2xx kept for the plugin's own commands;
* an announcement (a session the plugin starts and the module deletes) played and deleted on one
  node, for calls on each node;
* the second node SIGKILLed with calls up: its calls end with a BYE from the edge to both sides
  and ``media_end_reason: rtpengine_lost`` in their records, the first node's calls go on and end
  with the carrier's own BYE, the calls placed after it all go to the live node, no slot left;
* the second node killed just before calls are placed: an offer meeting it goes to the live node.
"""

from __future__ import annotations

import itertools
import re
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from routing.ngclient import NgClient, NgError
from routing.ops import services
from routing.ops.rtpnodes import RtpNode
from routing.tables import admin
from routing.tables.cdrstore import CdrStore
from routing.tables.model import Agent, Did, Direction, MediaPolicy, Trunk
from routing.tables.model.did import parse_fallback
from tests.helpers import free_port, wait_until
from tests.sipp import reply, uac, uas

from .conftest import AGENT_IP, CARRIER_A, DID, NET, Edge, restarted
from .test_announcement import ANNOUNCEMENT_HZ, ANNOUNCEMENT_S, DEAD, announced_call, write_tone
from .test_first_audio import _agent as talking_agent
from .test_media_late_offer import callee_scenario, caller_scenario, received
from .test_media_late_offer import sdp as late_sdp

#: the second rtpengine: its own loopback address and RTP ports (60000 + 100 per test /24)
NODE_IP = f"{NET}.3"
NODE_RTP_MIN = 60000 + 100 * (int(NET.rsplit(".", 1)[1]) % 50)
AGENT_PORT = 5092
#: the carrier hangs up itself this long after the ACK unless the edge's BYE came first (ms); under
#: the test edge's 12 s maximum call duration
HANGUP_MS = 8000
_runs = itertools.count()


def _sdp(ip: str) -> str:
    lines = ["v=0", f"o=- 1 1 IN IP4 {ip}", "s=-", f"c=IN IP4 {ip}", "t=0 0", "m=audio [media_port] RTP/AVP 0",
             "a=rtpmap:0 PCMU/8000", "a=sendrecv"]
    return "\n".join(f"      {line}" for line in lines)


def carrier_scenario(workdir: Path) -> Path:
    """INVITE, ACK; then the edge's BYE is answered, or after HANGUP_MS the carrier sends its own."""
    head = """      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Carrier" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>{to}
      Call-ID: [call_id]
      CSeq: {cseq}
      Contact: <sip:[caller]@[local_ip]:[local_port]>
      Max-Forwards: 70
"""
    invite = (f"      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n{head.format(to='', cseq='1 INVITE')}"
              f"      Content-Type: application/sdp\n      Content-Length: [len]\n\n{_sdp(CARRIER_A)}\n")
    ack = (f"      ACK [next_url] SIP/2.0\n{head.format(to='[peer_tag_param]', cseq='1 ACK')}      [routes]\n"
           "      Content-Length: 0\n\n")
    bye = (f"      BYE [next_url] SIP/2.0\n{head.format(to='[peer_tag_param]', cseq='2 BYE')}      [routes]\n"
           "      Content-Length: 0\n\n")
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="carrier">
  <send retrans="500"><![CDATA[
{invite}    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
{ack}    ]]></send>
  <recv request="BYE" timeout="{HANGUP_MS}" ontimeout="hangup"/>
{reply("200 OK").replace("<send>", '<send next="done">', 1)}  <label id="hangup"/>
  <send retrans="500"><![CDATA[
{bye}    ]]></send>
  <recv response="200"/>
  <label id="done"/>
</scenario>
"""
    path = workdir / f"carrier_{next(_runs)}.xml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def agent_scenario(workdir: Path) -> Path:
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="agent">
  <recv request="INVITE"/>
{reply("100 Trying")}{reply("200 OK", tag="01", dialog=True, retrans=True, sdp=_sdp(AGENT_IP))}  <recv request="ACK"/>
  <recv request="BYE"/>
{reply("200 OK")}</scenario>
"""
    path = workdir / f"agent_{next(_runs)}.xml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


class Node:
    """The second rtpengine, run by the test."""

    def __init__(self, workdir: Path, ng_port: int, cli_port: int, media_timeout_s: int) -> None:
        self.ng_port, self.cli_port = ng_port, cli_port
        self.conf = workdir / "rtpengine2.conf"
        self.conf.write_text("\n".join([
            "[rtpengine]", "table = -1", f"interface = {NODE_IP}", f"listen-ng = {NODE_IP}:{ng_port}",
            f"listen-cli = {NODE_IP}:{cli_port}", f"port-min = {NODE_RTP_MIN}", f"port-max = {NODE_RTP_MIN + 99}",
            f"timeout = {media_timeout_s}", "delete-delay = 0", "log-level = 6", "log-stderr = true", ""]))
        self.log = workdir / "rtpengine2.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(["rtpengine", f"--config-file={self.conf}", "--foreground"],
                                         stdout=out, stderr=subprocess.STDOUT)
        wait_until(lambda: self.answers() or self.proc.poll() is not None, timeout=10, what="second rtpengine up")
        assert self.proc.poll() is None, self.log.read_text()[-2000:]

    def answers(self) -> bool:
        try:
            with NgClient(NODE_IP, self.ng_port, 0.3) as ng:
                return ng.command("ping").get("result") == "pong"
        except NgError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def call_ids(host: str, port: int) -> set[str]:
    """The Call-IDs an rtpengine holds a session of (ng ``list``)."""
    with NgClient(host, port, 1.0) as ng:
        return set(ng.command("list", limit=1000).get("calls", []))


@pytest.fixture(scope="module")
def node(edge: Edge, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """The second node and the edge's Kamailio using the set {local rtpengine, second node}, weights 1:1;
    Kamailio restarted with the usual settings after."""
    second = Node(tmp_path_factory.mktemp("rtpengine2"), free_port(NODE_IP, kind=socket.SOCK_DGRAM),
                  free_port(NODE_IP), edge.settings.rtpengine.media_timeout_s)
    second.start()
    nodes = (RtpNode(address="127.0.0.1", ng_port=edge.settings.rtpengine.ng_port),
             RtpNode(address=NODE_IP, ng_port=second.ng_port))
    try:
        with restarted(edge, "kamailio", rtpengine=edge.settings.rtpengine.model_copy(
                update={"nodes": nodes, "disable_s": 5})):
            yield second
    finally:
        second.kill()


@pytest.fixture
def set_edge(node: Node, clean_edge: Edge) -> Iterator[tuple[Edge, Node]]:
    if not node.answers():
        node.start()
        wait_until(lambda: f"udp:{NODE_IP}:" not in _down(clean_edge), timeout=10,
                   what="the second node back in the set")
    admin.put_trunk(clean_edge.redis, Trunk("carrier", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",),
                                            media=MediaPolicy(codecs=("PCMU",), rtp_timeout_s=600)))
    admin.put_agent(clean_edge.redis, Agent("bot", (f"sip:bot@{AGENT_IP}:{AGENT_PORT}",), (f"{AGENT_IP}/32",),
                                            media=MediaPolicy(codecs=("PCMU",), rtp_timeout_s=600)))
    clean_edge.did(DID, "carrier", "bot")
    yield clean_edge, node


def _down(edge: Edge) -> str:
    return subprocess.run(["kamcmd", "-s", f"unix:{edge.settings.run_dir}/kamailio_ctl", "htable.dump", "rtpdown"],
                          capture_output=True, text=True, timeout=10).stdout


def _placed(run) -> list[str]:  # noqa: ANN001 - a SippRun
    return sorted(set(re.findall(r"^Call-ID: (\S+)", run.messages(), re.M)))


def _byes_received(run) -> set[str]:  # noqa: ANN001
    out = set()
    for block in run.received_requests("BYE"):
        match = re.search(r"^Call-ID: (\S+)", block, re.M)
        if match:
            out.add(match.group(1))
    return out


def test_calls_spread_over_the_set_and_each_delete_reaches_its_node(set_edge: tuple[Edge, Node]) -> None:
    edge, second = set_edge
    local = ("127.0.0.1", edge.settings.rtpengine.ng_port)
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario=agent_scenario(edge.workdir), calls=12,
                rtp_echo=False)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario=carrier_scenario(edge.workdir),
                  calls=12, rate=12, limit=12)
    wait_until(lambda: edge.active_leases() == 24, timeout=10, what="12 calls up (trunk and agent slots)")
    placed = wait_until(lambda: len(_placed(carrier)) == 12 and _placed(carrier), timeout=5, what="12 Call-IDs")
    wait_until(lambda: set(placed) <= call_ids(*local) | call_ids(NODE_IP, second.ng_port), timeout=5,
               what="a media session of each call")
    on_local, on_second = call_ids(*local), call_ids(NODE_IP, second.ng_port)
    assert on_local and on_second, (on_local, on_second)  # 12 calls by CRC-32 over 1:1: all on one node p = 2^-11
    assert on_local | on_second == set(placed) and not on_local & on_second
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert agent.wait(timeout=10) == 0, agent.output()
    # the carrier's own BYEs: every session deleted on the node that held it, long before rtpengine's timeout
    wait_until(lambda: not call_ids(*local) and not call_ids(NODE_IP, second.ng_port), timeout=5,
               what="no session left on either node")
    assert not _byes_received(carrier)



def reinvite_carrier_scenario(workdir: Path) -> Path:
    """INVITE, ACK; 300 ms later a hold re-INVITE (``a=sendonly``), its ACK, then BYE."""
    head = """      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Carrier" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>{to}
      Call-ID: [call_id]
      CSeq: {cseq}
      Contact: <sip:[caller]@[local_ip]:[local_port]>
      Max-Forwards: 70
"""
    hold = _sdp(CARRIER_A).replace("a=sendrecv", "a=sendonly").replace("o=- 1 1", "o=- 1 2")
    invite = (f"      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n{head.format(to='', cseq='1 INVITE')}"
              f"      Content-Type: application/sdp\n      Content-Length: [len]\n\n{_sdp(CARRIER_A)}\n")
    reinvite = (f"      INVITE [next_url] SIP/2.0\n{head.format(to='[peer_tag_param]', cseq='2 INVITE')}      [routes]\n"
                f"      Content-Type: application/sdp\n      Content-Length: [len]\n\n{hold}\n")

    def plain(method: str, cseq: str) -> str:
        return (f"      {method} [next_url] SIP/2.0\n{head.format(to='[peer_tag_param]', cseq=cseq)}      [routes]\n"
                "      Content-Length: 0\n\n")

    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="carrier re-INVITE">
  <send retrans="500"><![CDATA[
{invite}    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
{plain("ACK", "1 ACK")}    ]]></send>
  <pause milliseconds="300"/>
  <send retrans="500"><![CDATA[
{reinvite}    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
  <send><![CDATA[
{plain("ACK", "2 ACK")}    ]]></send>
  <pause milliseconds="300"/>
  <send retrans="500"><![CDATA[
{plain("BYE", "3 BYE")}    ]]></send>
  <recv response="200"/>
</scenario>
"""
    path = workdir / f"carrier_{next(_runs)}.xml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def reinvite_agent_scenario(workdir: Path) -> Path:
    held = _sdp(AGENT_IP).replace("a=sendrecv", "a=recvonly").replace("o=- 1 1", "o=- 1 2")
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="agent re-INVITE">
  <recv request="INVITE"/>
{reply("100 Trying")}{reply("200 OK", tag="01", dialog=True, retrans=True, sdp=_sdp(AGENT_IP))}  <recv request="ACK"/>
  <recv request="INVITE"/>
{reply("200 OK", dialog=True, retrans=True, sdp=held)}  <recv request="ACK"/>
  <recv request="BYE"/>
{reply("200 OK")}</scenario>
"""
    path = workdir / f"agent_{next(_runs)}.xml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_re_invites_and_cancels_reach_each_calls_node(set_edge: tuple[Edge, Node]) -> None:
    """In-dialog ``rtpengine_manage`` (a hold re-INVITE and its answer) and CANCEL's delete go to the
    node of the call's offer: the carrier's 200 to the re-INVITE carries the same media address as
    its first 200 (the node's interface: 127.0.0.1 for the edge's own, NODE_IP for the second; an
    offer to the other node would have opened a session there, with its address), and the sessions
    of calls cancelled while ringing are gone from both nodes at once."""
    edge, second = set_edge
    nodes = (("127.0.0.1", edge.settings.rtpengine.ng_port), (NODE_IP, second.ng_port))
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario=reinvite_agent_scenario(edge.workdir),
                calls=14, rtp_echo=False)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID,
                  scenario=reinvite_carrier_scenario(edge.workdir), calls=14, rate=14, limit=14)
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert agent.wait(timeout=10) == 0, agent.output()
    media: dict[str, list[str]] = {}
    for block in carrier.received_responses("INVITE"):
        if re.search(r"^SIP/2\.0 200", block, re.M):
            call_id = re.search(r"^Call-ID: (\S+)", block, re.M).group(1)
            media.setdefault(call_id, []).append(re.search(r"^c=IN IP4 (\S+)", block, re.M).group(1))
    assert len(media) == 14 and all(len(set(found)) == 1 and len(found) >= 2 for found in media.values()), media
    # both nodes had calls (14 Call-IDs by CRC-32 over weights 1:1 all on one node: p = 2^-13)
    assert {found[0] for found in media.values()} == {"127.0.0.1", NODE_IP}, media
    wait_until(lambda: not any(call_ids(*where) for where in nodes), timeout=3, what="no session left")
    # calls cancelled while ringing: the module's deletes reach each call's node
    ringing = uas(edge.workdir / "ringing", AGENT_IP, AGENT_PORT, scenario="uas_cancel.xml", calls=8)
    cancelling = uac(edge.workdir / "cancelling", CARRIER_A, 5070, edge.sip, DID, scenario="uac_cancel.xml",
                     calls=8, rate=8, limit=8)
    assert cancelling.wait(timeout=30) == 0, cancelling.output()
    assert ringing.wait(timeout=10) == 0, ringing.output()
    wait_until(lambda: not any(call_ids(*where) for where in nodes), timeout=3, what="cancelled calls' sessions deleted")
    assert edge.active_leases() == 0


def _kept_nodes(edge: Edge) -> dict[str, str]:
    """The ``rtpnode`` htable: Call-ID -> node URL (kamcmd ``htable.dump``)."""
    out = subprocess.run(["kamcmd", "-s", f"unix:{edge.settings.run_dir}/kamailio_ctl", "htable.dump", "rtpnode"],
                         capture_output=True, text=True, timeout=10).stdout
    return dict(re.findall(r"name: (\S+)\s+value: (\S+)", out))


def test_a_delayed_offer_keeps_the_node_the_module_chose_in_the_2xx(set_edge: tuple[Edge, Node]) -> None:
    """INVITEs without SDP: the agent's offer comes in its 200 and the module's ``rtpengine_manage`` in the
    reply route chooses the node; the plugin keeps it (``rtpnode``) for its own commands, and the
    plugin's delete at the end reaches it (no session left on either node)."""
    edge, second = set_edge
    urls = {f"udp:127.0.0.1:{edge.settings.rtpengine.ng_port}": ("127.0.0.1", edge.settings.rtpengine.ng_port),
            f"udp:{NODE_IP}:{second.ng_port}": (NODE_IP, second.ng_port)}
    offer = late_sdp("RTP/AVP", [(0, "PCMU")])
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario=callee_scenario(edge.workdir, offer),
                calls=8, rtp_echo=False)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID,
                  scenario=caller_scenario(edge.workdir, late_sdp("RTP/AVP", [(0, "PCMU")])), calls=8, rate=8,
                  limit=8, hold_ms=2500)
    wait_until(lambda: len(received(agent, "ACK")) == 8, timeout=10, what="8 calls answered")
    kept = _kept_nodes(edge)
    placed = _placed(carrier)
    assert set(placed) <= set(kept), (placed, kept)
    for url, where in urls.items():
        assert {c for c in placed if kept[c] == url} == call_ids(*where) & set(placed), url
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert agent.wait(timeout=10) == 0, agent.output()
    wait_until(lambda: not any(call_ids(*where) for where in urls.values()), timeout=3, what="no session left")
    assert not set(placed) & set(_kept_nodes(edge))  # forgotten with the call


def test_the_plugins_queries_and_delete_reach_each_calls_node(set_edge: tuple[Edge, Node]) -> None:
    """The plugin's own ng commands of a call go to the call's node: agents that talk 1 s after their
    200 OK get ``media_first_audio_ms`` (the first-audio poll's ``query``, which an rtpengine without
    the call answers ``Unknown call-id``) and callee packets from the final ``delete`` in their record,
    for calls on each node (the node told by the media address of the carrier's 200)."""
    edge, second = set_edge
    since = int(time.time() * 1000)
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario=talking_agent(edge, 1000), calls=14,
                rtp_echo=False)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario="uac_simple.xml", calls=14,
                  rate=14, limit=14, hold_ms=2500)
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert agent.wait(timeout=30) == 0, agent.output()
    node_of = {}
    for block in carrier.received_responses("INVITE"):
        if re.search(r"^SIP/2\.0 200", block, re.M):
            node_of[re.search(r"^Call-ID: (\S+)", block, re.M).group(1)] = \
                re.search(r"^c=IN IP4 (\S+)", block, re.M).group(1)
    assert set(node_of.values()) == {"127.0.0.1", NODE_IP}, node_of  # both nodes had calls (p all on one: 2^-13)
    records = wait_until(lambda: (found := CdrStore(edge.redis, 86400).records(since, int(time.time() * 1000) + 1000))
                         and len(found) == 14 and found, timeout=10, what="14 call records")
    for record in records:
        media = record["media"]
        assert 950 <= int(media.get("media_first_audio_ms", 0)) <= 1500, (node_of[record["call_id"]], media)
        assert int(media.get("media_callee_packets", 0)) > 0, (node_of[record["call_id"]], media)

def test_an_announcement_on_the_set_is_played_and_deleted_on_one_node(set_edge: tuple[Edge, Node]) -> None:
    """The plugin starts an announcement's session itself (ng offer, answer, play media) and the native
    route ANNOUNCE_DONE deletes it with the module: both reach the same node, so once the refusal is
    sent neither node holds the session.  Calls are placed until each node has had one."""
    edge, second = set_edge
    write_tone(edge.settings.media.announcements_dir / "closed.wav", ANNOUNCEMENT_HZ, ANNOUNCEMENT_S)
    admin.put_agent(edge.redis, Agent("bot", (DEAD,), (), media=MediaPolicy(codecs=("PCMU",)), probe=False,
                                      answer_timeout_ms=400), replace=True)
    admin.put_did(edge.redis, Did(DID, "carrier", "bot", parse_fallback("announce:closed", "test")), replace=True)
    nodes = {"local": ("127.0.0.1", edge.settings.rtpengine.ng_port), "second": (NODE_IP, second.ng_port)}
    used: set[str] = set()
    for _ in range(14):  # random Call-IDs by CRC-32 over weights 1:1: all 14 on one node of two has p = 2^-13
        seen: set[str] = set()
        done = threading.Event()

        def look() -> None:  # which node holds the session while it plays
            while not done.is_set():
                seen.update(name for name, where in nodes.items() if call_ids(*where))
                done.wait(0.2)

        watcher = threading.Thread(target=look)
        watcher.start()
        try:
            announced_call(edge, "503 Agent Unreachable")
        finally:
            done.set()
            watcher.join()
        assert len(seen) == 1, seen  # one node per call
        wait_until(lambda: not any(call_ids(*where) for where in nodes.values()), timeout=2,
                   what="the announcement's session deleted on its node")
        used |= seen
        if used == set(nodes):
            break
    assert used == set(nodes), used



def test_a_dead_node_ends_its_calls_and_new_calls_go_to_the_live_one(set_edge: tuple[Edge, Node]) -> None:
    edge, second = set_edge
    since = int(time.time() * 1000)
    local = ("127.0.0.1", edge.settings.rtpengine.ng_port)
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario=agent_scenario(edge.workdir), calls=18,
                rtp_echo=False)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario=carrier_scenario(edge.workdir),
                  calls=12, rate=12, limit=12)
    wait_until(lambda: edge.active_leases() == 24, timeout=10, what="12 calls up")
    placed = wait_until(lambda: len(_placed(carrier)) == 12 and _placed(carrier), timeout=5, what="12 Call-IDs")
    wait_until(lambda: set(placed) <= call_ids(*local) | call_ids(NODE_IP, second.ng_port), timeout=5,
               what="a media session of each call")
    lost, kept = call_ids(NODE_IP, second.ng_port), call_ids(*local)
    assert lost and kept, (lost, kept)
    second.kill()
    killed = time.monotonic()
    # the node's calls: the edge's BYE to the carrier and to the agent, within 3 failed pings + a tick
    wait_until(lambda: lost <= _byes_received(carrier), timeout=8, what="BYE to the carrier of each lost call")
    ended_s = time.monotonic() - killed
    assert ended_s < 6, ended_s
    wait_until(lambda: lost <= _byes_received(agent), timeout=5, what="BYE to the agent of each lost call")
    assert not kept & _byes_received(carrier) and not kept & _byes_received(agent)
    # the lost calls' slots go with the call-end drain (every 20 ms); the live node's calls go on
    wait_until(lambda: edge.active_leases() == 2 * len(kept), timeout=5, what="the lost calls' slots released")
    assert call_ids(*local) == kept
    # new calls: all on the live node, none refused, at once (the dead node is disabled in the module)
    later = uac(edge.workdir / "later", CARRIER_A, 5072, edge.sip, DID, scenario=carrier_scenario(edge.workdir),
                calls=6, rate=12, limit=6)
    wait_until(lambda: len(_placed(later)) == 6 and edge.active_leases() == 2 * (len(kept) + 6), timeout=5,
               what="6 new calls up")
    # each new call's session on the live node (a call offered to the dead one would never show there)
    wait_until(lambda: set(_placed(later)) <= call_ids(*local), timeout=5, what="the new calls on the live node")
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert later.wait(timeout=30) == 0, later.output()
    assert agent.wait(timeout=10) == 0, agent.output()
    wait_until(lambda: edge.active_leases() == 0, timeout=10, what="every slot released")
    records = {r["call_id"]: r for r in CdrStore(edge.redis, 86400).records(since, int(time.time() * 1000) + 1000)}
    for call_id in lost:
        assert records[call_id]["media"].get("media_end_reason") == "rtpengine_lost", records[call_id]
        assert edge.redis.hget(f"edge:media:{edge.settings.node}:{call_id}", "media_end_reason") == "rtpengine_lost"
    for call_id in kept | set(_placed(later)):
        assert records[call_id]["media"].get("media_end_reason") is None, records[call_id]
    assert f"rtpengine udp:{NODE_IP}:{second.ng_port} did not answer" in edge.log()
    # edgectl status: each node of the set, the dead one unhealthy
    states = {state.name: state.healthy for state in services.status(edge.settings)}
    assert states[f"rtpengine udp:127.0.0.1:{edge.settings.rtpengine.ng_port}"] is True
    assert states[f"rtpengine udp:{NODE_IP}:{second.ng_port}"] is False


def test_an_offer_to_a_node_just_dead_goes_to_the_next_one(set_edge: tuple[Edge, Node]) -> None:
    """The second node killed and calls placed at once, before the call clock's pings find it dead:
    an offer that meets it times out in the module and goes to the live node (which the module then
    prefers for ``disable_s``), so no call is refused and every call's session is on the live node."""
    edge, second = set_edge
    local = ("127.0.0.1", edge.settings.rtpengine.ng_port)
    log_before = len(edge.log())
    second.kill()
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario=agent_scenario(edge.workdir), calls=8,
                rtp_echo=False)
    started = time.monotonic()
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario=carrier_scenario(edge.workdir),
                  calls=8, rate=16, limit=8)
    wait_until(lambda: len(received(agent, "ACK")) == 8, timeout=10, what="8 calls answered")
    answered_s = time.monotonic() - started
    placed = _placed(carrier)
    assert len(placed) == 8 and set(placed) <= call_ids(*local)
    assert answered_s < 4, answered_s  # one module timeout (1 s, one retransmission) at most
    assert not [code for code, _ in carrier.received_status() if code >= 300]
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert agent.wait(timeout=10) == 0, agent.output()
    assert not _byes_received(carrier)  # the live node's calls: the carrier's own BYEs
    # the module did try the dead node with an offer (and went on to the next one)
    assert re.search(rf'command "offer" (to|from) RTPEngine <udp:{re.escape(NODE_IP)}:{second.ng_port}>',
                     edge.log()[log_before:]), edge.log()[log_before:][-3000:]
    print(f"8 calls answered {answered_s:.2f} s after the kill")
