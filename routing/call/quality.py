"""Media quality and activity of a call, from rtpengine's ``query`` reply (pure functions).

rtpengine reports, per SIP tag (one per call side), its media streams with
``stats`` (packets, bytes, errors received from that side) and ``last packet``
(epoch s), and per SSRC the quality it computed from the RTCP receiver reports
(RFC 3550 section 6.4.1) *sent by* the side with that SSRC, about the stream that
side receives: under ``average MOS`` the averages over the reports that gave a MOS of
``MOS`` (times 10), ``jitter`` (ms), ``packet loss`` (%, the reports' "fraction
lost" as a whole percentage) and ``samples`` (how many reports), and
``cumulative loss`` (packets, the latest report's count) (rtpengine 10.5
``daemon/call_interfaces.c`` ``ng_stats_ssrc``, ``daemon/ssrc.c``
``ssrc_receiver_report``; MOS per ITU-T G.107 E-model as rtpengine implements
it, which needs a round-trip time: the first report of each side, sent before
it received a sender report, gives none).

:func:`summary` flattens that into the redis fields documented in
``docs/redis-schema.md`` (``media_*``); :func:`read` turns those fields (a live
call hash, ``edge:media:{node}:{call-id}`` or a call record's ``media``) back
into numbers; :func:`idle_s` says how long the call has been without RTP, for
the media watchdog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from routing.call.voice import WATCH_TAG_PREFIX

__all__ = ["summary", "idle_s", "last_packet", "packets_from", "read", "CallQuality", "SideQuality", "FIELDS"]

#: the fields :func:`summary` writes, for each side (``caller``/``callee``), then the call-wide ones
SIDE_FIELDS = ("packets", "bytes", "lost", "loss_pct", "jitter_ms", "mos")
FIELDS = tuple(f"media_{side}_{name}" for side in ("caller", "callee") for name in SIDE_FIELDS) + (
    "media_mos", "media_last_packet", "media_updated",
)


def _rtp_streams(tag: dict[str, Any]) -> list[dict[str, Any]]:
    streams = []
    for media in tag.get("medias") or []:
        if media.get("type", "audio") != "audio":
            continue
        for stream in media.get("streams") or []:
            if "RTCP" in (stream.get("flags") or []) and "RTP" not in (stream.get("flags") or []):
                continue
            streams.append(stream)
    return streams


def packets_from(reply: dict[str, Any], tag: str) -> int:
    """RTP packets rtpengine received from the party of ``tag`` (ng ``query`` reply; 0 when it
    knows no such party or nothing came yet)."""
    party = (reply.get("tags") or {}).get(tag) or {}
    return sum(int((stream.get("stats") or {}).get("packets") or 0) for stream in _rtp_streams(party))


def last_packet(reply: dict[str, Any]) -> int:
    """Epoch seconds of the newest RTP packet rtpengine received from any side (0 = none yet)."""
    newest = 0
    for tag in (reply.get("tags") or {}).values():
        for stream in _rtp_streams(tag):
            newest = max(newest, int(stream.get("last packet") or 0))
    return newest


def idle_s(reply: dict[str, Any], now: float, since: float) -> float:
    """Seconds without RTP from every side: ``now`` minus the newest packet, or minus ``since``
    (when the call was answered, epoch s) when that is later or nothing was received.

    rtpengine's own ``timeout`` has the same meaning: a call is dead when *all* its streams are.
    A side that pauses (an agent thinking, in silence suppression) while the other keeps sending
    keeps the call alive."""
    return now - max(last_packet(reply), since)


def _ssrcs(tag: dict[str, Any] | None) -> list[str]:
    """SSRCs of the RTP a side sends (rtpengine lists them under that side's tag)."""
    return [str(s["SSRC"]) for s in _rtp_streams(tag or {}) if s.get("SSRC") is not None]


def _side(reply: dict[str, Any], tag: dict[str, Any], receiver: dict[str, Any] | None) -> dict[str, str]:
    """One side's fields: packets and bytes rtpengine received from ``tag``'s side, and the
    quality of that stream as the other side (``receiver``) reported it.

    rtpengine files each receiver report under the SSRC of the side that *sent the report*
    (rtpengine 10.5 ``daemon/ssrc.c`` ``ssrc_receiver_report``: ``get_ssrc(rr->from, ...)``), so
    the loss, jitter and MOS of a side's stream are under the other side's SSRCs.  Measured
    with real RTCP in ``tests/integration/test_call_quality.py``: dropping the agent's RTP
    shows under the carrier's SSRC."""
    packets = byte_count = 0
    for stream in _rtp_streams(tag):
        stats = stream.get("stats") or {}
        packets += int(stats.get("packets") or 0)
        byte_count += int(stats.get("bytes") or 0)
    lost = loss_pct = jitter = mos = None
    table = reply.get("SSRC") or {}
    for ssrc in _ssrcs(receiver):
        entry = table.get(ssrc)
        if not entry:
            continue
        lost = (lost or 0) + int(entry.get("cumulative loss") or 0)
        average = entry.get("average MOS") or {}
        if average.get("MOS"):
            mos = average["MOS"] / 10.0 if mos is None else min(mos, average["MOS"] / 10.0)
        if average.get("jitter") is not None:
            jitter = max(jitter or 0, int(average["jitter"]))
        if average.get("packet loss") is not None:
            loss_pct = max(loss_pct or 0, int(average["packet loss"]))
    return {
        "packets": str(packets),
        "bytes": str(byte_count),
        "lost": "" if lost is None else str(lost),
        "loss_pct": "" if loss_pct is None else str(loss_pct),
        "jitter_ms": "" if jitter is None else str(jitter),
        "mos": "" if mos is None else f"{mos:.1f}",
    }


def summary(reply: dict[str, Any], caller_tag: str, now: float) -> dict[str, str]:
    """The ``media_*`` fields of a call from a ``query`` (or ``delete``) reply.

    Args:
        reply: rtpengine's reply dictionary (:meth:`routing.ngclient.NgClient.query`).
        caller_tag: the From-tag of the call's INVITE; the other tag is the callee's (a tag of the
            edge's first-voice subscription, :data:`routing.call.voice.WATCH_TAG_PREFIX`, is skipped).
        now: epoch seconds of the reading (``media_updated``).

    Returns:
        ``media_{caller,callee}_{packets,bytes,lost,loss_pct,jitter_ms,mos}`` (the stream the edge
        received from that side; ``lost`` packets, ``loss_pct`` (average % lost per report),
        ``jitter_ms`` and ``mos`` as reported by the RTCP of the side that receives it, empty
        until such a report came), ``media_mos`` (the lower of the two, empty if none),
        ``media_last_packet`` (epoch s, 0 = none), ``media_updated`` (epoch s).  All strings.
    """
    tags = reply.get("tags") or {}
    out: dict[str, str] = {}
    caller = tags.get(caller_tag)
    # the edge's own subscription to the agent's stream (routing.call.voice) is no side of the call
    callee = next((t for key, t in tags.items()
                   if key != caller_tag and key and not key.startswith(WATCH_TAG_PREFIX)), None)
    for side, tag, receiver in (("caller", caller, callee), ("callee", callee, caller)):
        values = _side(reply, tag, receiver) if tag else {name: "" for name in SIDE_FIELDS}
        out.update({f"media_{side}_{name}": value for name, value in values.items()})
    scores = [float(out[f"media_{s}_mos"]) for s in ("caller", "callee") if out[f"media_{s}_mos"]]
    out["media_mos"] = f"{min(scores):.1f}" if scores else ""
    out["media_last_packet"] = str(last_packet(reply))
    out["media_updated"] = str(int(now))
    return out


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


def _float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


@dataclass(frozen=True, slots=True)
class SideQuality:
    """The stream the edge received from one side (see :func:`summary` for the sources).

    Attributes:
        packets: RTP packets received from that side (RTCP not counted).
        bytes: bytes of those packets.
        lost: packets of that stream the receiving side reported lost (cumulative); None before
            an RTCP report came (a short call, or endpoints that send no RTCP).
        loss_pct: average share lost per report interval (whole %, 0-100); None as ``lost``.
        jitter_ms: average interarrival jitter (ms); None as ``lost``.
        mos: average MOS (1.0-4.5); None until a report with a round-trip time came.
    """

    packets: int
    bytes: int
    lost: int | None
    loss_pct: int | None
    jitter_ms: int | None
    mos: float | None


@dataclass(frozen=True, slots=True)
class CallQuality:
    """A call's media quality, read back from its ``media_*`` fields by :func:`read`.

    Attributes:
        caller: the stream from the side that sent the INVITE (the carrier on origination).
        callee: the stream from the other side.
        mos: the lower of the two sides' MOS; None when neither is known.
        last_packet: epoch seconds of the newest RTP packet from any side (0 = none).
        updated: epoch seconds of the reading.
        end_reason: ``media_end_reason`` (``rtp_timeout``, ``policy:<tag>``, ``sip_keepalive``)
            when the edge ended the call for its media, else None.
    """

    caller: SideQuality
    callee: SideQuality
    mos: float | None
    last_packet: int
    updated: int
    end_reason: str | None = None


def read(fields: Mapping[str, Any]) -> CallQuality | None:
    """The quality in a mapping of ``media_*`` fields: a live call hash, the kept
    ``edge:media:{node}:{call-id}`` hash, or the ``media`` dict of a call record
    (``edgectl cdr show``); other keys are ignored.

    Returns:
        None when no quality reading was ever taken (no ``media_updated``: a call that was
        not answered, or ended before the media watchdog's first reading).

    Raises:
        ValueError: a field that is not the number :func:`summary` writes.
    """
    if fields.get("media_updated") in (None, ""):
        return None
    sides = []
    for side in ("caller", "callee"):
        def get(name: str) -> str | None:
            value = fields.get(f"media_{side}_{name}")
            return None if value is None else str(value)
        sides.append(SideQuality(
            packets=_int(get("packets")) or 0, bytes=_int(get("bytes")) or 0, lost=_int(get("lost")),
            loss_pct=_int(get("loss_pct")), jitter_ms=_int(get("jitter_ms")), mos=_float(get("mos")),
        ))
    return CallQuality(
        caller=sides[0], callee=sides[1], mos=_float(fields.get("media_mos")),
        last_packet=_int(fields.get("media_last_packet")) or 0, updated=int(fields["media_updated"]),
        end_reason=fields.get("media_end_reason") or None,
    )
