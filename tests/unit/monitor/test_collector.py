"""routing.monitor.collector: HEP3 datagrams kept per call and relayed, over real loopback sockets."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from routing.capture.hep import HepPacket, build, parse
from routing.monitor.collector import Collector
from routing.ops.settings import Settings
from tests.helpers import free_port, wait_until


def message(call_id: str, first_line: str = "INVITE sip:x SIP/2.0", cseq: str = "1 INVITE", to_tag: str = "") -> bytes:
    sip = f"{first_line}\r\nTo: <sip:x>{to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n\r\n".encode()
    return build(HepPacket("127.0.0.11", "127.0.0.1", 5070, 5060, 1.0, sip))


@pytest.fixture
def homer() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    yield sock
    sock.close()


def collector(tmp_path: Path, **capture: object) -> Collector:
    settings = Settings.model_validate({"run_dir": str(tmp_path), "capture": {
        "port": free_port("127.0.0.1", socket.SOCK_DGRAM), **capture}})
    return Collector(settings, clock=lambda: 1000.0)


def test_messages_are_kept_per_call_and_relayed_unchanged(tmp_path: Path, homer: socket.socket) -> None:
    c = collector(tmp_path, hep_address="127.0.0.1", hep_port=homer.getsockname()[1])
    try:
        data = message("call-1@host")
        assert c.handle(data, 1000.0)
        assert homer.recv(65535) == data
        assert c.handle(message("call-1@host", "SIP/2.0 200 OK"), 1000.0)
        kept = c.store.call("call-1@host").packets()
        assert [parse(data)] == kept[:1] and len(kept) == 2
    finally:
        c.close()


def test_gateway_pings_and_registrations_are_relayed_but_not_kept(tmp_path: Path, homer: socket.socket) -> None:
    c = collector(tmp_path, hep_address="127.0.0.1", hep_port=homer.getsockname()[1])
    try:
        assert not c.handle(message("ping@edge", "OPTIONS sip:gw SIP/2.0", "1 OPTIONS"), 1000.0)
        assert not c.handle(message("reg@edge", "SIP/2.0 200 OK", "3 REGISTER"), 1000.0)
        assert homer.recv(65535) and homer.recv(65535)
        assert list(c.store.files()) == []
        # an in-dialog OPTIONS of a call (the dialog module's keepalive) stays with the call
        assert c.handle(message("call@host"), 1000.0)
        assert c.handle(message("call@host", "OPTIONS sip:x SIP/2.0", "7 OPTIONS", ";tag=1"), 1000.0)
        assert len(c.store.call("call@host").packets()) == 2
    finally:
        c.close()


def test_datagrams_that_are_not_sip_in_hep3_are_dropped(tmp_path: Path) -> None:
    c = collector(tmp_path)
    try:
        assert not c.handle(b"not hep at all", 1000.0)
        assert not c.handle(build(HepPacket("127.0.0.1", "127.0.0.2", 1, 2, 1.0, b"no call id here")), 1000.0)
        assert c.dropped == 2 and list(c.store.files()) == []
    finally:
        c.close()


def test_the_thread_serves_the_udp_socket_until_stopped(tmp_path: Path) -> None:
    c = collector(tmp_path)
    stop = threading.Event()
    thread = c.start(stop)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(message("live@host"), c.sock.getsockname())
        wait_until(lambda: c.store.call("live@host"), timeout=5, what="the datagram kept")
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_a_batch_is_one_write_per_call_in_arrival_order(tmp_path: Path) -> None:
    c = collector(tmp_path)
    try:
        batch = [message("a@h"), message("b@h", "SIP/2.0 100 Trying"), message("a@h", "SIP/2.0 200 OK"),
                 message("a@h", "OPTIONS sip:x SIP/2.0", "2 OPTIONS", ";tag=1"),  # of a call in this batch
                 message("ping@h", "OPTIONS sip:gw SIP/2.0", "1 OPTIONS"), b"junk"]
        assert c.handle_batch(batch, 1000.0) == 4
        labels = [p.payload.split(b"\r\n")[0] for p in c.store.call("a@h").packets()]
        assert labels == [b"INVITE sip:x SIP/2.0", b"SIP/2.0 200 OK", b"OPTIONS sip:x SIP/2.0"]
        assert len(c.store.call("b@h").packets()) == 1 and c.store.call("ping@h") is None
        assert (c.received, c.kept, c.dropped) == (6, 4, 1)
    finally:
        c.close()
