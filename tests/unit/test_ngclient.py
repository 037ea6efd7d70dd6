"""routing.ngclient against a real UDP socket speaking rtpengine's ng framing
(``<cookie> <dict>``, JSON asked, JSON or bencode answered): replies, ``result: error``, garbage and silence."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator

import bencodepy
import pytest

from routing.ngclient import NgClient, NgError


@pytest.fixture
def ng_server() -> Iterator[Callable[[Callable[[dict], bytes | None]], NgClient]]:
    """A one-request ng server on 127.0.0.1: ``answer(request) -> body`` (None: stay silent)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    threads = []
    clients: list[NgClient] = []

    def start(answer: Callable[[dict], bytes | None]) -> NgClient:
        def serve() -> None:
            data, peer = sock.recvfrom(65535)
            cookie, _, body = data.partition(b" ")
            reply = answer(json.loads(body))
            if reply is not None:
                sock.sendto(b"stale " + bencodepy.encode({"result": "ok"}), peer)  # another request's answer
                sock.sendto(cookie + b" " + reply, peer)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        client = NgClient(*sock.getsockname(), timeout_s=0.3)
        clients.append(client)
        return client

    yield start
    for thread in threads:
        thread.join(timeout=1)
    for client in clients:
        client.close()
    sock.close()


def test_a_command_is_sent_as_json_and_gets_its_own_reply(ng_server) -> None:
    seen = []
    client = ng_server(lambda req: seen.append(req) or json.dumps({"result": "pong"}).encode())
    assert client.command("ping") == {"result": "pong"}
    assert seen == [{"command": "ping"}]


def test_a_bencoded_reply_is_read_too(ng_server) -> None:
    client = ng_server(lambda req: b"d6:result2:ok7:createdi5ee")  # unsorted keys, as rtpengine sends them
    assert client.command("query", call_id="c1") == {"result": "ok", "created": 5}


def test_parameters_are_sent_with_dashes(ng_server) -> None:
    seen = []
    client = ng_server(lambda req: seen.append(req) or json.dumps({"result": "ok", "totals": {"RTP": 3}}).encode())
    assert client.command("query", call_id="c1", from_tag="f1")["totals"] == {"RTP": 3}
    assert seen == [{"command": "query", "call-id": "c1", "from-tag": "f1"}]


def test_an_error_reply_carries_its_reason(ng_server) -> None:
    client = ng_server(lambda req: json.dumps({"result": "error", "error-reason": "Unknown call-id"}).encode())
    with pytest.raises(NgError, match="rtpengine refused query: Unknown call-id") as info:
        client.command("query", call_id="gone")
    assert info.value.reason == "Unknown call-id"


def test_garbage_is_a_protocol_error(ng_server) -> None:
    client = ng_server(lambda req: b"{not json")
    with pytest.raises(NgError, match="undecodable"):
        client.command("ping")


def test_silence_is_a_timeout(ng_server) -> None:
    client = ng_server(lambda req: None)
    with pytest.raises(NgError, match="did not answer ping"):
        client.command("ping")


def test_one_socket_serves_every_command_and_a_late_reply_is_skipped() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    client = NgClient(*server.getsockname(), timeout_s=0.3)
    try:
        with pytest.raises(NgError, match="did not answer query"):
            client.command("query", call_id="slow")  # unanswered in time
        late, peer = server.recvfrom(65535)
        server.sendto(late.partition(b" ")[0] + b' {"result":"ok","late":1}', peer)  # its answer comes now

        def serve() -> None:
            data, source = server.recvfrom(65535)
            server.sendto(data.partition(b" ")[0] + b' {"result":"pong"}', source)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        assert client.command("ping") == {"result": "pong"}  # not the late reply
        thread.join(timeout=1)
        assert peer == client._socket().getsockname()  # the same socket both times
    finally:
        client.close()
        server.close()


def test_nothing_listening_is_an_error_not_a_hang() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    address = probe.getsockname()
    probe.close()  # nothing listens there any more
    client = NgClient(*address, timeout_s=0.3)
    try:
        with pytest.raises(NgError, match="did not answer ping"):
            client.command("ping")
    finally:
        client.close()


def test_local_host_is_the_address_the_kernel_reaches_rtpengine_from() -> None:
    """Where rtpengine can send media to the edge (routing.kamailio.firstvoice binds its socket there)."""
    with NgClient("127.0.0.1", 9) as client:
        assert client.local_host() == "127.0.0.1"
    with NgClient("::1", 9) as client:
        assert client.local_host() == "::1"
