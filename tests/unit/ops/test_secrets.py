"""routing.ops.secrets: trunk passwords encrypted with a key kept outside redis (Fernet)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from routing.ops.secrets import SecretBox, SecretError, create_key


def test_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "secret.key"
    assert create_key(key) is True
    first = key.read_bytes()
    assert create_key(key) is False and key.read_bytes() == first
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_a_secret_round_trips_and_its_token_is_not_the_secret(tmp_path: Path) -> None:
    create_key(tmp_path / "k")
    box = SecretBox(tmp_path / "k")
    token = box.encrypt("s3cret-pässword")
    assert "s3cret" not in token
    assert box.decrypt(token) == "s3cret-pässword"


def test_a_token_of_another_key_is_one_line_error(tmp_path: Path) -> None:
    create_key(tmp_path / "a")
    create_key(tmp_path / "b")
    token = SecretBox(tmp_path / "a").encrypt("x")
    with pytest.raises(SecretError):
        SecretBox(tmp_path / "b").decrypt(token)


def test_missing_or_invalid_key_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match=f"secret key file {tmp_path / 'none'}: No such file"):
        SecretBox(tmp_path / "none")
    (tmp_path / "bad").write_text("not a key")
    with pytest.raises(SecretError, match="not a valid key"):
        SecretBox(tmp_path / "bad")
