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
        return NgClient(*sock.getsockname(), timeout_s=0.3)

    yield start
    for thread in threads:
        thread.join(timeout=1)
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
