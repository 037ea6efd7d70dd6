"""Runtime settings of the routing plugin, as rendered into the run directory.

``edgectl config render`` writes ``routing.json`` from the settings file; the
plugin reads it once per Kamailio process (path in ``BYOC_EDGE_RUNTIME``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields

__all__ = ["RuntimeSettings", "ENV_VAR", "ADMISSION_MARGIN_S", "load"]

#: Margin (s) of the admission lease over one hop's transaction timers (fr_timer + fr_inv_timer):
#: the INVITE may wait that long in Kamailio's queues and redis before its timers start.
ADMISSION_MARGIN_S = 30

#: Environment variable holding the path of ``routing.json``.
ENV_VAR = "BYOC_EDGE_RUNTIME"


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """What the routing plugin needs at run time.

    Attributes:
        node: this edge node's id (lease members, call records).
        redis_host, redis_port, redis_db, redis_password: the routing store.
        redis_timeout_ms: per-command socket timeout (ms); bounds the 503 when redis hangs.
        redis_connect_timeout_ms: connect timeout (ms).
        redis_sentinels: ``(host, port)`` of each Sentinel of the routing store; empty: ``redis_host``
            and ``redis_port`` are the redis server (:func:`routing.tables.connection.connect`).
        redis_master_name: the master's name in the Sentinels' configuration.
        redis_sentinel_password: the Sentinels' own password, if any.
        redis_strict_wait_ms: 0, or how long (ms) each admission and each answer's lease extension waits
            for one replica to acknowledge it (``WAIT 1``); an admission no replica acknowledged in
            time is refused 503 (``redis.strict_admission``, :class:`routing.tables.store.RedisStore`).
        lease_ttl_s: longest an answered call may hold a concurrency slot (s); the dialog
            module's ``default_timeout`` plus a margin.  The answer extends the admission's
            lease to it (``RedisStore.update_call``).
        admission_ttl_s: how long a call not yet answered holds its slots (s): one hop's
            ``fr_timer`` + ``fr_inv_timer`` + :data:`ADMISSION_MARGIN_S`, renewed on each failover.
            An admission whose INVITE is abandoned (the caller gave up, the transaction or
            dialog vanished, redis hung) frees its slots by itself after this long.
        retry_after_s: Retry-After sent with 503 refusals (s).
        python_paths: directories added to ``sys.path`` (the venv's site-packages).
        blocked_prefixes: E.164 prefixes no agent may reach on any trunk (premium, satellite...).
        scanner_user_agents: lower-case User-Agent fragments of scanners, banned at once.
        secret_key_file: key that decrypts trunk passwords.
        auth_realm: digest realm (RFC 3261 section 22.1).
        auth_max_failures: failed digest attempts from one source before it is banned.
        trace_ttl_s: how long a refused call's record is kept for ``edgectl explain`` (s); 0 = not kept.
        reg_contacts: (transport, ``host:port``) of the edge's first listener per transport: the
            Contact address of registrations to carriers.
        reg_timer_interval_s: the ``uac`` module's ``reg_timer_interval`` (s).
        reg_sync_interval_s: how often registrations are synced with redis and published (s).
        tls_enabled: the node has a TLS listener (tls hops name their trunk for its CA profile).
        dtmf_default: DTMF mode of trunks and agents without their own (``rfc4733``, ``info``, ``inband``).
        dtmf_duration_ms: length of a digit played from an INFO without Duration (ms).
        dtmf_volume_db: level of played DTMF tones (dB below full scale).
        cdr_retention_s: how long call records stay in redis (s).
        cdr_stranger_retention_s: how long records of refusals that matched no trunk and no agent stay (s).
        cdr_spool_dir: where call records wait while redis is unreachable.
        cdr_max_records: most call records kept in redis (``cdr.redis_max_records``).
        cdr_outbox: the node's outbox key when a durable store drains the records (``cdr.store``
            postgres or jsonl), else empty.
        dtmf_log_port: UDP port on 127.0.0.1 of rtpengine's DTMF event reports; 0 = off.
        loop_socket: ``udp:host:port`` of the edge's first UDP listener (its real address, not the
            advertised one): where the edge sends the in-dialog requests it makes on a side's behalf
            (DTMF INFO) so they pass its own request route; empty when no UDP listener.
        metrics_port: TCP port of the metrics listener (xhttp_prom serves ``/metrics`` only there).
        media_trunk, media_agent: node default media policy of carrier and agent sides
            (:meth:`routing.tables.model.MediaPolicy.to_json` form).
        media_check_interval_s: seconds between two rtpengine queries of one answered call.
        media_quality_ttl_s: lifetime of a call's media quality record after the call (s).
        media_fill: rtpengine fills silences (``media.fill_delay_ms`` > 0), so sides' ``fill_silence`` applies.
        rtpengine_ng_host, rtpengine_ng_port: rtpengine's ng control socket (UDP).
        rtpengine_nodes: the rtpengine set used instead of it, ``(address, ng port, weight)`` per node
            (settings ``rtpengine.nodes``; empty: the local rtpengine above); ``rtpengine_disable_s``: how
            long a node found dead gets no new call (s) (routing/kamailio/rtpset.py).
        media_sides: rtpengine has one interface per side, named ``carrier`` and ``agent``: every
            offer and answer names them (:func:`routing.call.sides.direction_flags`).
        media_private_networks: CIDRs treated as private by :func:`routing.call.media.nat_flags`
            (empty: its default).
        sip_sockets: ``{side: {transport: "proto:address:port"}}``, the socket requests toward
            each side leave from (:func:`routing.call.sides.side_sockets`); empty on a one-network edge.
        shed_high_bytes, shed_low_bytes: SIP receive backlog (bytes) above which the share of new
            calls shed rises, below which it falls (:class:`routing.call.overload.ShedControl`); 0 = off.
        shed_sockets: ``(address, port)`` of each UDP listener, whose backlog is measured.
        failover_timeout_ms: tm's ``fr_timer`` (ms): no reply at all from a hop for this long fails it over.
        ringing_timeout_ms: tm's ``fr_inv_timer`` (ms): no final answer this long after a hop's first provisional fails it.
        first_audio_poll_ms: how often the agent's first RTP packet is looked for after the answer (ms); 0 = off.
        dead_air_s: no RTP from the agent this long after the answer is dead air (s).
        first_voice: on a call whose agent's stream rtpengine transcodes, the agent's first non-silent
            audio is measured (needs ``first_audio_poll_ms``; routing.kamailio.firstvoice).
        voice_threshold_dbov: a 20 ms frame at or above this level is the agent's voice (dBov).
        stir_key_file, stir_cert_url: STIR/SHAKEN signing key (path) and certificate URL; empty = off.
        stir_verify_dir: where the monitor keeps the certificates inbound Identity headers are checked
            against (settings ``stir.verify``); empty = no check.  ``stir_verify_http``: http:// URLs
            are fetched too; ``stir_verify_max_age_s``: a cached certificate older is not used (s);
            ``stir_verify_expire_s``: a PASSporT whose ``iat`` is older is invalid (s).
        announcements_dir: where a DID's ``announce:NAME`` fallback finds ``NAME.wav`` (read by rtpengine).
        announcement_max_s: the longest an announcement plays before the final refusal (s).
        transfer_bye_delay_s: after a carrier's final 2xx NOTIFY of a relayed REFER, seconds the
            agent has to send BYE before the edge ends the call itself.
    """

    node: str = "edge1"
    redis_host: str = "127.0.0.1"
    redis_port: int = 6380
    redis_db: int = 0
    redis_password: str | None = None
    redis_timeout_ms: int = 200
    redis_connect_timeout_ms: int = 200
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_master_name: str = ""
    redis_sentinel_password: str | None = None
    redis_strict_wait_ms: int = 0
    lease_ttl_s: int = 14460
    admission_ttl_s: int = 93
    retry_after_s: int = 5
    python_paths: tuple[str, ...] = ()
    blocked_prefixes: tuple[str, ...] = ()
    scanner_user_agents: tuple[str, ...] = ()
    secret_key_file: str = ""
    auth_realm: str = "byoc-edge"
    auth_max_failures: int = 5
    trace_ttl_s: int = 3600
    reg_contacts: tuple[tuple[str, str], ...] = ()
    reg_timer_interval_s: int = 10
    reg_sync_interval_s: int = 5
    tls_enabled: bool = False
    dtmf_default: str = "rfc4733"
    dtmf_duration_ms: int = 250
    dtmf_volume_db: int = 8
    cdr_retention_s: int = 14 * 86400
    cdr_stranger_retention_s: int = 2 * 86400
    cdr_spool_dir: str = "/var/spool/byoc-edge/cdr"
    cdr_max_records: int = 0
    cdr_outbox: str = ""
    dtmf_log_port: int = 0
    loop_socket: str = ""
    metrics_port: int = 9161
    media_trunk: dict | None = None
    media_agent: dict | None = None
    media_check_interval_s: int = 2
    media_quality_ttl_s: int = 86400
    media_fill: bool = False
    rtpengine_ng_host: str = "127.0.0.1"
    rtpengine_ng_port: int = 2223
    rtpengine_nodes: tuple[tuple[str, int, int], ...] = ()
    rtpengine_disable_s: int = 5
    media_sides: bool = False
    media_private_networks: tuple[str, ...] = ()
    sip_sockets: dict | None = None
    shed_high_bytes: int = 0
    shed_low_bytes: int = 0
    shed_sockets: tuple[tuple[str, int], ...] = ()
    transfer_bye_delay_s: int = 2
    failover_timeout_ms: int = 3000
    ringing_timeout_ms: int = 60000
    first_audio_poll_ms: int = 0
    dead_air_s: int = 5
    first_voice: bool = False
    voice_threshold_dbov: int = -40
    stir_key_file: str = ""
    stir_cert_url: str = ""
    stir_verify_dir: str = ""
    stir_verify_http: bool = False
    stir_verify_max_age_s: int = 86400
    stir_verify_expire_s: int = 60
    announcements_dir: str = "/var/lib/byoc-edge/announcements"
    announcement_max_s: int = 30


def load(path: str | None = None) -> RuntimeSettings:
    """Read ``routing.json``; unknown keys are ignored, missing ones take defaults.

    Raises:
        OSError: the file cannot be read.
        ValueError: it is not JSON, or not a JSON object.
    """
    path = path or os.environ.get(ENV_VAR, "")
    if not path:
        return RuntimeSettings()
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    known = {f.name for f in fields(RuntimeSettings)}
    values = {k: v for k, v in data.items() if k in known}
    for name in ("python_paths", "blocked_prefixes", "scanner_user_agents", "media_private_networks"):
        if name in values:
            values[name] = tuple(values[name])
    if "redis_sentinels" in values:
        values["redis_sentinels"] = tuple((h, int(p)) for h, p in values["redis_sentinels"])
    if "shed_sockets" in values:
        values["shed_sockets"] = tuple((a, int(p)) for a, p in values["shed_sockets"])
    if "reg_contacts" in values:
        values["reg_contacts"] = tuple(tuple(pair) for pair in values["reg_contacts"])
    if "rtpengine_nodes" in values:
        values["rtpengine_nodes"] = tuple((h, int(p), int(w)) for h, p, w in values["rtpengine_nodes"])
    return RuntimeSettings(**values)
