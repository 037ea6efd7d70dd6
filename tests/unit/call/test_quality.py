"""routing.call.quality over an rtpengine query reply, and routing.ngclient against a UDP stand-in."""

from __future__ import annotations

import json
import socket
import threading

import bencodepy
import pytest

from routing.ngclient import NgClient, NgError
from routing.call.quality import FIELDS, CallQuality, SideQuality, idle_s, last_packet, read, summary


def stream(packets: int, last: int, ssrc: int | None = None, rtcp: bool = False) -> dict:
    out = {"local port": 30000, "last packet": last, "flags": ["RTCP"] if rtcp else ["RTP"],
           "stats": {"packets": packets, "bytes": packets * 172, "errors": 0}}
    if ssrc is not None:
        out["SSRC"] = ssrc
    return out


#: the shape of rtpengine 10.5's query reply (daemon/call_interfaces.c): tags -> medias -> streams, SSRC
REPLY = {
    "result": "ok",
    "created": 1000,
    "tags": {
        "caller-tag": {"tag": "caller-tag", "medias": [{"type": "audio", "streams": [
            stream(250, 1010, ssrc=111), stream(3, 1009, rtcp=True)]}]},
        "callee-tag": {"tag": "callee-tag", "medias": [{"type": "audio", "streams": [
            stream(240, 1008, ssrc=222), stream(2, 1007, rtcp=True)]}]},
    },
    # each entry is filed under the SSRC of the side that sent the receiver reports (daemon/ssrc.c
    # ssrc_receiver_report: get_ssrc(rr->from)): 111's entry is the caller's view of the callee's stream
    "SSRC": {
        "111": {"cumulative loss": 4, "average MOS": {"MOS": 43, "jitter": 3, "packet loss": 1, "samples": 2}},
        "222": {"cumulative loss": 0, "average MOS": {"MOS": 44, "jitter": 1, "packet loss": 0, "samples": 2}},
    },
}


def test_summary_per_side() -> None:
    fields = summary(REPLY, "caller-tag", now=1012.4)
    assert set(fields) == set(FIELDS)
    assert fields["media_caller_packets"] == "250" and fields["media_callee_packets"] == "240"  # RTCP not counted
    # a side's stream quality is what the other side reported about it
    assert fields["media_callee_lost"] == "4" and fields["media_caller_lost"] == "0"
    assert fields["media_callee_loss_pct"] == "1" and fields["media_caller_loss_pct"] == "0"
    assert fields["media_callee_jitter_ms"] == "3" and fields["media_callee_mos"] == "4.3"
    assert fields["media_caller_jitter_ms"] == "1" and fields["media_caller_mos"] == "4.4"
    assert fields["media_mos"] == "4.3"  # the worse direction
    assert fields["media_last_packet"] == "1010" and fields["media_updated"] == "1012"


def test_read_turns_the_fields_back_into_numbers() -> None:
    fields = summary(REPLY, "caller-tag", now=1012.4)
    q = read({**fields, "dtmf": "caller:5:info", "media_end_reason": "rtp_timeout"})
    assert q == CallQuality(
        caller=SideQuality(packets=250, bytes=250 * 172, lost=0, loss_pct=0, jitter_ms=1, mos=4.4),
        callee=SideQuality(packets=240, bytes=240 * 172, lost=4, loss_pct=1, jitter_ms=3, mos=4.3),
        mos=4.3, last_packet=1010, updated=1012, end_reason="rtp_timeout")
    # before any RTCP report: counts only
    early = read(summary({**REPLY, "SSRC": {}}, "caller-tag", now=1012))
    assert early.caller.packets == 250 and early.caller.lost is None and early.mos is None
    assert read({}) is None and read({"media_end_reason": "policy:srtp_required"}) is None  # no reading taken
    with pytest.raises(ValueError):
        read({**fields, "media_caller_lost": "many"})


def test_summary_before_rtcp_reports_leaves_quality_empty() -> None:
    reply = {**REPLY, "SSRC": {}}
    fields = summary(reply, "caller-tag", now=1012)
    assert fields["media_caller_mos"] == "" and fields["media_mos"] == "" and fields["media_caller_lost"] == ""
    assert fields["media_caller_loss_pct"] == "" and fields["media_callee_jitter_ms"] == ""
    assert fields["media_caller_packets"] == "250"
    # a call still ringing toward nobody: one tag only
    lone = summary({"tags": {"caller-tag": REPLY["tags"]["caller-tag"]}}, "caller-tag", now=1)
    assert lone["media_callee_packets"] == ""


def test_idle_counts_from_the_newest_packet_of_any_side() -> None:
    assert last_packet(REPLY) == 1010
    assert idle_s(REPLY, now=1016, since=1000) == 6  # the caller's last RTP at 1010
    assert idle_s(REPLY, now=1016, since=1014) == 2  # answered after the last packet (re-INVITE...)
    assert idle_s({}, now=1016, since=1000) == 16  # rtpengine no longer knows the call


@pytest.fixture
def fake_rtpengine():
    """A UDP socket answering each ng command with a canned, deliberately unsorted dictionary."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    answers: dict[str, bytes] = {}

    def serve() -> None:
        while True:
            try:
                data, peer = sock.recvfrom(65535)
            except OSError:
                return
            cookie, _, body = data.partition(b" ")
            command = json.loads(body)["command"]
            if command in answers:
                sock.sendto(cookie + b" " + answers[command], peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1], answers
    sock.close()


def test_ng_client_reads_unsorted_replies_and_errors(fake_rtpengine) -> None:
    port, answers = fake_rtpengine
    with NgClient("127.0.0.1", port, timeout_s=0.5) as client:
        answers["query"] = b"d6:result2:ok7:createdi5ee"  # keys not in bencode order, as rtpengine sends them
        assert client.query("abc") == {"result": "ok", "created": 5}
        answers["query"] = b"d6:result5:error12:error-reason15:Unknown call-ide"
        with pytest.raises(NgError) as caught:
            client.query("gone")
        assert caught.value.reason == "Unknown call-id"
        with pytest.raises(NgError, match="did not answer ping"):
            client.command("ping")  # no answer configured: the timeout
