"""Render and check the configs of a byoc-edge node for the Ansible edge role.

Runs on the node with the node's venv python, and uses the project's own renderer
(``routing.ops.render.render``, the templates in ``templates/``): the files are exactly what
``edgectl config render`` writes, but into a staging directory, so that Ansible can tell which
ones changed, validate them, and only then put them in place in ``run_dir``.

    edge_config.py render --settings FILE --staging DIR
        Validate the settings and the listen addresses (as `edgectl config render` does),
        write every config into DIR; print JSON {"run_dir", "staging", "files", "differs"}:
        "differs" lists the files whose content is not the one in run_dir yet.
    edge_config.py check --settings FILE --staging DIR
        `kamailio -c` on the staged kamailio.cfg, then a throw-away Kamailio started from the
        same settings on a free loopback port, which must answer SIP OPTIONS through the
        Python plugin (routing.ops.services.kamailio_startup_check, as `edgectl config check`).

Errors: one line on stderr, exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from routing.ops import services
from routing.ops.hostcheck import check_addresses
from routing.ops.render import render
from routing.ops.settings import Settings, SettingsError, load_settings


class Failure(RuntimeError):
    """A check failed; the message says which and why."""


def _write(target: Path, text: str) -> None:
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)


def render_staged(settings: Settings, staging: Path) -> dict[str, object]:
    errors = check_addresses(settings)
    if errors:
        raise Failure("; ".join(errors))
    staging.mkdir(mode=0o700, parents=True, exist_ok=True)
    run_dir = Path(settings.run_dir)
    rendered = render(settings)
    differs = []
    for name, text in rendered.items():
        target = staging / name
        try:
            staged = target.read_text(encoding="utf-8")
        except OSError:
            staged = None
        if staged != text:
            _write(target, text)
        try:
            live = (run_dir / name).read_text(encoding="utf-8")
        except OSError:
            live = None
        if live != text:
            differs.append(name)
    return {"run_dir": str(run_dir), "staging": str(staging), "files": sorted(rendered), "differs": differs}


def check_staged(settings: Settings, staging: Path) -> dict[str, object]:
    kamailio = shutil.which("kamailio") or shutil.which("kamailio", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not kamailio:
        raise Failure("kamailio is not installed")
    env = services.kamailio_environment(staging / "routing.json")
    proc = subprocess.run([kamailio, "-c", "-f", str(staging / "kamailio.cfg")], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = [l for l in proc.stderr.splitlines() if "ERROR" in l or "CRITICAL" in l] or proc.stderr.splitlines()[-5:]
        raise Failure("kamailio -c failed: " + " | ".join(lines))
    try:
        rtt_ms = services.kamailio_startup_check(settings)
    except services.ServiceError as exc:
        raise Failure(str(exc)) from None
    return {"kamailio_c": "ok", "plugin_startup_ms": round(rtt_ms, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description="Render and check byoc-edge configs for Ansible.")
    parser.add_argument("command", choices=["render", "check"])
    parser.add_argument("--settings", required=True, type=Path)
    parser.add_argument("--staging", required=True, type=Path)
    args = parser.parse_args()
    try:
        settings = load_settings(args.settings)
        if args.command == "render":
            result = render_staged(settings, args.staging)
        else:
            result = check_staged(settings, args.staging)
    except (SettingsError, Failure) as exc:
        print(f"edge_config {args.command}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
