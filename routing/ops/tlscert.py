"""Self-signed TLS certificates for testing the edge's TLS listener (``edgectl tls selfsigned``).

Production edges use a certificate from a CA the carriers trust; this makes a
key pair and a certificate naming the given host names and IP addresses in its
subjectAltName (RFC 5280 section 4.2.1.6), with the ``cryptography`` package.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["write_selfsigned"]


def write_selfsigned(cert_path: Path, key_path: Path, names: list[str], days: int = 365) -> None:
    """Write a P-256 key (mode 0600) and a self-signed certificate valid for ``days`` days.

    Args:
        names: DNS names or IP addresses for the subjectAltName; the first is the CN.

    Raises:
        ValueError: no names given.
    """
    if not names:
        raise ValueError("give at least one host name or address")
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
