"""The edge monitor process: the Prometheus exporter and the gateway prober.

Started by ``edgectl up`` (``routing/ops/services.py``) as
``python -m routing.monitor <run_dir>/monitor.json``, where ``monitor.json`` is
the node's validated settings.  It serves ``/metrics`` on
``metrics.address:metrics.exporter_port`` (:class:`routing.monitor.exporter.EdgeCollector`
plus the prober's counters), when ``capture.enabled`` runs the HEP collector of the SIP capture
(:class:`routing.monitor.collector.Collector`, a thread), when ``cdr.store`` is postgres or jsonl
drains the node's call records from redis into it (:mod:`routing.monitor.cdrdrain`, a thread) and,
when ``health.enabled``, runs
:func:`routing.monitor.prober.run` until SIGTERM.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, start_http_server

from routing.monitor import bansync, cdrdrain, nodeloss, prober, stircerts
from routing.monitor.collector import Collector
from routing.ops.cdrsettings import durable_sink, redis_records
from routing.monitor.cdrmetrics import CdrCollector
from routing.monitor.exporter import NAMESPACE, EdgeCollector
from routing.monitor.health import probe_ok
from routing.ops.settings import Settings
from routing.tables.store import connect

__all__ = ["main", "registry_for"]


#: how often bans are exchanged with the other nodes (s)
BAN_SYNC_S = 1.0


def registry_for(settings: Settings) -> tuple[CollectorRegistry, Counter, object]:
    """A registry with the redis collector and the probe counter; returns (registry, counter, redis client)."""
    r = settings.redis
    client = connect(**r.client_args(), timeout_ms=2000, connect_timeout_ms=2000)
    registry = CollectorRegistry()
    registry.register(EdgeCollector(client, settings.node))
    registry.register(CdrCollector(client, settings.cdr_spool_path, redis_records(settings, client)))
    probes = Counter(f"{NAMESPACE}_gateway_probes", "SIP OPTIONS probes sent to gateways, by result (ok/failed)",
                     ["trunk", "gateway", "result"], registry=registry)
    return registry, probes, client


def main(argv: list[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT.  Exit status 2 on a bad settings file."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if len(args) != 1:
        print("usage: python -m routing.monitor <run_dir>/monitor.json", file=sys.stderr)
        return 2
    try:
        settings = Settings.model_validate_json(Path(args[0]).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"monitor: cannot read settings {args[0]}: {exc}", file=sys.stderr)
        return 2
    registry, probes, client = registry_for(settings)
    m = settings.metrics
    start_http_server(m.exporter_port, addr=m.address, registry=registry)
    logging.getLogger("byoc_edge.monitor").info("serving /metrics on %s:%d", m.address, m.exporter_port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if settings.capture.enabled:
        try:
            Collector(settings).start(stop)
        except OSError as exc:  # the port taken, the directory not writable: metrics and probes go on
            logging.getLogger("byoc_edge.capture").error(
                "capture: cannot listen on %s:%d or write %s: %s; no SIP capture is kept",
                settings.capture.address, settings.capture.port, settings.capture_path, exc)

    def count(probe: prober.GatewayProbe) -> None:
        result = "ok" if probe_ok(probe.result.code) else "failed"
        probes.labels(probe.trunk, probe.gateway.address, result).inc()

    # the calls of nodes that died (no heartbeat) are released and recorded by every node that lives
    cdrs = redis_records(settings, client)
    # their calls on an rtpengine of another host keep their slots until no RTP came for the shorter RTP timeout
    stopped_after_s = min(settings.media.trunk.rtp_timeout_s, settings.media.agent.rtp_timeout_s)
    reaper = threading.Thread(target=nodeloss.run, args=(client, settings.node, cdrs, stop, stopped_after_s),
                              name="nodeloss", daemon=True)
    reaper.start()
    # bans seen here apply on every node, and theirs here (routing/monitor/bansync.py)
    bans = bansync.BanSync(client, settings.run_dir, settings.node, settings.security.ban_time_s)
    threading.Thread(target=bansync.run, args=(bans, BAN_SYNC_S, stop), name="bansync", daemon=True).start()
    sink = durable_sink(settings)
    if sink is not None:  # cdr.store postgres or jsonl: this node's records go there once each
        drain = cdrdrain.Drain(cdrs, sink, settings.cdr.drain_batch)
        threading.Thread(target=cdrdrain.run, args=(drain, settings.cdr.drain_interval_ms / 1000, stop),
                         name="cdrdrain", daemon=True).start()
    if settings.stir.verify:  # certificates of inbound Identity headers, fetched ahead of the calls
        certs = stircerts.CertFetcher(settings.stir.cert_dir(settings.run_dir), settings.stir.verify_refresh_s,
                                      settings.stir.verify_http)
        threading.Thread(target=stircerts.run, args=(certs, 1.0, stop), name="stircerts", daemon=True).start()
    if settings.health.enabled:
        prober.run(client, settings, stop, observed=count)  # type: ignore[arg-type]
    else:
        stop.wait()
    return 0

