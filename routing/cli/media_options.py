"""Media policy options shared by ``edgectl trunk add`` and ``edgectl agent add`` (docs/media.md)."""

from __future__ import annotations

from typing import Callable

import click

from routing.tables.model import CODECS, MediaPolicy, SilenceFill, SrtpMode

__all__ = ["media_options", "media_policy", "media_rows"]


def media_options(command: Callable) -> Callable:
    """Add ``--codecs``, ``--ptime``, ``--srtp``, ``--rtp-timeout``, ``--sip-keepalive`` and
    ``--fill-silence`` to a click command
    (each unset option leaves the node default of settings ``media.trunk``/``media.agent``)."""
    options = [
        click.option("--codecs", default=None, metavar="LIST",
                     help=f"Allowed audio codecs in preference order, comma-separated ({','.join(CODECS)}); "
                          "default: the node's media settings."),
        click.option("--ptime", "ptime_ms", type=int, default=None,
                     help="Packetisation in ms (10-60, steps of 10); default: the node's (20)."),
        click.option("--srtp", type=click.Choice([m.value for m in SrtpMode]), default=None,
                     help="Media encryption this side requires: none, sdes (RTP/SAVP) or dtls (DTLS-SRTP)."),
        click.option("--rtp-timeout", "rtp_timeout_s", type=int, default=None,
                     help="Seconds without RTP from this side before the call is ended (>= 5; production: 60 or more); default: the node's."),
        click.option("--sip-keepalive", type=click.Choice(["yes", "no"]), default=None,
                     help="Send this side in-dialog OPTIONS every media.keepalive_interval_s and end calls it "
                          "stops answering; default: the node's."),
        click.option("--fill-silence", type=click.Choice([m.value for m in SilenceFill]), default=None,
                     help="What this side receives while the other side is silent: none, audio (a continuous "
                          "stream of silence) or cn (comfort-noise packets); default: the node's."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def media_policy(codecs: str | None, ptime_ms: int | None, srtp: str | None, rtp_timeout_s: int | None,
                 where: str, sip_keepalive: str | None = None, fill_silence: str | None = None) -> MediaPolicy:
    """The policy given on the command line.

    Raises:
        DataError: an invalid value, naming the option's field.
    """
    return MediaPolicy.parse(codecs, ptime_ms, srtp, rtp_timeout_s, where, sip_keepalive, fill_silence)


def media_rows(policy: MediaPolicy) -> list[tuple[str, str]]:
    """(field, value) rows for ``show``; unset fields read ``node default``."""
    default = "node default"
    return [
        ("codecs", ",".join(policy.codecs) if policy.codecs else default),
        ("ptime (ms)", str(policy.ptime_ms) if policy.ptime_ms else default),
        ("srtp", policy.srtp.value if policy.srtp else default),
        ("rtp timeout (s)", str(policy.rtp_timeout_s) if policy.rtp_timeout_s else default),
        ("sip keepalive", default if policy.sip_keepalive is None else ("yes" if policy.sip_keepalive else "no")),
        ("fill silence", policy.fill_silence.value if policy.fill_silence else default),
    ]
