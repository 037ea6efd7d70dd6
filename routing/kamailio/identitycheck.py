"""The edge's check of a carrier's ``Identity`` header (RFC 8224) on an origination call over a trunk
with ``stir_verify`` (docs/identity.md#checking-inbound-identity-headers).

The PASSporT's claims are read and prechecked in Python (:mod:`routing.call.identity`: malformed,
stale ``iat``, ``orig`` not the caller), its signature by Kamailio's ``secsipid`` module
(``secsipid_check`` with the certificate file, so libsecsipid never downloads anything) against the
certificate the monitor fetched beforehand into ``stir.verify_cache_dir`` as ``<sha256(url)>.pem``
(:mod:`routing.monitor.stircerts`).  **No call waits on a download:** a certificate not cached yet
(or older than ``stir.verify_max_age_s``) gives ``unverified;reason=no-certificate`` and leaves
``<sha256(url)>.url`` for the monitor, so the next calls from that signer are checked.  The
result goes to the agent as ``X-Edge-Identity`` and into the call record (``identity``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import identity
from ..call.plan import CallPlan
from .worker import Worker, log_exception, pv

__all__ = ["check", "HDR_IDENTITY"]

#: the header that carries the result to the agent (docs/headers.md)
HDR_IDENTITY = "X-Edge-Identity"


def check(w: Worker, plan: CallPlan, now: float | None = None) -> str:
    """The ``X-Edge-Identity`` value of the request's (first) ``Identity`` header: ``valid;attest=A``,
    ``invalid;reason=...`` or ``unverified;reason=...`` (:mod:`routing.call.identity`).  Never raises:
    a local problem (the cache directory unwritable) is logged and gives ``unverified;reason=error``."""
    rt = w.settings
    try:
        value = pv("$hdr(Identity)")
        passport = identity.parse_identity(value)
        early = identity.prechecked(passport, plan.caller, time.time() if now is None else now,
                                    rt.stir_verify_expire_s)
        if early or passport is None:
            return early
        if not identity.fetchable(passport.info, rt.stir_verify_http):
            return f"{identity.IDENTITY_UNVERIFIED};reason=url"
        pem = Path(rt.stir_verify_dir) / f"{identity.cert_name(passport.info)}.pem"
        try:
            age = time.time() - pem.stat().st_mtime
        except FileNotFoundError:
            age = None
        if age is None or age > rt.stir_verify_max_age_s:
            _ask(Path(rt.stir_verify_dir), passport.info)
            return f"{identity.IDENTITY_UNVERIFIED};reason=no-certificate"
        return identity.verdict(passport, int(KSR.secsipid.secsipid_check(value, str(pem))))
    except Exception:  # noqa: BLE001 - a check must never fail the call
        log_exception("exception checking an Identity header")
        return f"{identity.IDENTITY_UNVERIFIED};reason=error"


def _ask(directory: Path, url: str) -> None:
    """Leave ``<sha256(url)>.url`` (the URL) for the monitor to fetch; written whole (a temporary
    file renamed), at most once per URL while it waits."""
    directory.mkdir(mode=0o770, parents=True, exist_ok=True)  # the monitor shares it (stircerts.shared_dir)
    wanted = directory / f"{identity.cert_name(url)}.url"
    if wanted.exists():
        return
    tmp = wanted.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(url)
    tmp.replace(wanted)
    KSR.info(f"edge: identity certificate {url} not cached yet: asked the monitor for it\n")
