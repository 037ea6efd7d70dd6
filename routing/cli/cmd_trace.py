"""``edgectl trace``: a call's SIP ladder from the node's capture (docs/operations.md#reading-a-calls-ladder).

``edgectl trace CALL-ID`` prints every captured message of the call on both legs (every failover
attempt included: they share the Call-ID), ``--pcap FILE`` and ``--html FILE`` export it,
``edgectl trace --failed --last N`` lists the latest calls the edge refused or that failed.
Digest ``response`` and ``nonce`` values are masked in everything printed or exported.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from routing.capture import html as ladder_html
from routing.capture import ladder as ladders
from routing.call.bridge import LEG_PREFIX
from routing.capture import pcap, sipmsg
from routing.capture.store import CaptureStore
from routing.ops.settings import Settings
from . import AppContext, emit_json, fail, handle_errors, pass_app

_STYLE = {"in": "cyan", "out": "magenta", "loop": "yellow", "pass": "white"}


def _store(settings: Settings) -> CaptureStore:
    c = settings.capture
    return CaptureStore(settings.capture_path, c.max_bytes, c.max_age_s)


def _edge_sockets(settings: Settings) -> list[tuple[str, int]]:
    return [(l.address, l.port) for l in settings.sip.listen]


def _tls_sockets(settings: Settings) -> list[tuple[str, int]]:
    return [(l.address, l.port) for l in settings.sip.listen if l.transport == "tls"]


def _console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=250, soft_wrap=False)


def load(settings: Settings, call_id: str) -> ladders.Ladder:
    """The ladder of ``call_id`` from the capture directory, with the messages of its bridged transfer
    leg (``xfer-{Call-ID}``) or, for a leg, of the call it was transferred from.

    Raises:
        click.ClickException: no capture of that Call-ID (one line).
    """
    store = _store(settings)
    found = store.call(call_id)
    if found is None:
        why = "" if settings.capture.enabled else " (capture.enabled is false)"
        raise fail(f"no capture of Call-ID {call_id!r} in {settings.capture_path}{why}")
    packets = found.packets()
    # a bridged transfer's leg (routing.call.bridge: its own Call-ID) belongs in the same ladder, either way
    other = call_id[len(LEG_PREFIX):] if call_id.startswith(LEG_PREFIX) else LEG_PREFIX + call_id
    leg = store.call(other)
    if leg is not None:
        packets = [*packets, *leg.packets()]
    return ladders.build(call_id, packets, _edge_sockets(settings), _tls_sockets(settings))


@click.command()
@click.argument("call_id", required=False)
@click.option("--pcap", "pcap_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the call's messages to this pcap file (Wireshark, tshark).")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw the ladder into this HTML file (SVG).")
@click.option("--full", is_flag=True, help="Print every message whole (masked) after the ladder.")
@click.option("--failed", is_flag=True, help="List the latest failed calls (final answer >= 300) instead.")
@click.option("--last", type=click.IntRange(1, 100000), default=20, show_default=True,
              help="How many calls --failed lists.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
@handle_errors
def trace(app: AppContext, call_id: str | None, pcap_out: Path | None, html_out: Path | None, full: bool,
          failed: bool, last: int, as_json: bool) -> None:
    """The SIP ladder of CALL-ID: every message on both legs, as received and as sent, with time,
    direction, source -> destination, method or status and the headers that matter."""
    settings = app.settings
    if failed:
        if call_id:
            raise click.UsageError("give a CALL-ID or --failed, not both")
        _failed(settings, last, as_json)
        return
    if not call_id:
        raise click.UsageError("missing CALL-ID (or --failed)")
    ladder = load(settings, call_id)
    if pcap_out:
        count = pcap.write(ladder, pcap_out)
        click.echo(f"wrote {count} messages to {pcap_out}", err=True)
    if html_out:
        fd = os.open(html_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(ladder_html.render(ladder))
        click.echo(f"wrote the ladder to {html_out}", err=True)
    if as_json:
        emit_json({"call_id": ladder.call_id, "lanes": list(ladder.lanes), "messages": [
            {"ts": e.ts, "time": e.time, "direction": e.direction, "src": e.src, "dst": e.dst, "message": e.label,
             "cseq": e.cseq, "details": list(e.details), "transport": e.transport, "text": e.text}
            for e in ladder.entries]})
        return
    _print(ladder, full)


def _print(ladder: ladders.Ladder, full: bool) -> None:
    console = _console()
    table = Table(title=f"Call-ID {ladder.call_id}: {len(ladder.entries)} SIP messages", title_justify="left")
    for name in ("#", "time (UTC)", "+s", "dir", "source → destination", "message", "CSeq", "details"):
        table.add_column(name, no_wrap=name != "details")
    start = ladder.start
    for i, e in enumerate(ladder.entries, 1):
        src = f"{e.src} (edge)" if e.src_lane == ladders.EDGE else e.src
        dst = f"{e.dst} (edge)" if e.dst_lane == ladders.EDGE else e.dst
        table.add_row(str(i), e.time, f"{e.ts - start:.3f}", e.direction, f"{src} → {dst}",
                      e.label, e.cseq, "\n".join(e.details), style=_STYLE.get(e.direction))
    console.print(table)
    if full:
        for i, e in enumerate(ladder.entries, 1):
            console.rule(f"{i}. {e.time} {e.src} → {e.dst} {e.label}")
            console.print(e.text, markup=False, highlight=False)


def _failed(settings: Settings, last: int, as_json: bool) -> None:
    store = _store(settings)
    rows: list[ladders.CallSummary] = []
    for found in store.recent():
        packets = found.packets()
        if not packets:
            continue
        cid = sipmsg.call_id(packets[0].payload)
        summary = ladders.summarize(ladders.build(cid, packets, _edge_sockets(settings), _tls_sockets(settings)))
        if summary is not None and summary.failed:
            rows.append(summary)
            if len(rows) >= last:
                break
    if as_json:
        emit_json([{"call_id": s.call_id, "start": s.start, "caller": s.caller, "callee": s.callee,
                    "source": s.source, "status": s.status, "reason": s.reason, "attempts": s.attempts,
                    "messages": s.messages} for s in rows])
        return
    table = Table("time (UTC)", "call-id", "source", "caller", "callee", "final", "attempts", "messages",
                  title=f"latest {len(rows)} failed calls (edgectl trace CALL-ID for the ladder)", title_justify="left")
    for s in rows:
        when = datetime.fromtimestamp(s.start, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(when, s.call_id, s.source, s.caller, s.callee, f"{s.status} {s.reason}", str(s.attempts),
                      str(s.messages))
    _console().print(table)
