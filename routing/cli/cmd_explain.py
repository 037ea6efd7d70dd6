"""``edgectl explain``: each routing stage of a recent call or a synthetic request, and why it was refused."""

from __future__ import annotations

import time
from typing import Any

import click

from routing.call import explain as explaining
from routing.tables import calls, dryrun
from routing.call.pipeline import ROUTING_STAGES
from routing.ops.render import runtime_settings
from routing.call.request import SipRequest
from routing.tables.store import RedisStore
from . import AppContext, emit_json, fail, handle_errors, pass_app

__all__ = ["explain", "format_explanation"]


def _user(text: str) -> str:
    """User part of ``sip:user@host``, ``<sip:user@host>``, a ``tel:`` URI or a bare ``user``, with
    its user parameters (``4155550100;phone-context=+1``), as the edge reads it
    (:func:`routing.call.request.telephone_user`)."""
    text = text.strip().strip("<>")
    if text[:4].lower() == "tel:":
        return text[4:]
    if ":" in text.split("@", 1)[0]:
        text = text.split(":", 1)[1]
    return text.split("@", 1)[0] if "@" in text else text.split(";", 1)[0]


def _source(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else 5060
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        if not port.isdigit():
            raise fail(f"--source {text!r}: the port must be a number")
        return host, int(port)
    return text, 5060


def format_explanation(result: explaining.Explanation) -> list[str]:
    """Numbered stage lines, then the outcome line."""
    lines = []
    for i, step in enumerate(result.steps, 1):
        lines.append(f"  {i}. {step.stage:<9} {'ok     ' if step.ok else 'REFUSED'}  {step.detail}")
    if result.outcome == "relay":
        lines.append(f"  => relayed to {', then '.join(result.targets)}")
    elif result.outcome == "challenge":
        lines.append(f"  => {result.code} {result.reason} (digest credentials needed), stage {result.stage}")
    else:
        lines.append(f"  => {result.code} {result.reason} [{result.tag}] at stage {result.stage}")
    return lines


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _cdr_lines(cdr: dict[str, Any]) -> list[str]:
    """A call record (``edgectl cdr show ID``) in a few lines."""
    tag = f" [{cdr['reject_tag']}]" if cdr.get("reject_tag") else ""
    lines = [
        f"call record {cdr.get('id')}: {cdr.get('status')} {cdr.get('direction', '')} "
        f"{_when((cdr.get('start_ms') or 0) / 1000)}, final {cdr.get('sip_code')} {cdr.get('sip_reason', '')}{tag}",
        "  " + ", ".join(f"{k} {cdr[k]}" for k in ("trunk", "agent", "account", "number", "caller", "identity")
                         if cdr.get(k)),
    ]
    if cdr.get("status") == "answered":
        lines.append(f"  talk {int(cdr.get('talk_ms') or 0) / 1000:.1f} s, hung up by {cdr.get('hangup') or '-'}, "
                     f"codecs caller {','.join(cdr.get('codecs_caller') or []) or '-'} / "
                     f"callee {','.join(cdr.get('codecs_callee') or []) or '-'}")
    for hop in cdr.get("gateways") or []:
        lines.append(f"  tried {hop.get('gateway')}: {hop.get('result')}")
    if cdr.get("transfer"):
        lines.append("  " + transfer_line(cdr["transfer"]))
    return lines


def transfer_line(transfer: dict[str, Any]) -> str:
    """The agent's transfer of a call (the record's ``transfer`` object, docs/transfers.md) in one
    line; a bridged leg's caller ID rule (``leg_caller``, docs/identity.md) after it."""
    line = _transfer_line(transfer)
    return line + (f"; {transfer['leg_caller']}" if transfer.get("leg_caller") else "")


def _transfer_line(transfer: dict[str, Any]) -> str:
    head = f"transfer ({transfer.get('mode', '-')}) to {transfer.get('target', '-')}: "
    if transfer.get("transferred_from"):
        return f"transfer leg (bridge) of call {transfer['transferred_from']}, placed by the edge"
    if transfer.get("mode") == "bridge":
        code, result = transfer.get("refer_code", ""), transfer.get("result", "")
        why = f"the carrier refused the REFER with {code}, " if code else ""
        leg = transfer.get("transferred_to", "-")
        if not result:
            return head + why + f"the edge placed leg {leg}, no final answer"
        outcome = ("bridged: caller and target joined, the agent hung up by the edge" if result.startswith("2")
                   else "failed: the agent kept the call")
        return head + why + f"the edge placed leg {leg}, which answered {result} ({outcome})"
    if transfer.get("refused"):
        return head + f"refused by the edge, {transfer.get('result')} {transfer['refused']}"
    code, result = transfer.get("refer_code", ""), transfer.get("result", "")
    if code and not code.startswith("2"):
        return head + f"the carrier refused the REFER with {code}"
    if result:
        outcome = "done" if result.startswith("2") else "failed"
        return head + f"REFER {code or '-'}, the carrier's final NOTIFY {result} ({outcome})"
    return head + f"REFER {code or 'unanswered'}, no final NOTIFY"


@click.command()
@click.argument("call_id", required=False)
@click.option("--source", metavar="IP[:PORT]", help="Synthetic request: the packet's source address.")
@click.option("--to", "ruri", metavar="URI|USER", help="Synthetic request: the Request-URI (or its user part).")
@click.option("--from", "from_", metavar="URI|USER", default="", help="Synthetic request: the From URI (or its user).")
@click.option("--auth-user", default="", help="Synthetic request: the digest username it would authenticate with.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
@handle_errors
def explain(app: AppContext, call_id: str | None, source: str | None, ruri: str | None, from_: str,
            auth_user: str, as_json: bool) -> None:
    """Show each routing stage (ACL, trunk, DID or route, limits, carriers) and why a call was refused.

    Either CALL_ID of a recent call (refusals are kept diagnostics.trace_ttl_s, calls in
    progress while they hold slots, call records cdr.retention_days), or a synthetic request:
    --source IP --to URI [--from URI].
    A synthetic request runs the same stages as the edge, but takes no slot and writes nothing.
    """
    if (call_id is None) == (source is None):
        raise fail("give either a CALL_ID or --source IP with --to URI")
    rt = runtime_settings(app.settings)
    client = app.redis()
    store = RedisStore(client, rt.node)
    if source is not None:
        if not ruri:
            raise fail("--to is required with --source")
        host, port = _source(source)
        req = SipRequest(method="INVITE", call_id="edgectl-explain", src_ip=host, src_port=port, proto="udp",
                         ruri_user=_user(ruri), to_user=_user(ruri), from_user=_user(from_) if from_ else "",
                         auth_user=auth_user)
        result = dryrun.explain_request(store, rt, req)
        if as_json:
            emit_json({"request": {"source": f"{host}:{port}", "ruri": req.ruri_user, "from": req.from_user},
                       **result.as_dict()})
            return
        click.echo(f"synthetic INVITE from {host}:{port} to {req.ruri_user!r} (From {req.from_user or '-'!r}); "
                   "dry run, no slot taken")
        for line in format_explanation(result):
            click.echo(line)
        return

    assert call_id is not None
    record = calls.read_record(client, call_id)
    active = calls.active_call(client, call_id)
    cdrs = calls.call_records(client, call_id)
    if record is None and active is None and not cdrs:
        raise fail(f"no record of call-id {call_id!r}: not refused in the last {rt.trace_ttl_s} s "
                   "(diagnostics.trace_ttl_s), not in progress, and no call record (cdr.retention_days)")
    out: dict[str, Any] = {"call_id": call_id, "refusal": record, "active": active, "cdrs": cdrs}
    lines = []
    if active is not None:
        lines.append(f"call-id {call_id}: in progress on node {active.get('node')}: "
                     + ", ".join(f"{k} {v}" for k, v in active.items() if k != "node"))
    for cdr in cdrs:
        lines += _cdr_lines(cdr)
    if record is not None:
        lines.append(f"call-id {call_id}: refused {_when(record['at'])} on node {record['node']} "
                     f"({record['where']})")
        lines.append(f"  request: INVITE from {record['src']} ({record['proto']}), R-URI user {record['ruri']!r}, "
                     f"To {record['to']!r}, From {record['from']!r}")
        lines.append(f"  answer:  {record['code']} {record['reason']} [{record['tag']}] at stage {record['stage'] or '-'}"
                     + (f", account {record['account']}" if record.get("account") else ""))
        if record.get("tried"):
            lines.append("  tried:   " + ", ".join(record["tried"]))
        replay = dryrun.explain_request(store, rt, explaining.replay_request(record, call_id))
        out["replay"] = replay.as_dict()
        lines.append("the same request through the current tables (dry run):")
        lines += format_explanation(replay)
        if record.get("stage") and record["stage"] not in ROUTING_STAGES:
            lines.append(f"  (the refusal came at stage {record['stage']}, after routing: a replay of the routing "
                         "stages cannot repeat it; see the call record above and docs/operations.md)")
    if as_json:
        emit_json(out)
        return
    for line in lines:
        click.echo(line)
