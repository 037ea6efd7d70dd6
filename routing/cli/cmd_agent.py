"""``edgectl agent``: voice-AI agents (SIP URI targets, source CIDRs, limits)."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from routing.tables import admin
from routing.monitor.agentprober import read_agent_health
from routing.cli.health_view import health_dict, health_text
from routing.call.dtmf import DtmfMode
from routing.tables.model import Agent, DataError, check_answer_timeout, parse_account_ref, parse_hosts, parse_prefixes
from routing.tables.model.agent import check_caller_id, check_hold_answer
from routing.call.numbers import NumberError, NumberFormat
from .media_options import media_options, media_policy, media_rows
from . import AppContext, emit_json, handle_errors, pass_app

__all__ = ["agent"]


def _limit(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


@click.group()
def agent() -> None:
    """Voice-AI agents: where inbound calls go and who may place outbound calls."""


@agent.command("add")
@click.argument("name")
@click.option("--uri", "uris", multiple=True, metavar="SIP_URI", help="SIP target (repeatable; tried in the order given).")
@click.option("--cidr", "cidrs", multiple=True, metavar="CIDR", help="Source network of the agent (repeatable).")
@click.option("--max-calls", type=int, default=None, help="Concurrent calls; default unlimited.")
@click.option("--allow-prefix", "allow_prefixes", multiple=True, metavar="PREFIX",
              help="Destinations the agent may call, transfer or be redirected to (repeatable, e.g. +1); default all.")
@click.option("--deny-prefix", "deny_prefixes", multiple=True, metavar="PREFIX",
              help="Destinations the agent may never reach (repeatable, e.g. +1900).")
@click.option("--x-header", "x_headers", multiple=True, metavar="NAME",
              help="X- header the agent may pass to carriers (repeatable); others are removed.")
@click.option("--trust-identity/--no-trust-identity", default=False, show_default=True,
              help="Pass the agent's P-Asserted-Identity, Remote-Party-ID and Diversion to carriers.")
@click.option("--dtmf", type=click.Choice([m.value for m in DtmfMode]), default=None,
              help="How the agent sends and expects DTMF digits; default: the node's dtmf.default_mode.")
@click.option("--country-code", default="", help="Agent's country code for national numbers it dials (e.g. 1, 44).")
@click.option("--national-prefix", default="", help="Trunk prefix of national numbers it dials (e.g. 0).")
@click.option("--international-prefix", default="00", show_default=True,
              help="Prefix of international numbers it dials (011 for a NANP agent).")
@click.option("--national-length", type=int, default=0, show_default=True,
              help="Digits of a national number (0 = not fixed; 10 in NANP).")
@click.option("--probe/--no-probe", default=True, show_default=True,
              help="Ping the agent's URIs with SIP OPTIONS and skip the ones marked down.")
@click.option("--answer-timeout-ms", type=int, default=None, metavar="MS",
              help="Fail over to the next URI when one has not answered within this long; "
                   "default: sip.ringing_timeout_ms (and sip.failover_timeout_ms for no answer at all).")
@click.option("--hold-answer-ms", type=int, default=0, show_default=True, metavar="MS",
              help="Hold the agent's 200 OK from the caller until its first RTP packet, at most this long "
                   "(needs media.first_audio_poll_ms); 0 = relay it at once.")
@click.option("--caller-id", "caller_id", default="", metavar="E164",
              help="Default caller ID, presented where the agent's own is not allowed (docs/identity.md).")
@click.option("--caller-id-allow", "caller_ids", multiple=True, metavar="PREFIX",
              help="Caller IDs the agent may present on outbound calls (E.164 prefixes, repeatable); default any.")
@click.option("--present-dids/--no-present-dids", default=False, show_default=True,
              help="The DIDs bound to the agent are caller IDs it may present.")
@click.option("--transfer-host", "transfer_hosts", multiple=True, metavar="HOST",
              help="Host the agent may transfer calls to by SIP URI (repeatable; agents' own hosts always).")
@click.option("--account", default="", metavar="NAME",
              help="The account the agent belongs to: it terminates only over that account's trunks and shared routes.")
@media_options
@click.option("--replace", is_flag=True, help="Overwrite an existing agent completely.")
@pass_app
@handle_errors
def add(
    app: AppContext,
    name: str,
    uris: tuple[str, ...],
    cidrs: tuple[str, ...],
    max_calls: int | None,
    allow_prefixes: tuple[str, ...],
    deny_prefixes: tuple[str, ...],
    x_headers: tuple[str, ...],
    trust_identity: bool,
    dtmf: str | None,
    country_code: str,
    national_prefix: str,
    international_prefix: str,
    national_length: int,
    probe: bool,
    answer_timeout_ms: int | None,
    hold_answer_ms: int,
    caller_id: str,
    caller_ids: tuple[str, ...],
    present_dids: bool,
    transfer_hosts: tuple[str, ...],
    replace: bool,
    codecs: str | None = None,
    ptime_ms: int | None = None,
    srtp: str | None = None,
    rtp_timeout_s: int | None = None,
    sip_keepalive: str | None = None,
    fill_silence: str | None = None,
    account: str = "",
) -> None:
    """Add agent NAME (or overwrite it with --replace)."""
    try:
        fmt = NumberFormat(country_code, national_prefix, international_prefix, national_length)
    except NumberError as exc:
        raise DataError(f"agent {name!r} number format: {exc}") from None
    value = Agent(
        name=name, uris=uris, cidrs=cidrs, max_calls=max_calls,
        allow_prefixes=allow_prefixes, deny_prefixes=deny_prefixes,
        x_headers=x_headers, trust_identity=trust_identity, dtmf=DtmfMode(dtmf) if dtmf else None,
        media=media_policy(codecs, ptime_ms, srtp, rtp_timeout_s, f"agent {name!r}", sip_keepalive,
                           fill_silence),
        number_format=fmt,
        transfer_hosts=parse_hosts(",".join(transfer_hosts), f"agent {name!r} transfer_hosts"),
        probe=probe,
        answer_timeout_ms=check_answer_timeout(answer_timeout_ms, f"agent {name!r} answer_timeout_ms"),
        hold_answer_ms=check_hold_answer(hold_answer_ms, f"agent {name!r} hold_answer_ms"),
        caller_id=check_caller_id(caller_id, f"agent {name!r} caller_id"),
        caller_ids=parse_prefixes(",".join(caller_ids), f"agent {name!r} caller_ids"),
        present_dids=present_dids,
        account=parse_account_ref(account, f"agent {name!r} account"),
    )
    written = admin.put_agent(app.redis(), value, replace=replace)
    click.echo(f"agent {written.name!r} saved: {len(written.uris)} uri(s), {len(written.cidrs)} cidr(s)")


@agent.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
@handle_errors
def list_(app: AppContext, as_json: bool) -> None:
    """List every agent."""
    agents = admin.list_agents(app.redis())
    if as_json:
        emit_json([admin.agent_dict(a) for a in agents])
        return
    table = Table("name", "uris", "cidrs", "max calls", title="agents")
    for a in agents:
        table.add_row(a.name, "\n".join(a.uris) or "-", "\n".join(a.cidrs) or "-", _limit(a.max_calls))
    Console().print(table)


@agent.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
@handle_errors
def show(app: AppContext, name: str, as_json: bool) -> None:
    """Show agent NAME."""
    found = admin.get_agent(app.redis(), name)
    if found is None:
        raise DataError(f"no agent {name!r}")
    health = read_agent_health(app.redis(), [name])[name]
    if as_json:
        emit_json({**admin.agent_dict(found),
                   "health": {u: health_dict(h) for u, h in sorted(health.items())}})
        return
    table = Table("field", "value", title=f"agent {found.name}")
    for i, uri in enumerate(found.uris, 1):
        state = health_text(health.get(uri)) if found.probe else "not probed"
        table.add_row(f"uri {i}", f"{uri}\n  health: {state}")
    table.add_row("options probe", "yes" if found.probe else "no")
    table.add_row("answer timeout (ms)", str(found.answer_timeout_ms) if found.answer_timeout_ms else "node default")
    table.add_row("hold answer (ms)", str(found.hold_answer_ms) if found.hold_answer_ms else "off")
    table.add_row("cidrs", "\n".join(found.cidrs) or "-")
    table.add_row("max calls", _limit(found.max_calls))
    table.add_row("dtmf", found.dtmf.value if found.dtmf else "node default")
    fmt = found.number_format
    table.add_row("country code", fmt.country_code or "-")
    table.add_row("national prefix", fmt.national_prefix or "-")
    table.add_row("international prefix", fmt.international_prefix or "-")
    table.add_row("national length", str(fmt.national_length))
    table.add_row("transfer hosts", ", ".join(found.transfer_hosts) or "-")
    table.add_row("account", found.account or "-")
    table.add_row("caller ID", f"default {found.caller_id or '-'}; may present "
                               + (", ".join(found.caller_ids) + (" and its DIDs" if found.present_dids else "")
                                  if found.caller_ids else ("its DIDs" if found.present_dids else "any")))
    for row in media_rows(found.media):
        table.add_row(*row)
    Console().print(table)


@agent.command("rm")
@click.argument("name")
@pass_app
@handle_errors
def rm(app: AppContext, name: str) -> None:
    """Remove agent NAME (refused while DIDs are bound to it)."""
    admin.remove_agent(app.redis(), name)
    click.echo(f"agent {name!r} removed")
