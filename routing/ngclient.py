"""A small client of rtpengine's ng control protocol (dictionaries over UDP).

The Kamailio rtpengine module sends offers and answers; this client is for what the module
cannot do or return: ``delete`` whose reply carries a call's final statistics, ``query`` from a
timer process where there is no SIP message to take the Call-ID from (the media watchdog and call
quality, :mod:`routing.call.quality`), ``block DTMF``, ``subscribe request``/``subscribe answer``/``unsubscribe``
(a copy of an agent's stream, :mod:`routing.kamailio.firstvoice`).  Protocol: rtpengine
``docs/ng_control_protocol.md``: a message is ``<cookie> <dictionary>``, the reply
``<cookie> <dictionary>`` with ``result`` = ``ok`` or ``error``.  The dictionary is bencoded, or
JSON, which rtpengine (10.5 here) accepts too and answers in kind: this client sends JSON, because a
statistics reply holds hundreds of strings and Python's C JSON decoder reads them several times
faster than a bencode decoder in Python (a bencoded reply is still read).
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import bencodepy

from routing.errors import EdgeError

__all__ = ["NgClient", "NgError"]


class NgError(EdgeError, RuntimeError):
    """rtpengine did not answer in time, answered garbage, or answered ``result: error``
    (``reason`` holds its text, e.g. ``Unknown call-id``)."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


#: bencode strings decoded as UTF-8 while parsing (a query reply holds hundreds of them); one that is
#: not UTF-8 stays bytes
_DECODER = bencodepy.Bencode(encoding="utf-8", encoding_fallback="all")
#: one compact JSON encoder made once (``json.dumps`` with ``separators`` builds one per command)
_COMPACT = json.JSONEncoder(separators=(",", ":"))


class NgClient:
    """ng client bound to one rtpengine control socket.

    Args:
        host: address of rtpengine's ``listen-ng`` (UDP).
        port: its port.
        timeout_s: how long to wait for the reply (s); keep it short on the call clock.
    """

    def __init__(self, host: str, port: int, timeout_s: float = 0.5) -> None:
        self.address = (host, port)
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None

    def _socket(self) -> socket.socket:
        """This client's UDP socket, connected to rtpengine (made on first use and kept: a call
        costs no socket of its own; a late reply to an earlier command is told apart by its cookie)."""
        if self._sock is None:
            sock = socket.socket(socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET, socket.SOCK_DGRAM)
            sock.settimeout(self.timeout_s)
            sock.connect(self.address)
            self._sock = sock
        return self._sock

    def local_host(self) -> str:
        """This host's address toward rtpengine (the source address the kernel chose for this
        client's socket): where rtpengine can send media to the edge.

        Raises:
            NgError: no route to rtpengine's address.
        """
        try:
            return str(self._socket().getsockname()[0])
        except OSError as exc:
            raise NgError(f"no route to rtpengine {self.address[0]}:{self.address[1]}: {exc}") from None

    def close(self) -> None:
        """Close the socket (the next command opens another)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> "NgClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def command(self, name: str, **params: Any) -> dict[str, Any]:
        """Send one command (``ping``, ``query``, ``list``...) and return the reply dictionary.

        Raises:
            NgError: no reply within ``timeout_s``, an undecodable reply, or ``result: error``.
        """
        cookie = os.urandom(6).hex().encode()
        payload = {"command": name, **{k.replace("_", "-"): v for k, v in params.items()}}
        message = cookie + b" " + _COMPACT.encode(payload).encode()
        try:
            sock = self._socket()
            sock.send(message)
            while True:
                data = sock.recv(65535)
                head, _, body = data.partition(b" ")
                if head == cookie:
                    break
        except OSError as exc:  # socket.timeout included; ICMP unreachable (nothing listens) too
            raise NgError(f"rtpengine {self.address[0]}:{self.address[1]} did not answer {name}: {exc}") from None
        try:
            # JSON as asked; bencode from an rtpengine that answers only that (its dictionaries are not key-sorted)
            reply = json.loads(body) if body[:1] == b"{" else _DECODER.decode(body)
        except Exception as exc:  # noqa: BLE001 - any decoding problem is a protocol error
            raise NgError(f"rtpengine answered {name} with undecodable data: {exc}") from None
        if not isinstance(reply, dict):
            raise NgError(f"rtpengine answered {name} with {type(reply).__name__}, not a dictionary")
        if reply.get("result") == "error":
            reason = str(reply.get("error-reason", ""))
            raise NgError(f"rtpengine refused {name}: {reason}", reason)
        return reply

    def query(self, call_id: str, from_tag: str = "") -> dict[str, Any]:
        """The ``query`` reply of a call: ``created``, ``tags`` (per SIP tag: medias, streams,
        ``last packet``, ``stats``), ``totals`` and ``SSRC`` (per-SSRC quality).

        Raises:
            NgError: as :meth:`command`; ``reason`` is ``Unknown call-id`` once the session is gone.
        """
        params: dict[str, Any] = {"call_id": call_id}
        if from_tag:
            params["from_tag"] = from_tag
        return self.command("query", **params)
