"""SIP capture per call (siptrace -> the monitor's HEP collector -> ``edgectl trace``), on the real stack.

Real SIPp calls through the running edge; then ``edgectl trace CALL-ID`` through the CLI: the
ladder holds every message of both legs as received and as sent, the pcap opens in tshark, digest
secrets are masked, HEP reaches a configured collector, and the retention bounds delete captures.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from routing.capture import hep, sipmsg
from routing.capture.store import file_name
from routing.cli import main as cli_main
from tests.helpers import free_port, wait_until
from tests.sipp import reject_uac_scenario, reply_uas_scenario, uac, uas

from .conftest import AGENT_IP, CARRIER_A, CARRIER_B, DID, EDGE_IP, NET, STRANGER, Edge, restarted
from .test_digest import PASSWORD, PBX_IP, provision_pbx

AGENT_PORT = 5090
CARRIER_PORT = 5070
GW_PORT = 5080
DEST = "+442071838750"


def settings_file(edge: Edge) -> Path:
    """The edge's current settings as a file for ``edgectl --settings``."""
    path = edge.workdir / "edge-settings.yaml"
    path.write_text(yaml.safe_dump(edge.settings.model_dump(mode="json")))
    return path


def edgectl(edge: Edge, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli_main, ["--settings", str(settings_file(edge)), *args])
    return result.exit_code, result.output


def trace_json(edge: Edge, call_id: str, *extra: str) -> list[dict]:
    code, out = edgectl(edge, "trace", call_id, "--json", *extra)
    assert code == 0, out
    return json.loads(out[out.index("{"):])["messages"]


def call_id_of(request: str) -> str:
    return re.search(r"^Call-ID:\s*(\S+)", request, re.M | re.I).group(1)


def captured(edge: Edge, call_id: str, predicate) -> list[dict]:
    """The ladder once ``predicate(messages)`` holds (the collector writes asynchronously)."""
    def ready():
        code, out = edgectl(edge, "trace", call_id, "--json")
        if code != 0:
            return None
        messages = json.loads(out[out.index("{"):])["messages"]
        return messages if predicate(messages) else None
    return wait_until(ready, timeout=10, interval=0.1, what=f"capture of {call_id}")


def has(messages: list[dict], direction: str, message: str, src: str = "", dst: str = "", cseq: str = "") -> bool:
    return any(m["direction"] == direction and m["message"].startswith(message)
               and m["src"].startswith(src) and m["dst"].startswith(dst) and m["cseq"].endswith(cseq)
               for m in messages)


def edge_sip(edge: Edge) -> str:
    return edge.sip


def origination_call(edge: Edge, provision: bool = True) -> str:
    """A carrier's call to the agent (answered, 300 ms long); returns its Call-ID."""
    if provision:
        edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, GW_PORT)])
        edge.agent("bot", [f"sip:{AGENT_IP}:{AGENT_PORT}"], [f"{AGENT_IP}/32"])
        edge.did(DID, "carrier-a", "bot")
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, answer_ms=20)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, CARRIER_PORT, edge.sip, DID, hold_ms=300)
    assert carrier.wait() == 0, carrier.output()
    assert agent.wait() == 0, agent.output()
    return call_id_of(agent.received_requests("INVITE")[0])


def both_legs_done(messages: list[dict]) -> bool:
    return sum(1 for m in messages if m["message"].startswith("200") and m["cseq"].endswith("BYE")) >= 2


def test_ladder_shows_both_legs_as_received_and_as_sent(clean_edge: Edge) -> None:
    edge = clean_edge
    call_id = origination_call(edge)
    messages = captured(edge, call_id, both_legs_done)
    carrier, agent, me = f"{CARRIER_A}:{CARRIER_PORT}", f"{AGENT_IP}:{AGENT_PORT}", edge.sip
    # the INVITE received from the carrier, sent to the agent
    assert has(messages, "in", "INVITE", src=carrier, dst=me)
    assert has(messages, "out", "INVITE", dst=agent)
    # the answer received from the agent, sent to the carrier
    assert has(messages, "in", "200 OK", src=agent, cseq="INVITE")
    assert has(messages, "out", "200 OK", dst=carrier, cseq="INVITE")
    for method in ("ACK", "BYE"):
        assert has(messages, "in", method, src=carrier), method
        assert has(messages, "out", method, dst=agent), method
    assert has(messages, "in", "200 OK", src=agent, cseq="BYE")
    assert has(messages, "out", "200 OK", dst=carrier, cseq="BYE")
    # time order, except that a request the edge sent precedes the responses to it (siptrace stamps a sent
    # message after the send, so a fast answer read by another Kamailio process can be stamped earlier)
    for i, m in enumerate(messages):
        if m["direction"] == "in" and m["message"][0].isdigit() and m["src"] == agent:
            assert any(r["direction"] == "out" and r["dst"] == agent and r["cseq"] == m["cseq"]
                       for r in messages[:i]), (m, messages)
    late = [b["ts"] - a["ts"] for a, b in zip(messages, messages[1:]) if b["ts"] < a["ts"]]
    assert all(gap > -0.05 for gap in late), late  # only such reorderings, within milliseconds
    invite_out = next(m for m in messages if m["direction"] == "out" and m["message"] == "INVITE")
    assert "X-Edge-Trunk: carrier-a" in invite_out["details"]
    assert any(d.startswith("SDP: 127.0.0.1 audio") for d in invite_out["details"])  # anchored in rtpengine

    # the terminal ladder: time, direction, source -> destination, method or status
    code, out = edgectl(edge, "trace", call_id)
    assert code == 0, out
    assert re.search(rf"in\s+│\s*{re.escape(carrier)} → {re.escape(me)} \(edge\)\s*│\s*INVITE", out), out
    assert re.search(rf"out\s+│\s*{re.escape(me)} \(edge\) → {re.escape(agent)}\s*│\s*INVITE", out), out

    # captures are the operator's only
    capture_dir = edge.settings.capture_path
    assert stat.S_IMODE(capture_dir.stat().st_mode) == 0o700
    path = capture_dir / file_name(call_id)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_pcap_and_html_exports_hold_every_message(clean_edge: Edge) -> None:
    edge = clean_edge
    call_id = origination_call(edge)
    messages = captured(edge, call_id, both_legs_done)
    pcap, page = edge.workdir / "call.pcap", edge.workdir / "call.html"
    code, out = edgectl(edge, "trace", call_id, "--pcap", str(pcap), "--html", str(page))
    assert code == 0, out
    assert stat.S_IMODE(pcap.stat().st_mode) == 0o600
    tshark = shutil.which("tshark")
    assert tshark, "tshark is not installed (scripts/bootstrap installs it)"
    read = subprocess.run(
        [tshark, "-r", str(pcap), "-d", f"udp.port=={edge.port},sip", "-d", f"udp.port=={AGENT_PORT},sip",
         "-d", f"udp.port=={CARRIER_PORT},sip", "-T", "fields", "-e", "sip.Call-ID", "-e", "sip.CSeq",
         "-e", "sip.Request-Line", "-e", "sip.Status-Line"],
        capture_output=True, text=True, timeout=60)
    assert read.returncode == 0, read.stderr
    rows = [line.split("\t") for line in read.stdout.splitlines() if line.strip()]
    assert len(rows) == len(messages)
    assert all(row[0] == call_id for row in rows), read.stdout
    labels = [row[2].split(" ")[0] if row[2] else row[3].split(" ")[1] for row in rows]
    assert labels == [m["message"].split(" ")[0] for m in messages]
    assert labels.count("BYE") == 2 and labels.count("INVITE") >= 2
    text = page.read_text()
    assert text.count('<g class="msg"') == len(messages)


def test_failover_attempts_share_one_ladder_and_failed_calls_are_listed(clean_edge: Edge) -> None:
    edge = clean_edge
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, GW_PORT)])
    edge.trunk("carrier-b", [f"{CARRIER_B}/32"], [(CARRIER_B, GW_PORT)])
    edge.agent("bot", [f"sip:{AGENT_IP}:{AGENT_PORT}"], [f"{AGENT_IP}/32"])
    edge.route("+44", "carrier-a", "0.0100")
    edge.route("+44", "carrier-b", "0.0200")
    a = uas(edge.workdir / "a", CARRIER_A, GW_PORT, scenario=reply_uas_scenario(edge.workdir, 503), rtp_echo=False)
    b = uas(edge.workdir / "b", CARRIER_B, GW_PORT, scenario="uas_answer.xml", answer_ms=20, rtp_echo=False)
    caller = uac(edge.workdir / "agent", AGENT_IP, CARRIER_PORT, edge.sip, DEST,
                 scenario=reject_uac_scenario(edge.workdir))
    assert caller.wait() == 0, caller.output()
    assert b.wait() == 0, b.output()
    call_id = call_id_of(a.received_requests("INVITE")[0])
    assert call_id == call_id_of(b.received_requests("INVITE")[0])  # the edge keeps the Call-ID on every leg
    messages = captured(edge, call_id, both_legs_done)
    gw_a, gw_b = f"{CARRIER_A}:{GW_PORT}", f"{CARRIER_B}:{GW_PORT}"
    order = [(m["direction"], m["message"].split(" ")[0], m["src"] if m["direction"] == "in" else m["dst"])
             for m in messages if m["src"].startswith((CARRIER_A, CARRIER_B)) or m["dst"].startswith((CARRIER_A, CARRIER_B))]
    first_attempt = [("out", "INVITE", gw_a), ("in", "503", gw_a), ("out", "ACK", gw_a)]
    second_attempt = [("out", "INVITE", gw_b), ("in", "200", gw_b), ("out", "ACK", gw_b), ("out", "BYE", gw_b),
                      ("in", "200", gw_b)]
    filtered = [o for o in order if not o[1].startswith("1")]
    assert filtered == first_attempt + second_attempt, order

    # a refused call (a stranger's) is listed among the failed calls, the answered one is not
    stranger = uac(edge.workdir / "stranger", STRANGER, CARRIER_PORT, edge.sip, DID,
                   scenario=reject_uac_scenario(edge.workdir))
    assert stranger.wait() == 0, stranger.output()
    refused = call_id_of(stranger.messages().split("INVITE sip:", 1)[1])

    def listed():
        code, out = edgectl(edge, "trace", "--failed", "--last", "5", "--json")
        assert code == 0, out
        return [row for row in json.loads(out[out.index("["):]) if row["call_id"] == refused]
    row = wait_until(listed, timeout=10, interval=0.1, what="the refused call listed")[0]
    assert row["status"] == 403 and row["source"].startswith(STRANGER)
    code, out = edgectl(edge, "trace", "--failed", "--last", "50", "--json")
    assert call_id not in {r["call_id"] for r in json.loads(out[out.index("["):])}
    code, out = edgectl(edge, "trace", "--failed", "--last", "5")
    assert code == 0 and refused in out and "403" in out, out


def test_digest_response_and_nonce_are_masked(clean_edge: Edge) -> None:
    edge = clean_edge
    provision_pbx(edge)
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario="uas_answer.xml", answer_ms=20, rtp_echo=False)
    caller = uac(edge.workdir / "pbx", PBX_IP, CARRIER_PORT, edge.sip, DID, scenario="uac_auth.xml",
                 extra=["-au", "pbx-user", "-ap", PASSWORD])
    assert caller.wait() == 0, caller.output()
    assert agent.wait() == 0, agent.output()
    call_id = call_id_of(agent.received_requests("INVITE")[0])
    sent = caller.messages()
    response = re.search(r'Proxy-Authorization:.*?response="([0-9a-f]+)"', sent).group(1)
    nonce = re.search(r'Proxy-Authorization:.*?nonce="([^"]+)"', sent).group(1)
    captured(edge, call_id, both_legs_done)
    # the node's capture file holds the message as it was (operator-only, 0600)
    raw = (edge.settings.capture_path / file_name(call_id)).read_bytes()
    assert response.encode() in raw
    pcap, page = edge.workdir / "auth.pcap", edge.workdir / "auth.html"
    for args in ((), ("--full",), ("--json",), ("--pcap", str(pcap), "--html", str(page))):
        code, out = edgectl(edge, "trace", call_id, *args)
        assert code == 0, out
        assert "Proxy-Authorization" in out or args[:1] == ("--pcap",)
        assert response not in out and nonce not in out, args
    for exported, masked in ((pcap.read_bytes(), b'response="***"'), (page.read_bytes(), b"response=&quot;***&quot;")):
        assert response.encode() not in exported and nonce.encode() not in exported
        assert masked in exported


def test_hep_is_relayed_to_the_configured_collector(clean_edge: Edge) -> None:
    edge = clean_edge
    homer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    homer.bind((f"{NET}.50", 0))
    homer.settimeout(0.2)
    capture = edge.settings.capture.model_copy(update={"hep_address": f"{NET}.50", "hep_port": homer.getsockname()[1]})
    try:
        with restarted(edge, "monitor", capture=capture):
            call_id = origination_call(edge)
            got: list[hep.HepPacket] = []

            def all_of_the_call():
                try:
                    while True:
                        packet = hep.parse(homer.recv(65535))
                        if sipmsg.call_id(packet.payload) == call_id:
                            got.append(packet)
                except (TimeoutError, socket.timeout):
                    pass
                return sum(1 for p in got if sipmsg.facts(p.payload).label.startswith("200")
                           and sipmsg.facts(p.payload).cseq[1] == "BYE") >= 2
            wait_until(all_of_the_call, timeout=10, what="HEP3 packets of the call at the collector")
            kept = trace_json(edge, call_id)
    finally:
        homer.close()
    labels = [sipmsg.facts(p.payload).label for p in got]
    assert labels.count("BYE") == 2 and labels.count("ACK") >= 2 and labels.count("INVITE") >= 2
    assert all(p.capture_id == edge.settings.capture.capture_id for p in got)
    assert len(got) == len(kept)  # every message kept on the node was relayed


def test_retention_deletes_captures_over_the_size_bound_and_past_their_age(clean_edge: Edge) -> None:
    edge = clean_edge
    capture_dir = edge.settings.capture_path
    # a recent capture of 1.5 MB: over a 1 MB bound, it is the first to go once the monitor writes
    old = capture_dir / file_name("old-call@example")
    filler = hep.build(hep.HepPacket("192.0.2.1", "192.0.2.2", 5060, 5060, time.time(),
                                     b"OPTIONS sip:x SIP/2.0\r\nCall-ID: old-call@example\r\n\r\n" + b"x" * 60000))
    old.write_bytes(filler * 25)
    with restarted(edge, "monitor", capture=edge.settings.capture.model_copy(update={"max_mb": 1})):
        assert old.exists()  # indexed at start, kept until a write passes the bound
        first = origination_call(edge)
        wait_until(lambda: not old.exists(), timeout=10, what="the capture over the size bound deleted")
        assert (capture_dir / file_name(first)).exists()
    with restarted(edge, "monitor", capture=edge.settings.capture.model_copy(update={"max_age_s": 3})):
        call_id = origination_call(edge, provision=False)
        path = capture_dir / file_name(call_id)
        wait_until(path.exists, timeout=10, what="the call captured")
        wait_until(lambda: not path.exists(), timeout=15, what="the capture past max_age_s deleted")


def test_unknown_call_id_is_a_one_line_error(clean_edge: Edge) -> None:
    code, out = edgectl(clean_edge, "trace", "no-such-call@nowhere")
    assert code == 1
    assert out.strip().count("\n") == 0 and "no capture of Call-ID 'no-such-call@nowhere'" in out


def test_tcp_and_tls_legs_are_captured_in_clear(clean_edge: Edge) -> None:
    """siptrace mirrors what Kamailio reads and writes, so a TLS leg is captured after decryption."""
    from routing.tables import admin
    from routing.tables.model import Agent, Direction, Trunk
    from tests.baresip import Baresip

    edge = clean_edge
    # over TCP: SIPp carrier -> edge -> UDP agent
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, GW_PORT)])
    edge.agent("bot", [f"sip:{AGENT_IP}:{AGENT_PORT}"], [f"{AGENT_IP}/32"])
    edge.did(DID, "carrier-a", "bot")
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, answer_ms=20)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, CARRIER_PORT, edge.sip, DID, hold_ms=300, extra=["-t", "t1"])
    assert carrier.wait() == 0, carrier.output()
    assert agent.wait() == 0, agent.output()
    call_id = call_id_of(agent.received_requests("INVITE")[0])
    messages = captured(edge, call_id, both_legs_done)
    invite_in = next(m for m in messages if m["direction"] == "in" and m["message"] == "INVITE")
    assert invite_in["transport"] == "tcp" and invite_in["src"].startswith(CARRIER_A)
    assert has(messages, "out", "INVITE", dst=f"{AGENT_IP}:{AGENT_PORT}")
    assert next(m for m in messages if m["direction"] == "out" and m["message"] == "INVITE")["transport"] == "udp"

    # over TLS: a baresip carrier (the edge's self-signed certificate trusted)
    edge.redis.flushdb()
    sources = (f"{EDGE_IP}/32",) + (("127.0.0.1/32",) if EDGE_IP != "127.0.0.1" else ())
    admin.put_trunk(edge.redis, Trunk("tls-carrier", Direction.BOTH, cidrs=sources))
    admin.put_agent(edge.redis, Agent("bot", (f"sip:{AGENT_IP}:{AGENT_PORT}",), (f"{AGENT_IP}/32",)))
    edge.did(DID, "tls-carrier", "bot")
    agent = uas(edge.workdir / "agent-tls", AGENT_IP, AGENT_PORT, scenario="uas_answer.xml", answer_ms=200,
                rtp_echo=False)
    with Baresip(edge.workdir / "tls-carrier", f"{NET}.41", codecs=["PCMU"], cafile=edge.settings.tls_certificate) as ua:
        ua.dial(f"sip:{DID}@{EDGE_IP}:{edge.tls_port};transport=tls")
        ua.wait_event("CALL_ESTABLISHED")
        ua.hangup()
        ua.wait_event("CALL_CLOSED")
    assert agent.wait(timeout=20) == 0, agent.output()
    call_id = call_id_of(agent.received_requests("INVITE")[0])
    messages = captured(edge, call_id, both_legs_done)
    tls_in = [m for m in messages if m["dst"].endswith(f":{edge.tls_port}")]
    assert [m["message"] for m in tls_in] == ["INVITE", "ACK", "BYE"], messages
    assert all(m["transport"] == "tls" for m in tls_in)
    # every request the edge sent precedes the responses to it
    relayed = next(i for i, m in enumerate(messages) if m["direction"] == "out" and m["message"] == "INVITE")
    assert all(not m["message"][0].isdigit() or m["src"] != messages[relayed]["dst"] for m in messages[:relayed])
    assert all(m["text"].startswith(("INVITE ", "ACK ", "BYE ", "SIP/2.0 ", "OPTIONS ", "CANCEL ", "PRACK ", "UPDATE ", "INFO "))
               for m in messages)
