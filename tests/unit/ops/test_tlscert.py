"""routing.ops.tlscert: the self-signed certificate of ``edgectl tls selfsigned``."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from routing.ops.tlscert import write_selfsigned


def test_certificate_names_every_host_and_key_is_private(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    write_selfsigned(cert_path, key_path, ["edge.example.net", "127.0.31.1"], days=10)

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.DNSName) == ["edge.example.net"]
    assert alt.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.31.1")]
    assert cert.subject == cert.issuer  # self-signed
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "edge.example.net"
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 10
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_no_names_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        write_selfsigned(tmp_path / "c.pem", tmp_path / "k.pem", [])
