"""routing.ops.stirsettings: the stir section is complete when enabled, and names the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from routing.ops.stirsettings import Stir


def test_off_by_default_and_nothing_required() -> None:
    assert Stir().enabled is False


def test_enabled_needs_an_existing_key_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="key_file: .* is not a file"):
        Stir(enabled=True, key_file=tmp_path / "missing.pem", cert_url="https://c.example/cert.pem")


def test_enabled_needs_an_https_certificate_url(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    with pytest.raises(ValidationError, match="cert_url: 'http://c.example/cert.pem' is not an https"):
        Stir(enabled=True, key_file=key, cert_url="http://c.example/cert.pem")
    assert Stir(enabled=True, key_file=key, cert_url="https://c.example/cert.pem").cert_url.startswith("https://")


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="key_path"):
        Stir(key_path="/x")  # type: ignore[call-arg]
