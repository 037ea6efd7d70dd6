"""TLS signalling with a real TLS-capable SIP UA (baresip): a carrier calls over TLS and the
call leaves toward a UDP agent (RFC 5658 double Record-Route)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from routing import admin
from routing.model import Agent, Direction, Trunk
from routing.sipp import uas

from .conftest import AGENT_IP, DID, EDGE_IP, NET, Edge

BARESIP_IP = f"{NET}.41"


def baresip_config(edge: Edge, work: Path) -> Path:
    """A headless baresip: G.711, a 440 Hz tone as microphone, audio played into a file."""
    conf = work / "baresip"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "config").write_text(
        "poll_method\tepoll\n"
        f"sip_listen\t{BARESIP_IP}:5081\n"
        f"sip_cafile\t{edge.settings.tls_certificate}\n"  # trust the edge's (self-signed) certificate
        f"audio_player\taufile,{work / 'heard.wav'}\n"
        "audio_source\tausine,440\n"
        "ausrc_srate\t48000\nauplay_srate\t48000\nausrc_channels\t2\nauplay_channels\t2\n"
        "module_path\t/usr/lib/baresip/modules\n"
        "module\tg711.so\nmodule\tausine.so\nmodule\taufile.so\n"
        "module_app\taccount.so\nmodule_app\tmenu.so\n"
    )
    (conf / "accounts").write_text(f"<sip:carrier@{BARESIP_IP}>;regint=0;audio_codecs=PCMU\n")
    return conf


def test_carrier_over_tls_reaches_udp_agent(clean_edge: Edge) -> None:
    edge = clean_edge
    binary = shutil.which("baresip")
    assert binary, "baresip is not installed (apt-get install baresip-core)"
    # a TLS connection leaves from the kernel's choice of source address: the edge's own here, or
    # 127.0.0.1 (the loopback's primary address) when the tests run on another EDGE_TEST_NET
    sources = (f"{EDGE_IP}/32",) + (("127.0.0.1/32",) if EDGE_IP != "127.0.0.1" else ())
    admin.put_trunk(edge.redis, Trunk("tls-carrier", Direction.BOTH, cidrs=sources))
    admin.put_agent(edge.redis, Agent("bot", (f"sip:{AGENT_IP}:5090",), (f"{AGENT_IP}/32",)))
    edge.did(DID, "tls-carrier", "bot")
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario="uas_answer.xml", answer_ms=200, rtp_echo=False)
    conf = baresip_config(edge, edge.workdir)
    run = subprocess.run(
        [binary, "-f", str(conf), "-e", f"/dial sip:{DID}@{EDGE_IP}:{edge.tls_port};transport=tls", "-t", "4"],
        capture_output=True, text=True, timeout=30,
    )
    assert "Call established" in run.stdout, run.stdout[-2000:]
    assert agent.wait(timeout=20) == 0, agent.output()
    invite = agent.received_requests("INVITE")[0]
    assert "transport=tls" in invite  # the edge record-routes both transports
    assert "X-Edge-Trunk: tls-carrier" in invite
    assert agent.received_requests("ACK") and agent.received_requests("BYE")
