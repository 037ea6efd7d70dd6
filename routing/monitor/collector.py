"""The HEP collector of the monitor process: SIP capture per call, kept on the node and relayed.

Kamailio's ``siptrace`` module (``trace_mode 1``, templates/kamailio.cfg.j2) sends one HEP3
datagram per SIP message it receives or sends to ``capture.address:capture.port``.  This thread
reads them in batches (every 20 ms), appends each to its call's file (:class:`routing.capture.store.CaptureStore`, the
Call-ID read from the SIP payload), relays the datagram unchanged to ``capture.hep_address`` when
one is configured (a Homer/heplify collector), and once a second deletes calls past
``capture.max_age_s``.  Out-of-dialog OPTIONS and REGISTER (gateway pings, registrations) are
relayed but not kept, unless their Call-ID is already a call's.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time

from routing.capture import hep, sipmsg
from routing.capture.store import CaptureStore
from routing.ops.settings import Settings

__all__ = ["Collector"]

log = logging.getLogger("byoc_edge.capture")

#: the largest UDP datagram (bytes)
_MAX_DATAGRAM = 65535
#: OPTIONS and REGISTER requests and their responses (by the CSeq method): kept only when their
#: Call-ID is already a call's
_NOT_CALL_CSEQ = re.compile(rb"(?im)^cseq[ \t]*:[ \t]*[0-9]+[ \t]+(?:OPTIONS|REGISTER)[ \t]*\r?$")
#: how often the collector reads what queued in its socket (s): a wake-up per batch, not per message; the
#: socket's receive buffer (4 MB asked, net.core.rmem_max caps it) holds what arrives meanwhile
_BATCH_S = 0.02
#: most datagrams handled in one batch before the stop flag and the sweep are looked at again
_MAX_BATCH = 10000
#: a warning about dropped datagrams at most this often (s)
_WARN_EVERY_S = 60.0


class Collector:
    """Receives siptrace's HEP3 datagrams (UDP), keeps them per call, relays them to Homer.

    Args:
        settings: the node's settings (``capture.*``, the capture directory).
        clock: seconds since the epoch (injected for tests).
    """

    def __init__(self, settings: Settings, clock=time.time) -> None:
        c = settings.capture
        self.store = CaptureStore(settings.capture_path, c.max_bytes, c.max_age_s)
        self.clock = clock
        family = socket.AF_INET6 if ":" in c.address else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind((c.address, c.port))
        self.relay_to = (c.hep_address, c.hep_port) if c.hep_address else None
        self.relay = (socket.socket(socket.AF_INET6 if ":" in c.hep_address else socket.AF_INET, socket.SOCK_DGRAM)
                      if c.hep_address else None)
        self.received = 0
        self.kept = 0
        self.dropped = 0
        self._warned = 0.0
        self.store.open()

    def handle(self, data: bytes, now: float) -> bool:
        """One datagram: relayed, then kept with its call when it is a SIP message of one; returns whether kept."""
        call_id = self._accept(data, now, ())
        if call_id is None:
            return False
        self.store.append(call_id, data, now)
        return True

    def handle_batch(self, datagrams: list[bytes], now: float) -> int:
        """Datagrams read together: each relayed and checked, then one write per call (the call's
        packets of the batch in arrival order); returns how many were kept."""
        calls: dict[str, list[bytes]] = {}
        for data in datagrams:
            call_id = self._accept(data, now, calls)
            if call_id is not None:
                calls.setdefault(call_id, []).append(data)
        for call_id, packets in calls.items():
            try:
                self.store.append(call_id, b"".join(packets), now)
            except OSError as exc:  # a full disk: the call path never waits for the capture
                self._drop(now, f"cannot write: {exc}")
        return sum(len(p) for p in calls.values())

    def _accept(self, data: bytes, now: float, pending) -> str | None:
        """Relay ``data``; the Call-ID it is kept under, or None (not HEP3 with a SIP payload, or an
        OPTIONS/REGISTER of no call captured or ``pending``)."""
        self.received += 1
        if self.relay is not None:
            try:
                self.relay.sendto(data, self.relay_to)
            except OSError as exc:
                log.warning("capture: cannot relay HEP to %s:%s: %s", *self.relay_to, exc)
        try:
            payload = hep.payload_of(data)
        except hep.HepError as exc:
            self._drop(now, f"not HEP3: {exc}")
            return None
        call_id = sipmsg.call_id(payload)
        if not call_id:
            self._drop(now, "a payload without Call-ID")
            return None
        if payload[:1] in (b"O", b"R", b"S") and _NOT_CALL_CSEQ.search(payload.split(b"\r\n\r\n", 1)[0]) \
                and call_id not in pending and not self.store.has(call_id):
            return None
        self.kept += 1
        return call_id

    def _drop(self, now: float, why: str) -> None:
        self.dropped += 1
        if now - self._warned >= _WARN_EVERY_S:
            self._warned = now
            log.warning("capture: dropped a datagram (%s); %d dropped so far", why, self.dropped)

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set: every ``_BATCH_S`` the datagrams queued in the socket are read and
        handled (one wake-up per batch, not per message); old calls are swept about once a second."""
        log.info("capture: HEP collector on %s:%d, files in %s", *self.sock.getsockname()[:2], self.store.directory)
        self.sock.setblocking(False)
        next_sweep = 0.0
        recv = self.sock.recv
        while not stop.wait(_BATCH_S):
            now = self.clock()
            batch: list[bytes] = []
            try:
                while len(batch) < _MAX_BATCH:
                    batch.append(recv(_MAX_DATAGRAM))
            except BlockingIOError:
                pass
            if batch:
                self.handle_batch(batch, now)
            if now >= next_sweep:
                self.store.sweep(now)
                next_sweep = now + 1.0
        self.close()

    def close(self) -> None:
        """Close the collector's sockets."""
        self.sock.close()
        self.store.close()
        if self.relay is not None:
            self.relay.close()

    def start(self, stop: threading.Event) -> threading.Thread:
        """Run in a daemon thread."""
        thread = threading.Thread(target=self.run, args=(stop,), name="hep-collector", daemon=True)
        thread.start()
        return thread
