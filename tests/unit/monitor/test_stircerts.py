"""routing.monitor.stircerts against a real HTTP server on loopback: the certificates the call path
asked for are fetched, kept only when they are PEM certificates of an EC P-256 key, refreshed when
old, and a URL that is not allowed is dropped."""

from __future__ import annotations

import datetime
import http.server
import os
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from routing.call.identity import cert_name
from routing.monitor.stircerts import CertFetcher


def certificate(key: object) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shaken.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())  # type: ignore[attr-defined]
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))  # type: ignore[arg-type]
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    files = {"/ec.pem": certificate(ec.generate_private_key(ec.SECP256R1())),
             "/rsa.pem": certificate(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
             "/junk.pem": b"not a certificate"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = files.get(self.path)
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def ask(directory: Path, url: str) -> Path:
    (directory / f"{cert_name(url)}.url").write_text(url)
    return directory / f"{cert_name(url)}.pem"


def test_asked_certificates_are_fetched_checked_and_refreshed(server: str, tmp_path: Path) -> None:
    fetcher = CertFetcher(tmp_path, refresh_s=3600, allow_http=True)
    good, rsa_, junk = (ask(tmp_path, f"{server}/{n}.pem") for n in ("ec", "rsa", "junk"))
    missing = ask(tmp_path, f"{server}/missing.pem")
    outcome = fetcher.sweep()
    assert outcome[f"{server}/ec.pem"] == "fetched" and good.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert outcome[f"{server}/rsa.pem"] == "not an EC P-256 key (ES256)" and not rsa_.exists()
    assert outcome[f"{server}/junk.pem"].startswith("not a PEM certificate") and not junk.exists()
    assert outcome[f"{server}/missing.pem"].startswith("download failed") and not missing.exists()
    assert fetcher.sweep() == {}  # fresh, or failed less than RETRY_S ago: nothing tried
    os.utime(good, (time.time() - 7200, time.time() - 7200))
    assert fetcher.sweep() == {f"{server}/ec.pem": "fetched"}  # older than refresh_s: fetched again
    assert time.time() - good.stat().st_mtime < 60


def test_http_only_when_allowed_and_never_a_file_url(server: str, tmp_path: Path) -> None:
    wanted = ask(tmp_path, f"{server}/ec.pem").with_suffix(".url")
    assert CertFetcher(tmp_path, refresh_s=3600).sweep() == {} and not wanted.exists()  # dropped
    wanted = ask(tmp_path, "file:///etc/passwd").with_suffix(".url")
    assert CertFetcher(tmp_path, 3600, allow_http=True).sweep() == {} and not wanted.exists()
    renamed = tmp_path / f"{cert_name('https://a.test/x.pem')}.url"
    renamed.write_text("https://b.test/y.pem")  # a file whose name is not its URL's
    assert CertFetcher(tmp_path, 3600).sweep() == {} and not renamed.exists()


def test_the_cache_directory_is_shared_with_the_run_directorys_group(tmp_path: Path) -> None:
    import stat as stat_

    from routing.monitor.stircerts import shared_dir

    import grp

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    os.chown(run_dir, -1, grp.getgrnam("nogroup").gr_gid)  # as the run directory's group kamailio (tests run as root)
    directory = run_dir / "stir-certs"
    directory.mkdir()  # made by the monitor (root) before Kamailio: root's group
    shared_dir(directory)
    assert stat_.S_IMODE(directory.stat().st_mode) == 0o2770
    assert directory.stat().st_gid == grp.getgrnam("nogroup").gr_gid
