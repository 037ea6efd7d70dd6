"""The certificates inbound ``Identity`` headers are checked against, fetched ahead of the calls
(a thread of the monitor; docs/identity.md#checking-inbound-identity-headers).

Kamailio never downloads during a call: when a PASSporT names a certificate URL not cached yet,
:mod:`routing.kamailio.identitycheck` leaves ``<sha256(url)>.url`` (the URL) in
``stir.verify_cache_dir``.  Every second this fetcher takes each such URL whose ``<name>.pem`` is
missing or older than ``stir.verify_refresh_s``, downloads it (``https://``, ``http://`` only with
``stir.verify_http``; at most :data:`MAX_BYTES`, :data:`TIMEOUT_S` s), keeps it only when it is a
PEM X.509 certificate with an EC P-256 key (the ES256 key a PASSporT is signed with, RFC 8225), and
writes it whole (a temporary file renamed).  A URL that fails is tried again after
:data:`RETRY_S` s.  The chain to an STI-CA root is not validated (nor by secsipid: docs/identity.md).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from routing.call.identity import cert_name, fetchable

__all__ = ["CertFetcher", "run", "shared_dir", "MAX_BYTES", "TIMEOUT_S", "RETRY_S"]

log = logging.getLogger("byoc_edge.stircerts")
#: the largest certificate file taken (bytes)
MAX_BYTES = 64 * 1024
#: one download's timeout (s)
TIMEOUT_S = 3.0
#: a URL whose download failed is tried again after (s)
RETRY_S = 30.0


class CertFetcher:
    """Fetches the certificates the call path asked for into ``directory``.

    Args:
        directory: ``stir.verify_cache_dir`` (:func:`shared_dir`).
        refresh_s: a cached certificate is fetched again when older than this (s).
        allow_http: ``http://`` URLs are fetched too (``stir.verify_http``).
    """

    def __init__(self, directory: Path, refresh_s: int, allow_http: bool = False) -> None:
        self.directory = Path(directory)
        self.refresh_s = refresh_s
        self.allow_http = allow_http
        self._failed: dict[str, float] = {}

    def sweep(self, now: float | None = None) -> dict[str, str]:
        """One pass over the wanted URLs; returns URL -> ``fetched`` or the reason it was not, for
        the URLs it tried (a fresh certificate, or a failure being waited out, is not tried)."""
        now = time.time() if now is None else now
        shared_dir(self.directory)
        out: dict[str, str] = {}
        for wanted in sorted(self.directory.glob("*.url")):
            url = wanted.read_text(errors="replace").strip()
            if cert_name(url) != wanted.stem or not fetchable(url, self.allow_http):
                log.warning("stir: not fetching %r (not an allowed certificate URL)", url)
                wanted.unlink(missing_ok=True)
                continue
            pem = wanted.with_suffix(".pem")
            if pem.exists() and now - pem.stat().st_mtime < self.refresh_s:
                continue
            if now - self._failed.get(url, -RETRY_S) < RETRY_S:
                continue
            out[url] = outcome = self._fetch(url, pem)
            if outcome == "fetched":
                self._failed.pop(url, None)
                log.info("stir: certificate %s cached", url)
            else:
                self._failed[url] = now
                log.warning("stir: cannot cache certificate %s: %s", url, outcome)
        return out

    def _fetch(self, url: str, pem: Path) -> str:
        """Download ``url`` into ``pem``; ``fetched``, or why not."""
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:  # noqa: S310 - scheme checked by fetchable
                data = reply.read(MAX_BYTES + 1)
        except urllib.error.HTTPError as exc:
            exc.close()  # its response holds the connection
            return f"download failed: HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return f"download failed: {exc}"
        if len(data) > MAX_BYTES:
            return f"larger than {MAX_BYTES} bytes"
        try:
            cert = x509.load_pem_x509_certificate(data)
        except ValueError as exc:
            return f"not a PEM certificate: {exc}"
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            return "not an EC P-256 key (ES256)"
        tmp = pem.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.chmod(0o644)
        tmp.replace(pem)
        return "fetched"


def shared_dir(directory: Path) -> None:
    """Create ``directory`` when missing and share it with Kamailio, which runs as another user
    (Ansible: ``kamailio``) and leaves its requests there: the group of its parent (the run
    directory's, ``kamailio``), mode 2770 (new files keep that group); certificates are written 0644.
    A directory this process may not change is left as it is."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        gid = directory.parent.stat().st_gid
        if directory.stat().st_gid != gid:
            os.chown(directory, -1, gid)
        if stat.S_IMODE(directory.stat().st_mode) != 0o2770:
            directory.chmod(0o2770)
    except PermissionError as exc:
        log.warning("stir: cannot share %s with Kamailio: %s", directory, exc)


def run(fetcher: CertFetcher, interval_s: float, stop: threading.Event) -> None:
    """:meth:`CertFetcher.sweep` every ``interval_s`` until ``stop``; a round that fails is logged."""
    while not stop.wait(interval_s):
        try:
            fetcher.sweep()
        except OSError as exc:  # the directory unwritable: said, tried again
            log.error("stir: certificate cache %s: %s", fetcher.directory, exc)
