"""Render every config of an edge node from its settings with jinja2 (StrictUndefined).

Output files in ``settings.run_dir``: ``kamailio.cfg``, ``rtpengine.conf``,
``redis.conf``, ``routing.json`` (the plugin's runtime settings) and ``tls.cfg``.  The same
templates in ``templates/`` serve ``edgectl`` and the Ansible roles.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import sysconfig
from dataclasses import asdict
from typing import Sequence
from pathlib import Path

import jinja2

from routing.call import metrics, sides
from routing.call.headers import IDENTITY_HEADERS
from routing.kamailio import callstate
from routing.ops.drain import DRAIN_FILE
from routing.ops.rtpnodes import sock_param
from routing.ops.runtime import ADMISSION_MARGIN_S, RuntimeSettings
from routing.ops.settings import REPO_ROOT, Settings
from routing.tables import keys

__all__ = ["TEMPLATE_DIR", "ENTRY_SCRIPT", "KAMAILIO_MODULES", "OUTPUTS", "render", "render_rtpengine", "render_to_dir", "runtime_settings",
           "render_sentinel", "SENTINEL_DOWN_AFTER_MS", "SENTINEL_FAILOVER_TIMEOUT_MS"]

TEMPLATE_DIR = REPO_ROOT / "templates"
ENTRY_SCRIPT = REPO_ROOT / "kamailio" / "edge.py"
KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
#: db_text directory holding the empty ``uacreg`` table shipped by Debian's kamailio package: the uac
#: module needs a table to enable registrations; the edge adds them over RPC and never writes it
UACREG_DB_DIR = "/usr/share/kamailio/dbtext/kamailio"
#: output file -> template
OUTPUTS = {
    "kamailio.cfg": "kamailio.cfg.j2",
    "rtpengine.conf": "rtpengine.conf.j2",
    "redis.conf": "redis.conf.j2",
    "routing.json": "routing.json.j2",
    "tls.cfg": "tls.cfg.j2",
    "monitor.json": "monitor.json.j2",
}


def runtime_settings(settings: Settings) -> RuntimeSettings:
    """The routing plugin's view of the settings (written as ``routing.json``)."""
    site_packages = sysconfig.get_paths()["purelib"]
    return RuntimeSettings(
        node=settings.node,
        redis_host=settings.redis.host,
        redis_port=settings.redis.port,
        redis_db=settings.redis.db,
        redis_password=settings.redis.password,
        redis_timeout_ms=settings.redis.timeout_ms,
        redis_connect_timeout_ms=settings.redis.connect_timeout_ms,
        redis_sentinels=settings.redis.sentinel_addresses,
        redis_master_name=settings.redis.master_name if settings.redis.sentinels else "",
        redis_sentinel_password=settings.redis.sentinel_password,
        redis_strict_wait_ms=settings.redis.replica_wait_ms if settings.redis.strict_admission else 0,
        lease_ttl_s=settings.sip.max_call_duration_s + 60,
        admission_ttl_s=admission_ttl_s(settings),
        retry_after_s=settings.limits.retry_after_s,
        python_paths=(str(REPO_ROOT), site_packages),
        blocked_prefixes=tuple(settings.policy.blocked_prefixes),
        scanner_user_agents=tuple(ua.lower() for ua in settings.security.scanner_user_agents),
        secret_key_file=str(settings.secret_key_path),
        auth_realm=settings.security.auth_realm,
        auth_max_failures=settings.security.auth_max_failures,
        trace_ttl_s=settings.diagnostics.trace_ttl_s,
        reg_contacts=registration_contacts(settings),
        reg_timer_interval_s=settings.registration.timer_interval_s,
        reg_sync_interval_s=settings.registration.sync_interval_s,
        tls_enabled=settings.tls_enabled,
        dtmf_default=settings.dtmf.default_mode,
        dtmf_duration_ms=settings.dtmf.duration_ms,
        dtmf_volume_db=settings.dtmf.volume_db,
        cdr_retention_s=settings.cdr.retention_days * 86400,
        cdr_stranger_retention_s=settings.cdr.stranger_retention_days * 86400,
        cdr_spool_dir=str(settings.cdr_spool_path),
        cdr_max_records=settings.cdr.redis_max_records,
        cdr_outbox=keys.cdr_outbox(settings.node) if settings.cdr.durable else "",
        dtmf_log_port=settings.dtmf.log_port,
        loop_socket=loop_socket(settings),
        metrics_port=settings.metrics.kamailio_port,
        media_trunk=settings.media.trunk.model_dump(mode="json"),
        media_agent=settings.media.agent.model_dump(mode="json"),
        media_check_interval_s=settings.media.check_interval_s,
        media_quality_ttl_s=settings.media.quality_ttl_s,
        media_fill=settings.media.fill_delay_ms > 0,
        rtpengine_ng_host="127.0.0.1",
        rtpengine_ng_port=settings.rtpengine.ng_port,
        rtpengine_nodes=tuple((n.address, n.ng_port, n.weight) for n in settings.rtpengine.nodes),
        rtpengine_disable_s=settings.rtpengine.disable_s,
        media_sides=settings.rtpengine.sides is not None,
        media_private_networks=tuple(settings.media.private_networks),
        shed_high_bytes=settings.overload.shed_backlog_kb * 1024,
        shed_low_bytes=settings.overload.resume_backlog_kb * 1024,
        shed_sockets=tuple((l.address, l.port) for l in settings.sip.listen if l.transport == "udp"),
        transfer_bye_delay_s=settings.sip.transfer_bye_delay_s,
        failover_timeout_ms=settings.sip.failover_timeout_ms,
        ringing_timeout_ms=settings.sip.ringing_timeout_ms,
        first_audio_poll_ms=settings.media.first_audio_poll_ms,
        dead_air_s=settings.media.dead_air_s,
        first_voice=settings.media.first_voice,
        voice_threshold_dbov=settings.media.voice_threshold_dbov,
        stir_key_file=str(settings.stir.key_file) if settings.stir.enabled else "",
        stir_cert_url=settings.stir.cert_url if settings.stir.enabled else "",
        stir_verify_dir=str(settings.stir.cert_dir(settings.run_dir)) if settings.stir.verify else "",
        stir_verify_http=settings.stir.verify_http,
        stir_verify_max_age_s=settings.stir.verify_max_age_s,
        stir_verify_expire_s=settings.stir.verify_expire_s,
        announcements_dir=str(settings.media.announcements_dir),
        announcement_max_s=settings.media.announcement_max_s,
        sip_sockets=sides.side_sockets(
            (l.transport, sip_host(l.address), l.port, l.side) for l in settings.sip.listen) or None,
    )


def admission_ttl_s(settings: Settings) -> int:
    """Lifetime (s) of the slots of a call not yet answered (``RuntimeSettings.admission_ttl_s``):
    one hop's tm ``fr_timer`` + ``fr_inv_timer``, rounded up, + ``ADMISSION_MARGIN_S``."""
    hop_ms = settings.sip.failover_timeout_ms + settings.sip.ringing_timeout_ms
    return -(-hop_ms // 1000) + ADMISSION_MARGIN_S


def topology_key(settings: Settings) -> str:
    """The topoh ``mask_key``: derived from the secret key file (HMAC-SHA256), so it is stable across
    renders and restarts and differs per secret; a fixed per-node value until that file exists."""
    try:
        secret = Path(settings.secret_key_path).read_bytes()
    except OSError:
        secret = b""
    return hmac.new(secret or settings.node.encode(), b"byoc-edge topoh mask_key", hashlib.sha256).hexdigest()


def loop_socket(settings: Settings) -> str:
    """``udp:host:port`` of the first UDP listener's own address (see RuntimeSettings.loop_socket)."""
    for listener in settings.sip.listen:
        if listener.transport == "udp":
            return f"udp:{sip_host(listener.address)}:{listener.port}"
    return ""


def registration_contacts(settings: Settings) -> tuple[tuple[str, str], ...]:
    """(transport, ``host:port``) of the first listener of each transport, its ``advertise``
    address first: where carriers reach the edge's registered Contact (agent-only listeners never)."""
    out: dict[str, str] = {}
    for listener in settings.sip.listen:
        if listener.side == "agent":
            continue  # carriers never see an agent-only address (a sided edge has a carrier or both listener)
        host = sip_host(listener.advertise or listener.address)
        out.setdefault(listener.transport, f"{host}:{listener.port}")
    return tuple(out.items())


def _context(settings: Settings, tls_clients: Sequence[object] = ()) -> dict[str, object]:
    rt = runtime_settings(settings)
    data = settings.model_dump(mode="json")
    data["rtpengine"]["ng_address"] = "127.0.0.1"
    data["rtpengine"]["sock"] = sock_param(settings.rtpengine.nodes)  # "" without a set
    data["run_dir"] = str(settings.run_dir)
    data["module_path"] = KAMAILIO_MODULES
    data["uacreg_db_dir"] = UACREG_DB_DIR
    data["tls_clients"] = list(tls_clients)
    data["topoh_key"] = topology_key(settings)
    data["topoh_ip"] = settings.security.topology_mask_ip or sip_host(
        dict(rt.reg_contacts).get("udp", rt.reg_contacts[0][1]).rsplit(":", 1)[0]).strip("[]")
    data["entry_script"] = str(ENTRY_SCRIPT)
    data["tls_enabled"] = settings.tls_enabled
    data["tls_certificate"] = str(settings.tls_certificate)
    data["tls_private_key"] = str(settings.tls_private_key)
    data["aliases"] = sorted({l.advertise for l in settings.sip.listen if l.advertise})
    data["routing"] = _asdict(rt)
    data["settings_json"] = settings.model_dump_json(indent=2)
    data["reg_contact"] = dict(rt.reg_contacts).get("udp") or rt.reg_contacts[0][1]
    data["prom_modparams"] = metrics.modparams()
    data["names"] = callstate.template_names()
    data["drain_file"] = DRAIN_FILE
    data["scanner_re"] = "|".join(_ere_escape(ua) for ua in rt.scanner_user_agents if '"' not in ua)
    data["policy_headers_re"] = "^(X-|" + "|".join(sorted(_ere_escape(h) for h in IDENTITY_HEADERS)) + ")"
    return data


def _ere_escape(text: str) -> str:
    """``text`` as a literal inside a POSIX extended regular expression (Kamailio's ``=~``)."""
    # ^ and \ have no bracket form that survives the cfg string: any character stands for them
    return "".join("." if c in "^\\" else f"[{c}]" if c in ".[]()*+?{}|$" else c for c in text)


def _asdict(rt: RuntimeSettings) -> dict[str, object]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(rt).items()}


def sip_host(address: str) -> str:
    """An address as written in SIP and Kamailio configs: IPv6 in brackets (RFC 3261 section 25.1)."""
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def render(settings: Settings, tls_clients: Sequence[object] = ()) -> dict[str, str]:
    """Render all configs in memory: file name -> text.

    Args:
        tls_clients: per-trunk TLS client profiles (:class:`routing.ops.tlsprofiles.ClientProfile`)
            written into ``tls.cfg``; none by default (they come from redis, see
            :func:`routing.ops.tlsprofiles.refresh`).

    Raises:
        jinja2.UndefinedError: a template uses a value the settings do not provide.
    """
    env = _environment()
    context = _context(settings, tls_clients)
    return {name: env.get_template(template).render(**context) for name, template in OUTPUTS.items()}


def render_rtpengine(settings: Settings, ng_address: str = "127.0.0.1") -> str:
    """``rtpengine.conf`` alone (``templates/rtpengine.conf.j2``, as :func:`render` writes it), with its
    ng (UDP) and cli (TCP) listeners on ``ng_address`` instead of ``127.0.0.1``: the config of an
    rtpengine on a host of its own, which the edge nodes reach over the network (a node of their
    ``rtpengine.nodes``, docs/media.md#rtpengine-sets).

    Args:
        ng_address: an IPv4 or IPv6 literal (IPv6 is written in brackets, rtpengine's ``listen-ng``
            syntax, rtpengine 10.5 ``docs/rtpengine.md``).

    Raises:
        ValueError: ``ng_address`` is not an IP address literal.
    """
    ipaddress.ip_address(ng_address)
    context = _context(settings)
    context["rtpengine"]["ng_address"] = sip_host(ng_address)
    return _environment().get_template(OUTPUTS["rtpengine.conf"]).render(**context)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["sip_host"] = sip_host
    return env


#: Sentinel's ``down-after-milliseconds``: how long (ms) the master may not answer before a Sentinel
#: takes it as down.  With the election and the promotion (about 1-2 s more), new calls are admitted
#: again within 10 s of the master's death (measured: tests/integration/test_sentinel.py); lower it
#: and a slow master (a long fork for a snapshot, a network blip) causes failovers.
SENTINEL_DOWN_AFTER_MS = 2000
#: Sentinel's ``failover-timeout`` (ms): how long a failover may take before another Sentinel may
#: try it again (twice this), and the limit for replicas to follow the new master.
SENTINEL_FAILOVER_TIMEOUT_MS = 10000


def render_sentinel(master_host: str, master_port: int, port: int = 26379, bind: str = "0.0.0.0",
                    data_dir: str = "/var/lib/redis", master_name: str = "byoc-edge", quorum: int = 2,
                    master_password: str | None = None, sentinel_password: str | None = None,
                    announce_ip: str | None = None, down_after_ms: int = SENTINEL_DOWN_AFTER_MS,
                    failover_timeout_ms: int = SENTINEL_FAILOVER_TIMEOUT_MS) -> str:
    """A Sentinel's config (``templates/sentinel.conf.j2``) for the master ``master_host:master_port``:
    the timing above, ``quorum`` Sentinels to agree the master is down (2 of 3)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    return env.get_template("sentinel.conf.j2").render(sentinel=dict(
        master_host=master_host, master_port=master_port, port=port, bind=bind, dir=data_dir, master_name=master_name,
        quorum=quorum, master_password=master_password, sentinel_password=sentinel_password, announce_ip=announce_ip,
        down_after_ms=down_after_ms, failover_timeout_ms=failover_timeout_ms))


def render_to_dir(settings: Settings) -> Path:
    """Render all configs into ``settings.run_dir`` (created 0755); returns the directory."""
    run_dir = Path(settings.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, text in render(settings).items():
        target = run_dir / name
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    return run_dir
