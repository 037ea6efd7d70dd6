"""Media quality and activity of a call, from rtpengine's ``query`` reply (pure functions).

rtpengine reports, per SIP tag (one per call side), its media streams with
``stats`` (packets, bytes, errors received from that side) and ``last packet``
(epoch s), and per SSRC the quality it computed from the RTCP reports: ``MOS``
(times 10), ``jitter`` (ms), ``packet loss`` (%) and ``cumulative loss``
(packets) (rtpengine ``daemon/call_interfaces.c``, ``ng_stats_ssrc``; MOS from
RTCP per ITU-T G.107 E-model as rtpengine implements it).

:func:`summary` flattens that into the redis fields documented in
``docs/redis-schema.md`` (``media_*``); :func:`idle_s` says how long the call
has been without RTP, for the media watchdog.
"""

from __future__ import annotations

from typing import Any

__all__ = ["summary", "idle_s", "last_packet", "FIELDS"]

#: the fields :func:`summary` writes, for each side (``caller``/``callee``), then the call-wide ones
SIDE_FIELDS = ("packets", "bytes", "lost", "jitter_ms", "mos")
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


def _side(reply: dict[str, Any], tag: dict[str, Any]) -> dict[str, str]:
    packets = byte_count = 0
    ssrcs = []
    for stream in _rtp_streams(tag):
        stats = stream.get("stats") or {}
        packets += int(stats.get("packets") or 0)
        byte_count += int(stats.get("bytes") or 0)
        if stream.get("SSRC") is not None:
            ssrcs.append(str(stream["SSRC"]))
    lost = jitter = mos = None
    table = reply.get("SSRC") or {}
    for ssrc in ssrcs:
        entry = table.get(ssrc)
        if not entry:
            continue
        lost = (lost or 0) + int(entry.get("cumulative loss") or 0)
        average = entry.get("average MOS") or {}
        if average.get("MOS"):
            mos = average["MOS"] / 10.0 if mos is None else min(mos, average["MOS"] / 10.0)
        if average.get("jitter") is not None:
            jitter = max(jitter or 0, int(average["jitter"]))
    return {
        "packets": str(packets),
        "bytes": str(byte_count),
        "lost": "" if lost is None else str(lost),
        "jitter_ms": "" if jitter is None else str(jitter),
        "mos": "" if mos is None else f"{mos:.1f}",
    }


def summary(reply: dict[str, Any], caller_tag: str, now: float) -> dict[str, str]:
    """The ``media_*`` fields of a call from a ``query`` (or ``delete``) reply.

    Args:
        reply: rtpengine's reply dictionary (:meth:`routing.ngclient.NgClient.query`).
        caller_tag: the From-tag of the call's INVITE; the other tag is the callee's.
        now: epoch seconds of the reading (``media_updated``).

    Returns:
        ``media_{caller,callee}_{packets,bytes,lost,jitter_ms,mos}`` (received by the edge from
        that side; lost/jitter/MOS empty until RTCP reports came), ``media_mos`` (the lower of the
        two, empty if none), ``media_last_packet`` (epoch s, 0 = none), ``media_updated`` (epoch s).
    """
    tags = reply.get("tags") or {}
    out: dict[str, str] = {}
    callee = next((t for key, t in tags.items() if key != caller_tag and key), None)
    for side, tag in (("caller", tags.get(caller_tag)), ("callee", callee)):
        values = _side(reply, tag) if tag else {name: "" for name in SIDE_FIELDS}
        out.update({f"media_{side}_{name}": value for name, value in values.items()})
    scores = [float(out[f"media_{s}_mos"]) for s in ("caller", "callee") if out[f"media_{s}_mos"]]
    out["media_mos"] = f"{min(scores):.1f}" if scores else ""
    out["media_last_packet"] = str(last_packet(reply))
    out["media_updated"] = str(int(now))
    return out
