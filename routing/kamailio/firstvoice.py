"""The agent's first non-silent audio on transcoded calls, in the first-audio timer process
(docs/agents.md#first-non-silent-audio; the decisions are :mod:`routing.call.voice`).

:func:`routing.kamailio.timers.first_audio` polls each answered call until the agent's first RTP
packet.  At its first poll of a call (up to ``media.first_audio_poll_ms`` after the answer) whose
agent's stream rtpengine transcodes, :func:`start` opens a UDP socket of this process on the
address the edge reaches the call's rtpengine from, and subscribes it to the agent's stream (ng
``subscribe request`` with PCMU added for transcoding, ``subscribe answer`` with ``allow
transcoding``: rtpengine ``README.md``).  Every poll, :func:`poll` reads what came, decodes it
and at the first 20 ms frame at or above ``media.voice_threshold_dbov`` records
``media_first_voice_ms`` (the kernel's receive time of that packet, ``SO_TIMESTAMPNS``, minus
the answer) and observes ``byoc_edge_time_to_first_voice_seconds``; an agent that sent RTP but
only silence for ``media.dead_air_s`` is dead air.  Either way it unsubscribes (ng
``unsubscribe``) and closes the socket: rtpengine forwards a copy only until then.  A call that
ends first (its first-audio entry removed, :mod:`.dialogs`) has its socket closed; its session,
subscription included, is deleted with the call.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import metrics, voice
from ..ngclient import NgError
from ..tables.store import StoreUnavailable
from . import callstate as cs
from . import rtpset
from .worker import Worker, count, observe

__all__ = ["VoiceWatch", "start", "poll", "stop", "READ_BATCH"]

#: Linux's SO_TIMESTAMPNS (asm-generic/socket.h, also its SCM_ type), which Python 3.11 does not name
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
#: datagrams read per watch and poll at most (a 250 ms poll brings about 13 at 20 ms)
READ_BATCH = 200


@dataclass(eq=False)
class VoiceWatch:
    """One call whose agent's stream is copied to this process.

    Attributes:
        sock: the non-blocking UDP socket rtpengine sends the copy to.
        to_tag: the subscription's tag (:data:`routing.call.voice.WATCH_TAG_PREFIX`...).
        answered_ms: the call's answer (epoch ms).
        labels: ``(direction, trunk, agent)`` of the metrics.
        heard: the first-audio poll has seen the agent's first packet (its entry then waits for
            this watch only).
    """

    sock: socket.socket
    to_tag: str
    answered_ms: int
    labels: tuple[str, str, str]
    heard: bool = False


def start(w: Worker, call_id: str, answered_ms: int, labels: tuple[str, str, str], agent_tag: str,
          reply: dict) -> VoiceWatch | None:
    """Subscribe a socket of this process to the agent's stream when rtpengine transcodes it
    (``reply``: the call's ng ``query`` reply) and first voice is measured (``media.first_voice``);
    None otherwise, or when rtpengine refuses (logged: the call keeps its time to first audio)."""
    if not w.settings.first_voice or not voice.transcoded(reply, agent_tag):
        return None
    client = rtpset.client(w, call_id)
    to_tag = voice.WATCH_TAG_PREFIX + os.urandom(6).hex()
    sock = None
    try:
        host = client.local_host()
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((host, 0))
        offer = client.command("subscribe request", call_id=call_id, from_tag=agent_tag, to_tag=to_tag,
                               transport_protocol="RTP/AVP", ICE="remove", DTLS="off", SDES=["off"],
                               rtcp_mux=["offer"], codec={"transcode": ["PCMU"]})
        answer = voice.answer_sdp(str(offer.get("sdp") or ""), host, sock.getsockname()[1], answered_ms)
        client.command("subscribe answer", call_id=call_id, to_tag=to_tag, sdp=answer, flags=["allow transcoding"])
    except (NgError, voice.VoiceError, OSError) as exc:
        if sock is not None:
            sock.close()
        KSR.warn(f"edge: call-id={call_id} first voice not measured: {exc}\n")
        return None
    return VoiceWatch(sock, to_tag, answered_ms, labels)


def stop(w: Worker, call_id: str, unsubscribe: bool) -> None:
    """Forget ``call_id``'s watch: unsubscribe (when asked and the session still exists) and close
    its socket; nothing for a call without one."""
    watch = w.voice.pop(call_id, None)
    if watch is None:
        return
    if unsubscribe:
        try:
            rtpset.client(w, call_id).command("unsubscribe", call_id=call_id, to_tag=watch.to_tag)
        except NgError as exc:
            if "unknown call" not in exc.reason.lower():
                KSR.warn(f"edge: call-id={call_id} unsubscribe from the agent's stream failed: {exc}\n")
    watch.sock.close()


def _voiced_at_ms(watch: VoiceWatch, threshold_dbov: float) -> int | None:
    """Epoch ms of the first voiced frame among the datagrams waiting on the watch's socket
    (all read, up to :data:`READ_BATCH`), or None."""
    for _ in range(READ_BATCH):
        try:
            data, ancillary, _, _ = watch.sock.recvmsg(2048, socket.CMSG_SPACE(16))
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:  # an ICMP error queued on the socket: nothing to read from it
            continue
        parsed = voice.rtp_payload(data)
        offset = voice.first_voiced_ms(*parsed, threshold_dbov) if parsed else None
        if offset is None:
            continue
        received_ms = int(time.time() * 1000)
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                seconds, nanos = struct.unpack_from("@qq", value)
                received_ms = seconds * 1000 + nanos // 1_000_000
        return received_ms + offset
    return None


def poll(w: Worker, live: set[str], now_ms: int) -> None:
    """Every first-audio poll: each watch of a call still in the first-audio table reads its
    socket; the first voiced frame is recorded (``media_first_voice_ms``, the histogram), an
    agent heard but silent for ``media.dead_air_s`` since the answer is dead air; both end the
    watch.  Watches of calls that left the table (ended) are closed."""
    for call_id in [c for c in w.voice if c not in live]:
        stop(w, call_id, unsubscribe=False)  # the session went with the call
    for call_id, watch in list(w.voice.items()):
        if watch is None:
            continue
        voiced_ms = _voiced_at_ms(watch, w.settings.voice_threshold_dbov)
        if voiced_ms is not None:
            waited_ms = max(0, voiced_ms - watch.answered_ms)
            observe(metrics.TIME_TO_FIRST_VOICE, waited_ms / 1000, *watch.labels)
            fields = {"media_first_voice_ms": str(waited_ms)}
        elif watch.heard and now_ms - watch.answered_ms >= w.settings.dead_air_s * 1000:
            count(metrics.DEAD_AIR, *watch.labels)
            KSR.notice(f"edge: call-id={call_id} dead air: only silence from the agent "
                       f"{(now_ms - watch.answered_ms) / 1000:.1f} s after the answer\n")
            fields = {"media_dead_air_s": str(w.settings.dead_air_s)}
        else:
            continue
        stop(w, call_id, unsubscribe=True)
        w.voice[call_id] = None  # measured: not watched again
        if watch.heard:
            KSR.htable.sht_rm(cs.FIRST_AUDIO_TABLE, call_id)
        try:
            w.open_store().record_media(call_id, fields)
        except StoreUnavailable as exc:
            KSR.err(f"edge: cannot record the first voice of call-id={call_id}: {exc}\n")
