"""The edge's check of a carrier's ``Identity`` header (RFC 8224) on the running edge: a carrier on a
trunk with ``stir_verify`` sends PASSporTs signed (PyJWT, ES256) with a test key whose certificate an
HTTP server on loopback serves.  Proves: the first call is not held for the download (the agent gets
``X-Edge-Identity: unverified;reason=no-certificate`` at once) and the monitor caches the certificate;
then secsipid's check decides: a good PASSporT ``valid;attest=A`` (also in the call record), one whose
claims were changed after signing ``invalid;reason=signature``, one for another caller
``invalid;reason=orig``; a trunk without ``stir_verify`` passes no verdict."""

from __future__ import annotations

import datetime
import http.server
import threading
import time
import uuid
from dataclasses import replace
from typing import Iterator

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from routing.call.identity import cert_name
from routing.ops import services
from routing.ops.stirsettings import Stir
from routing.tables import admin
from routing.tables.cdrstore import CdrStore
from tests.helpers import free_port, wait_until
from tests.sipp import reject_uac_scenario, uac, uas

from .conftest import AGENT_IP, CARRIER_A, CARRIER_C, DID, Edge
from .replies import header_values

CALLER = "+14155550123"


@pytest.fixture(scope="module")
def signer() -> Iterator[tuple[ec.EllipticCurvePrivateKey, str]]:
    """A P-256 key and the URL of its self-signed certificate, served over HTTP on loopback."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "carrier-a shaken")])
    now = datetime.datetime.now(datetime.timezone.utc)
    pem = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
           .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if self.path == "/shaken.pem" else 404)
            self.end_headers()
            self.wfile.write(pem if self.path == "/shaken.pem" else b"")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer((CARRIER_C, free_port(CARRIER_C)), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield key, f"http://{CARRIER_C}:{httpd.server_address[1]}/shaken.pem"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def verifying_edge(edge: Edge, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """Kamailio and the monitor restarted with ``stir.verify`` (http:// certificate URLs allowed for the
    loopback server), and with the usual settings afterwards."""
    usual = edge.settings
    stir = Stir(verify=True, verify_http=True, verify_cache_dir=tmp_path_factory.mktemp("stir-certs"))
    edge.settings = usual.model_copy(update={"stir": stir})
    try:
        for service in ("kamailio", "monitor"):
            services.restart(edge.settings, service)
        yield edge
    finally:
        edge.settings = usual
        for service in ("kamailio", "monitor"):
            services.restart(usual, service)


def identity(key: ec.EllipticCurvePrivateKey, url: str, orig: str = CALLER, attest: str = "A") -> str:
    """An RFC 8224 Identity header value: a SHAKEN PASSporT signed now."""
    claims = {"attest": attest, "dest": {"tn": [DID.lstrip("+")]}, "iat": int(time.time()),
              "orig": {"tn": orig.lstrip("+")}, "origid": str(uuid.uuid4())}
    token = jwt.encode(claims, key, algorithm="ES256", headers={"ppt": "shaken", "typ": "passport", "x5u": url})
    return f"{token};info=<{url}>;alg=ES256;ppt=shaken"


def verdicts(edge: Edge, headers: list[str], caller: str = CALLER) -> list[list[str]]:
    """Each Identity value in turn on a carrier-a call to the DID; the X-Edge-Identity values the agent got."""
    agent = uas(edge.workdir / f"agent-{uuid.uuid4().hex[:6]}", AGENT_IP, 5090, scenario="uas_answer.xml",
                calls=len(headers), answer_ms=50, rtp_echo=False)
    for value in headers:
        call = uac(edge.workdir / f"carrier-{uuid.uuid4().hex[:6]}", CARRIER_A, 5070, edge.sip, DID, caller=caller,
                   scenario=reject_uac_scenario(edge.workdir, extra_headers=f"      Identity: {value}\n"))
        assert call.wait() == 0, call.output()
        assert call.final_status() == [(200, "OK")]
    assert agent.wait() == 0, agent.output()
    return [header_values(invite, "X-Edge-Identity") for invite in agent.received_requests("INVITE")]


def test_inbound_identity_checked_against_a_certificate_fetched_ahead(
        verifying_edge: Edge, clean_edge: Edge, signer: tuple[ec.EllipticCurvePrivateKey, str]) -> None:
    edge, (key, url) = clean_edge, signer
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], probe=False, stir_verify=True)
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [], probe=False)
    edge.did(DID, "carrier-a", "bot")
    cached = edge.settings.stir.cert_dir(edge.settings.run_dir) / f"{cert_name(url)}.pem"
    assert not cached.exists()
    # the first call is not held: unverified at once, the URL left for the monitor
    started = time.monotonic()
    assert verdicts(edge, [identity(key, url)]) == [["unverified;reason=no-certificate"]]
    assert time.monotonic() - started < 3
    wait_until(cached.exists, timeout=10, what="the monitor caching the certificate")
    good = identity(key, url)
    token, _, params = good.partition(";")
    head, _, sig = token.split(".")
    forged = ".".join([head, identity(key, url, attest="C").split(".")[1], sig]) + ";" + params  # claims changed
    since = int(time.time() * 1000)
    assert verdicts(edge, [good, forged]) == [["valid;attest=A"], ["invalid;reason=signature"]]
    assert verdicts(edge, [identity(key, url)], caller="+12025550100") == [["invalid;reason=orig"]]
    records = wait_until(lambda: (found := CdrStore(edge.redis, 86400).records(since, int(time.time() * 1000) + 1000))
                         and len(found) >= 3 and found, what="the call records")
    assert [r["identity"] for r in records] == ["valid;attest=A", "invalid;reason=signature", "invalid;reason=orig"]
    # a trunk without stir_verify: no verdict
    trunk = admin.get_trunk(edge.redis, "carrier-a")
    assert trunk is not None
    admin.put_trunk(edge.redis, replace(trunk, stir_verify=False), replace=True)
    assert verdicts(edge, [identity(key, url)]) == [[]]
