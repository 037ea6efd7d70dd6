"""``edgectl trunk``: carrier trunks (gateways, source CIDRs, limits, number format)."""

from __future__ import annotations

import time
from decimal import Decimal

import click
from rich.console import Console
from rich.table import Table

from pathlib import Path

from routing.tables import admin, keys
from routing.monitor import prober
from routing.ops import services
from routing.call.dtmf import DtmfMode
from routing.monitor.health import probe_ok
from routing.cli.health_view import health_dict, health_text
from routing.tables.model import (AuthMode, CallerDisplay, CallerIdAction, CallerIdFormat, CallerIdHeader, CallerIdPolicy,
                                  CallerIdShape, FromUser, DataError, Direction, ReferToFormat, ForwardedCallerId,
                                  Registration, TransferMode, Transport, Trunk, check_ringback, check_session_timer, format_increment,
                                  parse_increment, parse_prefixes, parse_rate,
    parse_account_ref,
)
from routing.call.numbers import NumberError, NumberFormat
from . import AppContext, emit_json, handle_errors, pass_app
from .media_options import media_options, media_policy, media_rows

__all__ = ["trunk"]


def _limit(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


@click.group()
def trunk() -> None:
    """Carrier trunks: where calls come from and go to."""


@trunk.command("add")
@click.argument("name")
@click.option(
    "--gateway",
    "gateways",
    multiple=True,
    metavar="HOST:PORT[;transport=tcp;priority=10;weight=50]",
    help="Termination gateway (repeatable); port defaults to 5060.",
)
@click.option(
    "--transport",
    type=click.Choice([t.value for t in Transport]),
    default=None,
    help="Transport of every --gateway without its own transport= (default udp).",
)
@click.option("--direction", type=click.Choice([d.value for d in Direction]), default="both", show_default=True)
@click.option("--cidr", "cidrs", multiple=True, metavar="CIDR", help="Source network of the carrier (repeatable).")
@click.option("--max-calls", type=int, default=None, help="Concurrent calls, both directions; default unlimited.")
@click.option("--country-code", default="", help="Carrier's country code for national numbers (e.g. 1, 44).")
@click.option("--national-prefix", default="", help="Trunk prefix of national numbers (e.g. 0).")
@click.option("--international-prefix", default="00", show_default=True, help="Prefix of international numbers.")
@click.option("--national-length", type=int, default=0, show_default=True, help="Digits of a national number (0 = not fixed).")
@click.option("--max-cps", type=float, default=None, help="New calls per second (token bucket); default unlimited.")
@click.option("--max-duration", "max_duration_s", type=int, default=None,
              help="Longest call in seconds (BYE after); default: the node's sip.max_call_duration_s.")
@click.option("--allow-prefix", "allow_prefixes", multiple=True, metavar="PREFIX",
              help="Termination destinations allowed over this trunk (repeatable, e.g. +1); default all.")
@click.option("--deny-prefix", "deny_prefixes", multiple=True, metavar="PREFIX",
              help="Termination destinations refused over this trunk (repeatable, e.g. +1900).")
@click.option("--auth", type=click.Choice([m.value for m in AuthMode]), default="ip", show_default=True,
              help="How inbound calls are recognised: source CIDR, digest credentials (set-password), or both.")
@click.option("--x-header", "x_headers", multiple=True, metavar="NAME",
              help="X- header the carrier may pass to agents (repeatable); others are removed.")
@click.option("--trust-identity/--no-trust-identity", default=True, show_default=True,
              help="Pass the carrier's P-Asserted-Identity, Remote-Party-ID and Diversion to agents.")
@click.option("--probe/--no-probe", default=True, show_default=True,
              help="Ping the gateways with SIP OPTIONS and skip those marked down (--no-probe for carriers "
                   "that do not answer OPTIONS).")
@click.option("--register", "registrar", default=None, metavar="HOST[:PORT]",
              help="REGISTER to this registrar with the trunk's credentials (set-password); inbound calls to the "
                   "registered contact are this trunk's.")
@click.option("--register-transport", type=click.Choice([t.value for t in Transport]), default="udp",
              show_default=True, help="Transport toward the registrar.")
@click.option("--register-nodes", type=click.Choice(["all", "one"]), default="all", show_default=True,
              help="all: every node registers its own contact; one: a single node at a time (a redis lock), "
                   "for carriers that keep one binding per account.")
@click.option("--register-expires", type=int, default=3600, show_default=True,
              help="Registration lifetime asked for (s, 60-86400); the registrar's answer wins.")
@click.option("--register-user", default="", help="Account at the registrar (default: the digest username).")
@click.option("--register-contact", default=None, metavar="TOKEN",
              help="Contact user the edge registers (default: kept on --replace, else a new random token).")
@click.option("--dtmf", type=click.Choice([m.value for m in DtmfMode]), default=None,
              help="How the carrier sends and expects DTMF digits; default: the node's dtmf.default_mode.")
@click.option("--billing-increment", default="1/1", show_default=True, metavar="FIRST/NEXT",
              help="Billing increment in seconds: first block, then each next block (60/60, 30/6, 1/1).")
@click.option("--max-rate", default=None, metavar="RATE",
              help="Highest per-minute rate for termination over this trunk; dearer routes are skipped.")
@click.option("--daily-spend-cap", default=None, metavar="AMOUNT",
              help="Spend allowed per UTC day (currency units); past it, termination calls are refused.")
@click.option("--inbound-rate", default=None, metavar="RATE",
              help="Per-minute price of inbound (origination) calls on this trunk, for call records and spend.")
@click.option("--transfer", type=click.Choice([m.value for m in TransferMode]), default=TransferMode.AUTO.value,
              show_default=True, help="How an agent's REFER on this trunk's calls is carried out (docs/transfers.md).")
@click.option("--refer-to", "refer_to", type=click.Choice([m.value for m in ReferToFormat]),
              default=ReferToFormat.SIP.value, show_default=True,
              help="How a transfer number is written in the Refer-To relayed to the carrier.")
@click.option("--caller-id-policy", type=click.Choice([m.value for m in CallerIdPolicy]), default="pass",
              show_default=True, help="owned: only the trunk's DIDs and verified numbers as caller ID (docs/identity.md).")
@click.option("--caller-id-action", type=click.Choice([m.value for m in CallerIdAction]), default="refuse",
              show_default=True, help="What an owned trunk does with another caller ID: refuse it, or replace it "
                                      "by the agent's default.")
@click.option("--verified-caller-id", "verified_caller_ids", multiple=True, metavar="E164",
              help="A number the carrier account verified: an owned caller ID on this trunk (repeatable).")
@click.option("--caller-id-header", type=click.Choice([m.value for m in CallerIdHeader]), default="from",
              show_default=True, help="Header that carries the caller ID besides the From (docs/identity.md).")
@click.option("--caller-id-format", type=click.Choice([m.value for m in CallerIdFormat]), default="e164",
              show_default=True, help="How the caller ID is written: +E.164, E.164 without +, or national.")
@click.option("--from-user", type=click.Choice([m.value for m in FromUser]), default="caller", show_default=True,
              help="The From user part: the caller ID, or the trunk's digest username (auth).")
@click.option("--from-host", default="", metavar="HOST", help="The From host (default: as the agent wrote it).")
@click.option("--user-phone/--no-user-phone", default=False, show_default=True,
              help="Add ;user=phone to the From and identity URIs.")
@click.option("--caller-display", type=click.Choice([m.value for m in CallerDisplay]), default="keep",
              show_default=True, help="The From display name: as written, none, or the number.")
@click.option("--stir-sign/--no-stir-sign", default=False, show_default=True,
              help="Sign termination calls over this trunk with a STIR/SHAKEN Identity header (settings stir).")
@click.option("--ringback-ms", type=int, default=None, metavar="MS",
              help="Send the caller 180 Ringing when the agent has sent no 180/183 this long after the INVITE.")
@click.option("--session-timer-s", type=int, default=None, metavar="S",
              help="Ask this carrier to refresh termination calls every S/2 s (RFC 4028, 90-86400) when the agent "
                   "offered no session timers; the edge answers the refreshes for the agent (docs/agents.md).")
@click.option("--stir-verify/--no-stir-verify", default=False, show_default=True,
              help="Check the Identity header of this carrier's inbound calls (settings stir.verify).")
@click.option("--forwarded-caller-id", "forwarded_caller_id", type=click.Choice([m.value for m in ForwardedCallerId]),
              default=ForwardedCallerId.DIVERSION.value, show_default=True,
              help="Caller of a DID's fallback to a number or a transfer leg sent over this trunk: the original "
                   "caller with Diversion naming the DID, without it, or the DID (docs/identity.md).")
@click.option("--account", default="", metavar="NAME",
              help="The account the trunk belongs to (edgectl account add); its agents alone terminate over it.")
@media_options
@click.option("--tls-ca", "tls_ca", default="", metavar="PEM",
              help="CA file that verifies this carrier's tls gateways (instead of sip.tls.ca_list).")
@click.option("--replace", is_flag=True, help="Overwrite an existing trunk completely.")
@pass_app
@handle_errors
def add(
    app: AppContext,
    name: str,
    gateways: tuple[str, ...],
    transport: str | None,
    direction: str,
    cidrs: tuple[str, ...],
    max_calls: int | None,
    country_code: str,
    national_prefix: str,
    international_prefix: str,
    national_length: int,
    max_cps: float | None,
    max_duration_s: int | None,
    allow_prefixes: tuple[str, ...],
    deny_prefixes: tuple[str, ...],
    auth: str,
    x_headers: tuple[str, ...],
    trust_identity: bool,
    probe: bool,
    registrar: str | None,
    register_transport: str,
    register_expires: int,
    register_nodes: str,
    register_user: str,
    register_contact: str | None,
    dtmf: str | None,
    billing_increment: str,
    max_rate: str | None,
    daily_spend_cap: str | None,
    inbound_rate: str | None,
    transfer: str,
    refer_to: str,
    caller_id_policy: str,
    caller_id_action: str,
    verified_caller_ids: tuple[str, ...],
    caller_id_header: str,
    caller_id_format: str,
    from_user: str,
    from_host: str,
    user_phone: bool,
    caller_display: str,
    stir_sign: bool,
    ringback_ms: int | None,
    replace: bool,
    codecs: str | None = None,
    ptime_ms: int | None = None,
    srtp: str | None = None,
    rtp_timeout_s: int | None = None,
    sip_keepalive: str | None = None,
    fill_silence: str | None = None,
    tls_ca: str = "",
    account: str = "",
    forwarded_caller_id: str = ForwardedCallerId.DIVERSION.value,
    stir_verify: bool = False,
    session_timer_s: int | None = None,
) -> None:
    """Add trunk NAME (or overwrite it with --replace)."""
    try:
        fmt = NumberFormat(country_code, national_prefix, international_prefix, national_length)
    except NumberError as exc:
        raise DataError(f"trunk {name!r} number format: {exc}") from None
    register = None
    if registrar:
        if register_contact is None:
            old = admin.get_trunk(app.redis(), name) if replace else None
            register_contact = old.register.contact_user if old and old.register else admin.new_contact_user()
        register = Registration.parse(
            Registration(registrar=registrar, contact_user=register_contact, transport=Transport(register_transport),
                         expires_s=register_expires, user=register_user, single=register_nodes == "one").to_redis(),
            f"trunk {name!r} register",
        )
    value = Trunk(
        name=name,
        direction=Direction(direction),
        max_calls=max_calls,
        cidrs=cidrs,
        gateways=tuple(admin.parse_gateway(spec, transport) for spec in gateways),
        number_format=fmt,
        max_cps=max_cps,
        max_duration_s=max_duration_s,
        allow_prefixes=allow_prefixes,
        deny_prefixes=deny_prefixes,
        auth=AuthMode(auth),
        x_headers=x_headers,
        trust_identity=trust_identity,
        probe=probe,
        register=register,
        dtmf=DtmfMode(dtmf) if dtmf else None,
        billing_increment=parse_increment(billing_increment, f"trunk {name!r} billing_increment"),
        max_rate=None if max_rate is None else parse_rate(max_rate, f"trunk {name!r} max_rate"),
        daily_spend_cap=None if daily_spend_cap is None else parse_rate(daily_spend_cap, f"trunk {name!r} daily_spend_cap"),
        inbound_rate=None if inbound_rate is None else parse_rate(inbound_rate, f"trunk {name!r} inbound_rate"),
        media=media_policy(codecs, ptime_ms, srtp, rtp_timeout_s, f"trunk {name!r}", sip_keepalive,
                           fill_silence),
        tls_ca=str(Path(tls_ca).resolve()) if tls_ca else "",
        transfer=TransferMode(transfer),
        refer_to=ReferToFormat(refer_to),
        ringback_ms=check_ringback(ringback_ms, f"trunk {name!r} ringback_ms"),
        caller_id_policy=CallerIdPolicy(caller_id_policy),
        caller_id_action=CallerIdAction(caller_id_action),
        verified_caller_ids=parse_prefixes(",".join(verified_caller_ids), f"trunk {name!r} verified_caller_ids"),
        caller_shape=CallerIdShape.build(caller_id_header, caller_id_format, from_user, from_host, user_phone,
                                         caller_display, f"trunk {name!r}"),
        stir_sign=stir_sign,
        account=parse_account_ref(account, f"trunk {name!r} account"),
        forwarded_caller_id=ForwardedCallerId(forwarded_caller_id),
        stir_verify=stir_verify,
        session_timer_s=check_session_timer(session_timer_s, f"trunk {name!r} session_timer_s"),
    )
    if tls_ca and not Path(tls_ca).is_file():
        raise DataError(f"trunk {name!r} tls_ca: {tls_ca} is not a file")
    written = admin.put_trunk(app.redis(), value, replace=replace)
    click.echo(f"trunk {written.name!r} saved: {len(written.gateways)} gateway(s), {len(written.cidrs)} cidr(s)")
    _reload_tls(app)


def _reload_tls(app: AppContext) -> None:
    """Rewrite the per-trunk TLS profiles and reload them into the running Kamailio."""
    if not app.settings.tls_enabled:
        return
    try:
        if services.tls_profiles(app.settings, app.redis(), reload=services.kamailio_running(app.settings)):
            click.echo("tls.cfg: per-trunk CA profiles rewritten and reloaded")
    except RuntimeError as exc:
        raise DataError(f"trunk saved, but {exc}") from None


@trunk.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
@handle_errors
def list_(app: AppContext, as_json: bool) -> None:
    """List every trunk."""
    trunks = admin.list_trunks(app.redis())
    if as_json:
        emit_json([admin.trunk_dict(t) for t in trunks])
        return
    table = Table("name", "direction", "max calls", "gateways", "cidrs", title="trunks")
    for t in trunks:
        gws = "\n".join(f"{g.address} {g.transport.value} p={g.priority} w={g.weight}" for g in t.gateways)
        table.add_row(t.name, t.direction.value, _limit(t.max_calls), gws or "-", "\n".join(t.cidrs) or "-")
    Console().print(table)


@trunk.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
@handle_errors
def show(app: AppContext, name: str, as_json: bool) -> None:
    """Show trunk NAME."""
    found = admin.get_trunk(app.redis(), name)
    if found is None:
        raise DataError(f"no trunk {name!r}")
    username = admin.trunk_username(app.redis(), name)
    health = prober.read_health(app.redis(), [name])[name]
    states = admin.registration_states(app.redis(), name) if found.register else []
    spent = Decimal(int(app.redis().get(keys.spend(name, time.strftime("%Y%m%d", time.gmtime()))) or 0)).scaleb(-6)
    if as_json:
        emit_json({**admin.trunk_dict(found), "auth_username": username, "password": "set" if username else None,
                   "health": {a: health_dict(h) for a, h in sorted(health.items())}, "registration": states,
                   "spend_today": str(spent)})
        return
    fmt = found.number_format
    table = Table("field", "value", title=f"trunk {found.name}")
    table.add_row("direction", found.direction.value)
    table.add_row("max calls", _limit(found.max_calls))
    table.add_row("cidrs", "\n".join(found.cidrs) or "-")
    for gw in found.gateways:
        state = health_text(health.get(gw.address)) if found.probe else "not probed"
        table.add_row("gateway", f"{gw.address} transport={gw.transport.value} priority={gw.priority} "
                                 f"weight={gw.weight}\n  health: {state}")
    table.add_row("options probe", "yes" if found.probe else "no")
    table.add_row("country code", fmt.country_code or "-")
    table.add_row("national prefix", fmt.national_prefix or "-")
    table.add_row("international prefix", fmt.international_prefix or "-")
    table.add_row("national length", str(fmt.national_length))
    table.add_row("max cps", "-" if found.max_cps is None else f"{found.max_cps:g}")
    table.add_row("max duration (s)", "-" if found.max_duration_s is None else str(found.max_duration_s))
    table.add_row("allow prefixes", ", ".join(found.allow_prefixes) or "all")
    table.add_row("deny prefixes", ", ".join(found.deny_prefixes) or "-")
    table.add_row("dtmf", found.dtmf.value if found.dtmf else "node default")
    table.add_row("billing increment (s)", format_increment(found.billing_increment))
    table.add_row("max rate (per min)", "-" if found.max_rate is None else str(found.max_rate))
    table.add_row("daily spend cap", "-" if found.daily_spend_cap is None else str(found.daily_spend_cap))
    table.add_row("account", found.account or "-")
    table.add_row("spend today (UTC)", str(spent))
    table.add_row("inbound rate (per min)", "-" if found.inbound_rate is None else str(found.inbound_rate))
    table.add_row("transfer", f"{found.transfer.value} (Refer-To {found.refer_to.value})")
    table.add_row("ringback after (ms)", str(found.ringback_ms) if found.ringback_ms else "-")
    table.add_row("session timer asked of the carrier (s)", str(found.session_timer_s) if found.session_timer_s else "-")
    table.add_row("caller ID policy", found.caller_id_policy.value + (
        f" ({found.caller_id_action.value}; verified {', '.join(found.verified_caller_ids) or '-'})"
        if found.caller_id_policy is CallerIdPolicy.OWNED else ""))
    shape = found.caller_shape
    table.add_row("caller ID shaping", "as the agent wrote it" if shape.is_default else (
        f"header {shape.header.value}, format {shape.format.value}, From user {shape.from_user.value}"
        f"{', host ' + shape.from_host if shape.from_host else ''}{', user=phone' if shape.user_phone else ''}"
        f", display {shape.display.value}"))
    table.add_row("STIR/SHAKEN signing", "yes" if found.stir_sign else "no")
    table.add_row("forwarded caller ID", found.forwarded_caller_id.value)
    table.add_row("STIR/SHAKEN check of inbound calls", "yes" if found.stir_verify else "no")
    table.add_row("auth", found.auth.value)
    table.add_row("digest username", username or "-")
    table.add_row("password", "set (write-only)" if username else "-")
    table.add_row("tls ca", found.tls_ca or "sip.tls.ca_list")
    if found.register is not None:
        reg = found.register
        table.add_row("register", f"{reg.registrar} transport={reg.transport.value} expires={reg.expires_s}s "
                                  f"contact user={reg.contact_user} account={reg.user or username or '-'}")
        for state in states or [{"node": "-", "state": "not published yet"}]:
            table.add_row(f"registration [{state['node']}]", _registration_line(state))
    for row in media_rows(found.media):
        table.add_row(*row)
    Console().print(table)


@trunk.command("probe")
@click.argument("name")
@click.option("--timeout", "timeout_ms", type=click.IntRange(50, 30000), default=None,
              help="Wait this long for each answer (ms); default health.timeout_ms.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
@handle_errors
def probe(app: AppContext, name: str, timeout_ms: int | None, as_json: bool) -> None:
    """Send one SIP OPTIONS to every gateway of trunk NAME; print status and round-trip time.

    Exits 1 when a gateway does not answer, or answers 408 or 5xx (the answers
    that count as a failed probe for gateway health).
    """
    found = admin.get_trunk(app.redis(), name)
    if found is None:
        raise DataError(f"no trunk {name!r}")
    if not found.gateways:
        raise DataError(f"trunk {name!r} has no gateways")
    settings = app.settings
    if timeout_ms is not None:
        settings = settings.model_copy(update={"health": settings.health.model_copy(update={"timeout_ms": timeout_ms})})
    results = prober.probe_trunk(found, settings)
    failed = [r for r in results if not probe_ok(r.result.code)]
    if as_json:
        emit_json([{"gateway": r.gateway.address, "transport": r.gateway.transport.value, "code": r.result.code,
                    "reason": r.result.reason, "rtt_ms": r.result.rtt_ms, "ok": probe_ok(r.result.code)}
                   for r in results])
    else:
        table = Table("gateway", "transport", "status", "rtt (ms)", title=f"OPTIONS to trunk {name}")
        for r in results:
            status = f"{r.result.code} {r.result.reason}" if r.result.code else f"no answer: {r.result.reason}"
            rtt = "-" if r.result.rtt_ms is None else f"{r.result.rtt_ms:.1f}"
            table.add_row(r.gateway.address, r.gateway.transport.value, status, rtt)
        Console().print(table)
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(results)} gateway(s) of trunk {name!r} failed the probe")
def _clock(epoch: str) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(int(epoch))) if epoch.isdigit() else "-"


def _registration_line(state: dict[str, str]) -> str:
    """``registered (200 OK), expires ..., next refresh ...`` or ``failed 403 Forbidden, next retry ...``."""
    text = state.get("state", "?")
    code = state.get("code", "")
    if code or state.get("reason"):
        text += f" ({code} {state.get('reason', '')})".replace("( ", "(")
    if state.get("expires_at"):
        text += f", expires {_clock(state['expires_at'])}"
    if state.get("next_refresh"):
        label = "next refresh" if state.get("state") == "registered" else "next attempt"
        text += f", {label} {_clock(state['next_refresh'])}"
    return text


@trunk.command("rm")
@click.argument("name")
@pass_app
@handle_errors
def rm(app: AppContext, name: str) -> None:
    """Remove trunk NAME (refused while DIDs or routes use it)."""
    admin.remove_trunk(app.redis(), name)
    click.echo(f"trunk {name!r} removed")
    _reload_tls(app)


@trunk.command("set-password")
@click.argument("name")
@click.option("--username", required=True, help="Digest username of the trunk.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (else prompted).")
@pass_app
@handle_errors
def set_password(app: AppContext, name: str, username: str, password_stdin: bool) -> None:
    """Store NAME's digest credentials (encrypted; never shown again).

    They verify the trunk's peers when they authenticate to the edge (auth
    digest/both) and answer the carrier's 401/407 on termination calls.
    """
    if password_stdin:
        password = click.get_text_stream("stdin").readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    admin.set_trunk_password(app.redis(), app.secrets(), name, username, password)
    click.echo(f"trunk {name!r}: credentials of {username!r} saved")
