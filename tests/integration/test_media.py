"""Media policy with real audio: two baresip UAs (carrier and agent) exchange sine tones through the
edge; each recording must carry the other side's tone, and rtpengine's own statistics must show
transcoding exactly when the two sides share no codec."""

from __future__ import annotations

import socket
import struct
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from routing.tables import admin
from routing.tables.model import Agent, Direction, MediaPolicy, SrtpMode, Trunk

from routing.ngclient import NgClient
from tests.baresip import Baresip, dominant_frequency, pcmu_tone, stop_all, tone_level
from tests.helpers import wait_until

from .conftest import AGENT_IP, CARRIER_A, DID, NET, STRANGER, Edge

CARRIER_TONE = 440
AGENT_TONE = 1000
TONE_TOLERANCE_HZ = 8
RTP_BASE = 23000 + 100 * (int(NET.rsplit(".", 1)[1]) % 60)


@pytest.fixture
def media_edge(clean_edge: Edge) -> Iterator[Edge]:
    yield clean_edge
    stop_all()


def provision(edge: Edge, trunk: MediaPolicy, agent: MediaPolicy) -> None:
    admin.put_trunk(edge.redis, Trunk("carrier", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",), media=trunk))
    admin.put_agent(edge.redis, Agent("bot", (f"sip:ua@{AGENT_IP}:5081",), (f"{AGENT_IP}/32",), media=agent))
    edge.did(DID, "carrier", "bot")


def transcoded_now(edge: Edge) -> int:
    """rtpengine's own count of media streams it is transcoding right now."""
    return int(edge.rtpengine_totals().get("Transcoded media", 0))


@contextmanager
def peers(edge: Edge, carrier_codecs: list[str], agent_codecs: list[str], carrier_enc: str | None = None,
          agent_enc: str | None = None) -> Iterator[tuple[Baresip, Baresip]]:
    work = edge.workdir
    agent = Baresip(work / "agent", AGENT_IP, codecs=agent_codecs, tone_hz=AGENT_TONE, mediaenc=agent_enc,
                    rtp_base=RTP_BASE)
    carrier = Baresip(work / "carrier", CARRIER_A, codecs=carrier_codecs, tone_hz=CARRIER_TONE,
                      mediaenc=carrier_enc, rtp_base=RTP_BASE + 100)
    with agent, carrier:
        yield carrier, agent


def talk(edge: Edge, carrier: Baresip, agent: Baresip, seconds: float = 2.0) -> int:
    """Carrier calls the DID, the agent answers, both talk for ``seconds``; returns the transcoded
    stream count rtpengine reported mid-call."""
    carrier.dial(f"sip:{DID}@{edge.sip}")
    agent.answer()
    carrier.wait_event("CALL_ESTABLISHED")
    agent.wait_event("CALL_ESTABLISHED")
    wait_until(lambda: edge.active_leases() == 2, timeout=5, what="call admitted")
    time.sleep(seconds)  # the audio itself: the recordings need a few seconds of tone
    transcoded = transcoded_now(edge)
    carrier.hangup()
    agent.wait_event("CALL_CLOSED")
    carrier.wait_event("CALL_CLOSED")
    return transcoded


def assert_tone(path: Path, hz: int) -> None:
    freq, rms = dominant_frequency(path)
    assert rms > 300, f"{path.name}: silence (rms {rms:.0f})"
    assert abs(freq - hz) <= TONE_TOLERANCE_HZ, f"{path.name}: heard {freq:.1f} Hz, expected {hz} Hz"


def test_same_codec_is_relayed_without_transcoding(media_edge: Edge) -> None:
    provision(media_edge, MediaPolicy(codecs=("PCMU", "PCMA")), MediaPolicy(codecs=("PCMA", "PCMU")))
    with peers(media_edge, ["PCMU", "PCMA"], ["PCMA", "PCMU"]) as (carrier, agent):
        transcoded = talk(media_edge, carrier, agent)
    assert transcoded == 0
    assert_tone(agent.recording, CARRIER_TONE)
    assert_tone(carrier.recording, AGENT_TONE)
    # the call-end drain (20-40 ms after the BYE) kept rtpengine's final statistics of the call
    def kept_stats() -> dict[str, str]:
        keys = media_edge.redis.keys("edge:media:*")
        kept = media_edge.redis.hgetall(keys[0]) if len(keys) == 1 else {}
        return kept if "media_caller_packets" in kept else {}

    wait_until(kept_stats, timeout=5, what="the call's final media statistics in redis")
    kept = kept_stats()
    assert int(kept["media_caller_packets"]) >= 50 and int(kept["media_callee_packets"]) >= 50  # 2 s at 20 ms
    assert "media_end_reason" not in kept


def test_pcmu_carrier_to_opus_agent_is_transcoded(media_edge: Edge) -> None:
    provision(media_edge, MediaPolicy(codecs=("PCMU",)), MediaPolicy(codecs=("opus",)))
    with peers(media_edge, ["PCMU"], ["opus"]) as (carrier, agent):
        transcoded = talk(media_edge, carrier, agent)
    assert transcoded > 0
    assert "opus" in agent.output() and "PCMU" in carrier.output()
    assert_tone(agent.recording, CARRIER_TONE)
    assert_tone(carrier.recording, AGENT_TONE)


def test_g722_carrier_to_pcmu_agent_is_transcoded(media_edge: Edge) -> None:
    provision(media_edge, MediaPolicy(codecs=("G722",)), MediaPolicy(codecs=("PCMU",)))
    with peers(media_edge, ["G722"], ["PCMU"]) as (carrier, agent):
        transcoded = talk(media_edge, carrier, agent)
    assert transcoded > 0
    assert_tone(agent.recording, CARRIER_TONE)
    assert_tone(carrier.recording, AGENT_TONE)


def test_call_whose_media_stops_is_ended_with_bye_to_both_sides(media_edge: Edge) -> None:
    """Both UAs freeze (SIGSTOP: no RTP, no BYE); after the trunk's rtp_timeout_s the edge ends the
    call: BYE to both sides, slots released, and the call's media quality kept in redis."""
    edge = media_edge
    provision(edge, MediaPolicy(codecs=("PCMU",), rtp_timeout_s=5), MediaPolicy(codecs=("PCMU",)))
    with peers(edge, ["PCMU"], ["PCMU"]) as (carrier, agent):
        carrier.dial(f"sip:{DID}@{edge.sip}")
        agent.answer()
        carrier.wait_event("CALL_ESTABLISHED")
        record = wait_until(lambda: next(iter(edge.call_records()), None), timeout=5, what="call record")
        # the watchdog writes rtpengine's statistics into the live call record
        live = wait_until(lambda: int(edge.redis.hget(record, "media_caller_packets") or 0) > 0
                          and edge.redis.hgetall(record), timeout=5, what="media statistics in the call record")
        assert int(live["media_callee_packets"]) > 0 and int(live["media_last_packet"]) > 0
        frozen_at = time.monotonic()
        carrier.freeze()
        agent.freeze()
        wait_until(lambda: edge.active_leases() == 0, timeout=15, what="slots released after the RTP timeout")
        elapsed = time.monotonic() - frozen_at
        carrier.thaw()
        agent.thaw()
        # both sides got the edge's BYE while frozen and close the call once they run again
        carrier.wait_event("CALL_CLOSED")
        agent.wait_event("CALL_CLOSED")
    assert 4 <= elapsed < 9, elapsed  # 5 s timeout, checked every second; the 12 s maximum did not end it
    call_id = record.split(":", 3)[3]
    assert f"call-id={call_id} had no RTP" in edge.log()
    kept = edge.redis.hgetall(f"edge:media:{edge.settings.node}:{call_id}")
    assert kept["media_end_reason"] == "rtp_timeout"
    assert int(kept["media_caller_packets"]) > 0 and int(kept["media_callee_packets"]) > 0
    assert 0 < edge.redis.ttl(f"edge:media:{edge.settings.node}:{call_id}") <= 86400


#: what baresip logs once its media is encrypted, per mode
ENCRYPTED = {"sdes": "SRTP is Enabled", "dtls": "DTLS-SRTP complete"}


@pytest.mark.parametrize(
    "carrier_enc, agent_enc",
    [(None, "sdes"), (None, "dtls"), ("sdes", None)],
    ids=["rtp-carrier-sdes-agent", "rtp-carrier-dtls-agent", "sdes-carrier-rtp-agent"],
)
def test_mixed_srtp_legs_carry_audio(media_edge: Edge, carrier_enc: str | None, agent_enc: str | None) -> None:
    """One leg encrypted (SDES or DTLS-SRTP), the other plain RTP: rtpengine encrypts and decrypts
    between them, and each side gets exactly the protocol of its own policy."""
    provision(media_edge, MediaPolicy(codecs=("PCMU",), srtp=SrtpMode(carrier_enc or "none")),
              MediaPolicy(codecs=("PCMU",), srtp=SrtpMode(agent_enc or "none")))
    with peers(media_edge, ["PCMU"], ["PCMU"], carrier_enc=carrier_enc, agent_enc=agent_enc) as (carrier, agent):
        talk(media_edge, carrier, agent)
    for ua, enc in ((carrier, carrier_enc), (agent, agent_enc)):
        log = ua.output()
        if enc:
            assert ENCRYPTED[enc] in log, log[-1500:]
        else:
            assert not any(marker in log for marker in ENCRYPTED.values())
    assert_tone(agent.recording, CARRIER_TONE)
    assert_tone(carrier.recording, AGENT_TONE)


def test_side_requiring_srtp_is_refused_a_clear_call(media_edge: Edge) -> None:
    provision(media_edge, MediaPolicy(srtp=SrtpMode.SDES), MediaPolicy())
    with peers(media_edge, ["PCMU"], ["PCMU"]) as (carrier, agent):
        carrier.dial(f"sip:{DID}@{media_edge.sip}")
        closed = carrier.wait_event("CALL_CLOSED")
        assert "488 SRTP Required" in closed.get("param", ""), closed
        assert not agent.has_event("CALL_INCOMING")  # never connected, in clear or otherwise
    assert media_edge.active_leases() == 0


INJECTED_TONE = 2000


def test_rtp_injected_by_a_third_party_never_reaches_the_agent(media_edge: Edge) -> None:
    """Once rtpengine has learned the carrier's RTP source, packets from any other address sent to
    the carrier-facing port are dropped (strict-source): the agent hears only the carrier."""
    edge = media_edge
    provision(edge, MediaPolicy(codecs=("PCMU",)), MediaPolicy(codecs=("PCMU",)))
    with peers(edge, ["PCMU"], ["PCMU"]) as (carrier, agent):
        carrier.dial(f"sip:{DID}@{edge.sip}")
        agent.answer()
        carrier.wait_event("CALL_ESTABLISHED")
        record = wait_until(lambda: next(iter(edge.call_records()), None), timeout=5, what="call record")
        call_id = record.split(":", 3)[3]
        # the port rtpengine gave the carrier and the carrier's SSRC (an attacker who sees the
        # stream can copy it): the RTP stream whose SDP address is the carrier's
        with NgClient("127.0.0.1", edge.settings.rtpengine.ng_port, timeout_s=2) as ng:
            reply = ng.query(call_id)
        stream = next(s for tag in reply["tags"].values() for m in tag.get("medias", []) for s in m["streams"]
                      if s.get("advertised endpoint", {}).get("address") == CARRIER_A
                      and "RTCP" not in s.get("flags", []))
        assert "strict source address" in stream["flags"]  # rtpengine's own view of the policy
        port, ssrc = stream["local port"], int(stream["SSRC"])
        time.sleep(4.0)  # past rtpengine's learning of the carrier's source (the first 3 s of its media)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((STRANGER, 0))
            for seq, payload in enumerate(pcmu_tone(INJECTED_TONE, 100)):
                # sequence numbers and timestamps ahead of the carrier's, so a receiver would play them
                header = struct.pack("!BBHII", 0x80, 0, (20000 + seq) & 0xFFFF, (4_000_000 + seq * 160), ssrc)
                sock.sendto(header + payload, (edge.settings.rtpengine.address, port))
                time.sleep(0.02)
        carrier.hangup()
        agent.wait_event("CALL_CLOSED")
    assert_tone(agent.recording, CARRIER_TONE)
    # without strict-source about 20 % of the spectrum is the injected tone; with it, nothing but leakage
    assert tone_level(agent.recording, INJECTED_TONE) < 0.08, "the injected tone reached the agent"
