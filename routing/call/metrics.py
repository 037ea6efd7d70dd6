"""Names, label sets and buckets of the metrics Kamailio exports (``xhttp_prom``), and the pure
helpers that turn call facts into label values.  No ``KSR`` here: :mod:`routing.kamailio` calls
``KSR.xhttp_prom.*`` with these names, and ``templates/kamailio.cfg.j2`` declares them from
:data:`KAMAILIO_METRICS`, so a name is spelled once.

Naming follows the Prometheus conventions (https://prometheus.io/docs/practices/naming/):
base units (seconds), ``_total`` on counters, a ``byoc_edge_`` namespace, and only labels of
low cardinality (``direction``, ``trunk``, ``agent``, ``result``, ``reason``, ``mode``, ``side``): never a
number, a Call-ID or an address.  xhttp_prom (Kamailio 5.6) keeps them in shared memory,
so every worker process adds to the same series, and allows at most three labels each.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Metric",
    "KAMAILIO_METRICS",
    "CALLS_ATTEMPTED",
    "CALLS_ANSWERED",
    "CALLS_FAILED",
    "REJECTIONS",
    "FAILOVERS",
    "POST_DIAL_DELAY",
    "SETUP_TIME",
    "REGISTRATIONS",
    "SIP_BACKLOG",
    "SHED_RATIO",
    "TRANSFERS",
    "CALL_DURATION",
    "CALL_MOS",
    "CALL_PACKET_LOSS",
    "CALL_JITTER",
    "TIME_TO_FIRST_AUDIO",
    "TIME_TO_FIRST_VOICE",
    "DEAD_AIR",
    "quality_observations",
    "DRAINING",
    "DURATION_BUCKETS_S",
    "sip_class",
    "label",
    "modparams",
]

NAMESPACE = "byoc_edge"
#: seconds; PDD and setup time of PSTN calls: from sub-second to the ringing timeout
DURATION_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60)


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric declared to xhttp_prom.

    Attributes:
        name: full metric name (``byoc_edge_calls_attempted_total``).
        kind: ``counter``, ``gauge`` or ``histogram``.
        labels: label names, at most three (xhttp_prom limit), in the order values are passed.
        help: what one unit means (shown in docs and the dashboard).
        buckets: histogram upper bounds (s).
    """

    name: str
    kind: str
    labels: tuple[str, ...]
    help: str
    buckets: tuple[float, ...] = ()

    def modparam(self) -> tuple[str, str]:
        """The ``modparam("xhttp_prom", <param>, <value>)`` pair declaring this metric."""
        value = f"name={self.name};"
        if self.labels:
            value += f" label={':'.join(self.labels)};"
        if self.buckets:
            value += f" buckets={':'.join(f'{b:g}' for b in self.buckets)};"
        return f"prom_{self.kind}", value


CALLS_ATTEMPTED = Metric(
    f"{NAMESPACE}_calls_attempted_total", "counter", ("direction", "trunk", "agent"),
    "Initial INVITEs admitted and relayed (refusals are counted in byoc_edge_rejections_total)",
)
CALLS_ANSWERED = Metric(
    f"{NAMESPACE}_calls_answered_total", "counter", ("direction", "trunk", "agent"),
    "Calls answered (first 2xx to the initial INVITE); trunk is the one that answered",
)
CALLS_FAILED = Metric(
    f"{NAMESPACE}_calls_failed_total", "counter", ("direction", "trunk", "result"),
    "Admitted calls that ended without an answer, by the SIP class of the final response sent to the caller "
    "(result 4xx, 5xx, 6xx; a caller's CANCEL counts as 4xx: 487)",
)
REJECTIONS = Metric(
    f"{NAMESPACE}_rejections_total", "counter", ("reason",),
    "Requests refused by the edge itself, by reason code (routing/call/decision.py Reason tags, limits, policy)",
)
FAILOVERS = Metric(
    f"{NAMESPACE}_failovers_total", "counter", ("direction", "trunk"),
    "Moves to the next target after a failed hop; trunk is the trunk of the hop that failed",
)
POST_DIAL_DELAY = Metric(
    f"{NAMESPACE}_post_dial_delay_seconds", "histogram", ("direction", "trunk"),
    "Post-dial delay: initial INVITE received -> first 18x relayed to the caller (s)", DURATION_BUCKETS_S,
)
SETUP_TIME = Metric(
    f"{NAMESPACE}_setup_time_seconds", "histogram", ("direction", "trunk"),
    "Call setup time: initial INVITE received -> 2xx relayed to the caller (s)", DURATION_BUCKETS_S,
)
REGISTRATIONS = Metric(
    f"{NAMESPACE}_registrations_total", "counter", ("trunk", "result"),
    "REGISTER requests of digest trunks (PBXs registering to the edge), by result (accepted, refused)",
)

SIP_BACKLOG = Metric(
    f"{NAMESPACE}_sip_backlog_bytes", "gauge", (),
    "Bytes of SIP datagrams waiting in the kernel queues of the edge's UDP listeners (SO_MEMINFO rmem_alloc), "
    "read every 20 ms (exported every 100 ms): the load automatic shedding acts on",
)
SHED_RATIO = Metric(
    f"{NAMESPACE}_shed_ratio", "gauge", (),
    "Share of new calls (initial INVITEs) the node refuses with 503 Node Overloaded because of its backlog (0-1)",
)
DRAINING = Metric(
    f"{NAMESPACE}_draining", "gauge", (),
    "1 while the node drains (edgectl drain: new calls and OPTIONS get 503 Node Draining), 0 in service; "
    "set at each scrape from the drain flag",
)

CALL_DURATION = Metric(
    f"{NAMESPACE}_call_duration_seconds", "histogram", ("direction", "trunk", "agent"),
    "Talk time of answered calls, answer -> end (s); sum/count per trunk is the average call duration",
    (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)
CALL_MOS = Metric(
    f"{NAMESPACE}_call_mos_score", "histogram", ("trunk", "agent", "side"),
    "MOS (1-5, rtpengine's estimate from RTCP) of each side's stream at the end of an answered call; side is "
    "carrier or agent (the sender)", (1, 1.5, 2, 2.5, 3, 3.5, 4, 4.3, 4.5, 5),
)
CALL_PACKET_LOSS = Metric(
    f"{NAMESPACE}_call_packet_loss_ratio", "histogram", ("trunk", "agent", "side"),
    "Share of each side's RTP packets lost (0-1) over an answered call, from RTCP; side is the sender",
    (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
)
CALL_JITTER = Metric(
    f"{NAMESPACE}_call_jitter_seconds", "histogram", ("trunk", "agent", "side"),
    "Interarrival jitter of each side's stream at the end of an answered call (s, RTCP); side is the sender",
    (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2),
)

TIME_TO_FIRST_AUDIO = Metric(
    f"{NAMESPACE}_time_to_first_audio_seconds", "histogram", ("direction", "trunk", "agent"),
    "Answer (2xx) -> the first RTP packet rtpengine received from the agent (s, to media.first_audio_poll_ms)",
    (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5),
)
TIME_TO_FIRST_VOICE = Metric(
    f"{NAMESPACE}_time_to_first_voice_seconds", "histogram", ("direction", "trunk", "agent"),
    "Answer (2xx) -> the first 20 ms of the agent's audio at or above media.voice_threshold_dbov (s; transcoded "
    "calls only, routing.call.voice)",
    (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5),
)
DEAD_AIR = Metric(
    f"{NAMESPACE}_dead_air_total", "counter", ("direction", "trunk", "agent"),
    "Answered calls whose agent sent no RTP within media.dead_air_s of the answer, or (transcoded calls) only silence",
)

TRANSFERS = Metric(
    f"{NAMESPACE}_transfers_total", "counter", ("mode", "result"),
    "Agents' transfers (REFER) by mode (refer: relayed to the carrier; bridge: carried out by the edge; attended: "
    "the caller joined with the agent's consult call by the edge) and result: accepted (the carrier's final NOTIFY "
    "sipfrag is 2xx, or the edge joined the caller and the target), failed (a final non-2xx sipfrag, or the edge's "
    "leg failed), refused (the carrier answered the REFER >= 300 and no bridge followed), denied (the edge's "
    "transfer policy refused it)",
)

KAMAILIO_METRICS = (CALLS_ATTEMPTED, CALLS_ANSWERED, CALLS_FAILED, REJECTIONS, FAILOVERS, POST_DIAL_DELAY,
                    SETUP_TIME, REGISTRATIONS, SIP_BACKLOG, SHED_RATIO, TRANSFERS, CALL_DURATION, CALL_MOS,
                    CALL_PACKET_LOSS, CALL_JITTER, TIME_TO_FIRST_AUDIO, TIME_TO_FIRST_VOICE, DEAD_AIR, DRAINING)


def sip_class(code: int) -> str:
    """``"4xx"`` for 486 and so on: the status class of RFC 3261 section 21 (``"unknown"`` outside 1xx-6xx)."""
    return f"{code // 100}xx" if 100 <= code < 700 else "unknown"


def label(value: str | None) -> str:
    """A label value from a trunk/agent name (already restricted to ``[A-Za-z0-9_.-]`` by
    :data:`routing.tables.model.NAME_PATTERN`); ``"none"`` when empty, since xhttp_prom needs a value."""
    return value or "none"


def quality_observations(direction: str, media: dict[str, str]) -> list[tuple[Metric, float, str]]:
    """What an answered call's final media statistics add to the quality histograms: ``(metric,
    value, side)`` for each side that sent RTP, ``side`` being ``carrier`` or ``agent`` (the caller
    is the carrier on origination calls, the agent on termination calls).  Loss and jitter count
    only for a side that sent packets; MOS only when rtpengine scored it.

    Args:
        direction: ``origination`` or ``termination``.
        media: the record's ``media_*`` fields (:func:`routing.call.quality.summary`): ``media_caller_mos``,
            ``media_callee_loss_pct`` (percent), ``media_caller_jitter_ms`` (ms)...
    """
    roles = ("carrier", "agent") if direction != "termination" else ("agent", "carrier")
    out: list[tuple[Metric, float, str]] = []
    for party, side in zip(("caller", "callee"), roles):
        def number(name: str) -> float | None:
            try:
                return float(media.get(f"media_{party}_{name}", ""))
            except ValueError:
                return None
        if (mos := number("mos")) is not None:
            out.append((CALL_MOS, mos, side))
        if (number("packets") or 0) > 0:
            if (loss := number("loss_pct")) is not None:
                out.append((CALL_PACKET_LOSS, loss / 100, side))
            if (jitter := number("jitter_ms")) is not None:
                out.append((CALL_JITTER, jitter / 1000, side))
    return out


def modparams() -> list[tuple[str, str]]:
    """Every xhttp_prom declaration, for the Kamailio template."""
    return [m.modparam() for m in KAMAILIO_METRICS]
