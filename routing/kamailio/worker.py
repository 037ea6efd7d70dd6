"""Per-process state of the plugin, and the small ``KSR`` helpers every stage uses.

Kamailio forks its workers after ``mod_init``: one :class:`Worker` is made before the fork
(:func:`routing.kamailio.entry.mod_init`), so every process starts with the same settings and node
token, and each opens its own redis client in :meth:`Worker.child_init`, after the fork
(app_python3, Kamailio 5.6).  The stage modules (``invite``, ``failure``, ``replies``, ...) are
functions over a :class:`Worker`.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
import traceback
from typing import Any

import KSR  # type: ignore[import-not-found]
import redis

# non-Kamailio modules, in one place
from ..call import media
from ..call import metrics
from ..ops import runtime
from ..call.cdr import CallFacts, build_record, sdp_codecs
from ..tables.cdrstore import CdrStore, CdrWriter, Spool
from ..tables.spend import SpendAccrual
from ..call.decision import Reason, Reject
from ..call.explain import refusal_record
from ..call.headers import header_names
from ..ngclient import NgClient
from ..call.plan import CallPlan
from ..call.request import SipRequest, telephone_user
from ..ops.secrets import SecretBox
from ..tables.store import RedisStore, Topology, connect

__all__ = ["Worker", "pv", "has_sdp", "count", "observe", "log_reject", "log_exception", "hop_labels"]


def pv(name: str) -> str:
    """A pseudo-variable as text (``""`` when Kamailio has none)."""
    value = KSR.pv.get(name)
    return "" if value is None else str(value)


def has_sdp() -> bool:
    """Whether the current message carries an ``application/sdp`` body (textops)."""
    return KSR.textops.has_body_type("application/sdp") > 0


def count(metric: metrics.Metric, *labels: str) -> None:
    """Add 1 to a counter of :mod:`routing.metrics` (xhttp_prom, shared memory)."""
    getattr(KSR.xhttp_prom, f"counter_inc_l{len(labels)}")(metric.name, 1, *labels)


def observe(metric: metrics.Metric, seconds: float, *labels: str) -> None:
    """Observe a duration (s) in a histogram of :mod:`routing.metrics`."""
    getattr(KSR.xhttp_prom, f"histogram_observe_l{len(labels)}")(metric.name, f"{max(seconds, 0.0):.6f}", *labels)


def hop_labels(plan: CallPlan) -> tuple[str, str, str]:
    """(direction, trunk, agent) label values of the plan's current hop."""
    return plan.direction, metrics.label(plan.current.trunk or plan.trunk), metrics.label(plan.agent)


def log_reject(reject: Reject, where: str) -> None:
    """Every refusal of the edge, in one place: the log line ``edge: reject <code> <tag> <where> ...``
    and ``byoc_edge_rejections_total{reason=<tag>}``, so the log and the metric always agree."""
    KSR.info(
        f"edge: reject {reject.code} {reject.tag} {where} call-id={pv('$ci')} src={pv('$si')}:{pv('$sp')}\n"
    )
    count(metrics.REJECTIONS, reject.tag)


def log_exception(what: str) -> None:
    """Log the exception being handled once, on one line: ``edge: {what}: {traceback | ...}``."""
    KSR.err(f"edge: {what}: " + traceback.format_exc().replace("\n", " | ") + "\n")


class Worker:
    """What one Kamailio process keeps between messages.

    Args:
        settings: runtime settings from ``routing.json``.

    Attributes:
        settings: the runtime settings.
        private_networks: CIDRs :func:`routing.media.nat_flags` treats as private.
        store: this process's redis store (opened by :meth:`child_init`, or lazily by :meth:`open_store`).
        writer / ngclient / box: the call-record writer, rtpengine ng client, secret box (made on first use).
        topology / topology_at: trunks and agents cached for the screening (``time.monotonic`` s).
        trust_of / trust: the screening's answers per source address for the copy ``trust_of``.
        store_failed: redis did not answer earlier in the current request (the trust check).
        registered: uac registrations this process added: uuid -> fingerprint (timer process only).
        msg: the message object of the current entry (``msg.call_function`` reaches cfg-only functions).
        now_ms: when the current entry started (epoch ms; 0 before the first entry).
        replayed_at: when the call-record spool was last replayed (``time.monotonic`` s).
        dtmf_sock / dtmf_sock_failed: the UDP socket of rtpengine's DTMF events (timer process only).
        voice: Call-ID -> its first-voice watch (:class:`routing.kamailio.firstvoice.VoiceWatch`), or
            None once decided not to watch or done (first-audio timer process only).
        token: made before Kamailio forks, so every process has the same: marks the edge's own requests.
    """

    def __init__(self, settings: runtime.RuntimeSettings) -> None:
        self.settings = settings
        self.private_networks = settings.media_private_networks or media.DEFAULT_PRIVATE_NETWORKS
        self.store: RedisStore | None = None
        self.writer: CdrWriter | None = None
        self.spend: SpendAccrual | None = None
        self.ngclient: NgClient | None = None
        self.ngnodes: dict[str, NgClient] = {}  # with an rtpengine set: a client per node URL (rtpset.py)
        self.rtp_failures: dict[str, int] = {}  # the call clock's failed pings in a row per node (rtpset.py)
        self.box: SecretBox | None = None
        self.topology: Topology | None = None
        self.topology_at = 0.0
        self.trust_of: Topology | None = None
        self.trust: dict[str, bool] = {}
        self.store_failed = False
        self.registered: dict[str, str] = {}
        self.msg: object = None
        self.now_ms = 0
        self.replayed_at = 0.0
        self.dtmf_sock: socket.socket | None = None
        self.dtmf_sock_failed = False
        self.voice: dict[str, Any] = {}
        self.token = secrets.token_hex(16)

    # -- per-process clients ---------------------------------------------------------------

    def child_init(self, rank: int) -> int:
        """Open this worker's redis connection (after the fork, never before)."""
        self.open_store()
        return 0

    def open_store(self) -> RedisStore:
        """This process's store over one redis connection (:func:`routing.tables.store.connect`
        ``single_connection``), opened now if it is not yet.  While redis cannot be reached a store
        over a pooled client is returned instead, not kept: its commands raise
        :class:`~routing.tables.store.StoreUnavailable` as usual, and the next call tries again."""
        if self.store is None:
            s = self.settings
            params = dict(host=s.redis_host, port=s.redis_port, db=s.redis_db, password=s.redis_password,
                          timeout_ms=s.redis_timeout_ms, connect_timeout_ms=s.redis_connect_timeout_ms,
                          sentinels=s.redis_sentinels, master_name=s.redis_master_name,
                          sentinel_password=s.redis_sentinel_password)
            try:
                self.store = RedisStore(connect(**params, single_connection=True), s.node, s.redis_strict_wait_ms)
            except redis.RedisError:
                return RedisStore(connect(**params), s.node, s.redis_strict_wait_ms)
        return self.store

    def cdrs(self) -> CdrWriter:
        """This process's call-record writer (redis, else the spool)."""
        if self.writer is None:
            s = self.settings
            self.writer = CdrWriter(CdrStore(self.open_store().client, s.cdr_retention_s, s.cdr_stranger_retention_s,
                                             s.cdr_max_records, s.cdr_outbox or None),
                                    Spool(s.cdr_spool_dir))
        return self.writer

    def accrual(self) -> SpendAccrual:
        """This process's spend accrual of calls in progress (the call clock's, :mod:`routing.tables.spend`)."""
        if self.spend is None:
            self.spend = SpendAccrual(self.open_store().client, self.settings.node)
        return self.spend

    def ng(self) -> NgClient:
        """This process's rtpengine ng client (timeout 0.5 s)."""
        if self.ngclient is None:
            self.ngclient = NgClient(self.settings.rtpengine_ng_host, self.settings.rtpengine_ng_port, 0.5)
        return self.ngclient

    def ng_at(self, host: str, port: int) -> NgClient:
        """This process's ng client of the rtpengine at ``host:port`` (a node of the set; timeout 0.5 s)."""
        client = self.ngnodes.get(f"{host}:{port}")
        if client is None:
            client = self.ngnodes[f"{host}:{port}"] = NgClient(host, port, 0.5)
        return client

    def secrets(self) -> SecretBox:
        """The box that decrypts trunk passwords (``secret_key_file``)."""
        if self.box is None:
            self.box = SecretBox(self.settings.secret_key_file)
        return self.box

    # -- the current request -----------------------------------------------------------------

    def start(self, msg: object) -> None:
        """A new entry: keep its message object and its start time."""
        self.msg = msg
        self.now_ms = int(time.time() * 1000)

    def snapshot(self) -> SipRequest:
        """The request as :mod:`routing.pipeline` reads it (pseudo-variables, header names)."""
        get = KSR.pv.get  # the text pseudo-variables below are str or None (``$sp`` an int)
        return SipRequest(
            method=get("$rm") or "",
            call_id=get("$ci") or "",
            src_ip=get("$si") or "",
            src_port=int(get("$sp") or 0),
            proto=get("$pr") or "",
            ruri_user=telephone_user(get("$rU") or "", get("$ru") or ""),
            to_user=telephone_user(get("$tU") or "", get("$tu") or ""),
            from_user=get("$fU") or "",
            from_name=get("$fn") or "",
            auth_user=get("$au") or "",
            header_names=tuple(header_names(get("$mb") or "")),
            received_ms=self.now_ms,
            # the carrier's verification of the caller may be in it ("" when the request has none)
            pai=get("$hdr(P-Asserted-Identity)") or "",
        )

    # -- refusals --------------------------------------------------------------------------------

    def reply(self, reject: Reject, stateful: bool = False) -> None:
        """Answer the request with a refusal (``Retry-After`` when it has one), logged, counted and,
        for an initial INVITE, recorded (:meth:`record_refusal`); ``stateful``: through tm."""
        if reject.retry_after_s is not None:
            KSR.hdr.append_to_reply(f"Retry-After: {reject.retry_after_s}\r\n")
        log_reject(reject, "request")
        self.record_refusal(reject)
        if stateful:
            KSR.tm.t_reply(reject.code, reject.reason)
        else:
            KSR.sl.send_reply(reject.code, reject.reason)

    def reply_internal_error(self) -> None:
        """The answer of an entry that failed: 500 (never to an ACK, which has no answer)."""
        if pv("$rm") != "ACK":
            self.reply(Reject.of(Reason.INTERNAL_ERROR))

    def write_record(self, facts: CallFacts) -> None:
        """Build and store one call record; never raises (a record that can be neither
        stored nor spooled is logged whole, so it can be recovered from the log)."""
        self.write_records([facts])

    def write_records(self, facts: list[CallFacts]) -> None:
        """:meth:`write_record` of each, in one redis write (:meth:`CdrWriter.write_many`)."""
        if not facts:
            return
        records = [build_record(f) for f in facts]
        try:
            self.cdrs().write_many(records)
        except Exception:  # noqa: BLE001 - the call must not suffer from its record
            for record in records:
                KSR.err("edge: call record lost (spool failed): " + json.dumps(record) + " | "
                        + traceback.format_exc().replace("\n", " | ") + "\n")

    def record_refusal(self, reject: Reject, tried: list[str] | None = None) -> None:
        """Call record of an initial INVITE the edge refused itself (request route); ``tried``: the
        steps taken first (a fallback announcement)."""
        if pv("$rm") != "INVITE" or KSR.siputils.has_totag() > 0:
            return
        now = int(time.time() * 1000)
        self.write_record(CallFacts(
            node=self.settings.node, call_id=pv("$ci"), cseq=pv("$cs"), start_ms=self.now_ms or now, end_ms=now,
            sip_code=reject.code, sip_reason=reject.reason, reject_tag=reject.tag, direction=reject.direction,
            trunk=reject.trunk, agent=reject.agent, account=reject.account, number=pv("$rU") or pv("$tU"), caller=pv("$fU"),
            codecs_caller=sdp_codecs(pv("$rb")) if has_sdp() else [], tried=list(tried or []),
        ))

    def remember(self, reject: Reject, where: str, request: SipRequest | None = None,
                 tried: tuple[str, ...] | list[str] = ()) -> None:
        """Keep a refused initial INVITE's record for ``edgectl explain`` (one SET with a TTL,
        refusals only); a redis problem here never changes the answer."""
        ttl = self.settings.trace_ttl_s
        if ttl <= 0:
            return
        try:
            req = request or self.snapshot()
            self.open_store().keep_trace(req.call_id, refusal_record(req, reject, self.settings.node, where, tried), ttl)
        except Exception as exc:  # noqa: BLE001 - diagnostics must not fail the call path
            KSR.warn(f"edge: cannot record the refusal of call-id={pv('$ci')}: {exc}\n")
