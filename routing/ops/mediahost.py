"""rtpengine on a host of its own (an "rtpengine host"): its settings and its ``rtpengine.conf``.

Edge nodes use such hosts as a weighted set (settings ``rtpengine.nodes``, docs/media.md#rtpengine-sets).
An rtpengine host runs no Kamailio, redis or byoc-edge code: its one config is rendered by the
project's renderer (:func:`routing.ops.render.render_rtpengine`, ``templates/rtpengine.conf.j2``)
from settings shaped like an edge node's, so the rtpengine options the edge renders for its own
rtpengine (``rtpengine.media_timeout_s``, ``log_level``, ``sip.max_call_duration_s`` for
``final-timeout``, ``media.fill_delay_ms`` and ``comfort_noise_dbov``, ``metrics``) are the same
on the host; only the ng and cli listeners move from ``127.0.0.1`` to an address the edge nodes
reach, and the digits seen in the media are not reported (``dtmf.log_port`` 0: the edge that
records them listens on its own ``127.0.0.1``).

The Ansible role ``rtpengine_host`` runs this module on the controller (the host needs no Python
venv)::

    python -m routing.ops.mediahost --ng-address 10.0.2.11 < settings.json > rtpengine.conf

Errors: one line on stderr naming the field (``rtpengine.port_min: ...``), exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping

from pydantic import ValidationError

from routing.ops.render import render_rtpengine
from routing.ops.settings import Settings, SettingsError, format_validation_error

__all__ = ["media_host_settings", "render_media_host", "main"]


def media_host_settings(data: Mapping[str, object]) -> Settings:
    """Validate the settings of an rtpengine host (a mapping shaped like an edge's settings file,
    docs/settings.md); ``dtmf.log_port`` is set to 0 whatever ``data`` says.

    Raises:
        SettingsError: a field is invalid (every bad field named, ``rtpengine.port_max: ...``).
    """
    merged = dict(data)
    dtmf = merged.get("dtmf")
    merged["dtmf"] = {**(dtmf if isinstance(dtmf, Mapping) else {}), "log_port": 0}
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise SettingsError(f"rtpengine host settings: {format_validation_error(exc)}") from None


def render_media_host(data: Mapping[str, object], ng_address: str) -> str:
    """``rtpengine.conf`` of an rtpengine host: ``interface = rtpengine.address[!advertise]``, its
    port range, ``listen-ng = ng_address:rtpengine.ng_port`` and ``listen-cli = ng_address:cli_port``.

    Raises:
        SettingsError: a settings field is invalid, or ``ng_address`` is not an IP address literal.
    """
    settings = media_host_settings(data)
    try:
        return render_rtpengine(settings, ng_address)
    except ValueError:
        raise SettingsError(f"ng address {ng_address!r} is not an IP address literal") from None


def main(argv: list[str] | None = None) -> int:
    """CLI: settings as JSON on stdin, ``rtpengine.conf`` on stdout; exit 1 with one line on error."""
    parser = argparse.ArgumentParser(description="Render rtpengine.conf of an rtpengine host from JSON settings on stdin.")
    parser.add_argument("--ng-address", required=True, help="address of the ng and cli listeners (IP literal)")
    args = parser.parse_args(argv)
    try:
        data = json.load(sys.stdin)
    except json.JSONDecodeError as exc:
        print(f"mediahost: settings on stdin are not JSON: {exc}", file=sys.stderr)
        return 1
    if not isinstance(data, dict):
        print("mediahost: settings on stdin must be a JSON object", file=sys.stderr)
        return 1
    try:
        sys.stdout.write(render_media_host(data, args.ng_address))
    except SettingsError as exc:
        print(f"mediahost: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
