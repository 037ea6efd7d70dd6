"""routing.ops.runtime: routing.json read back into RuntimeSettings."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from routing.ops.runtime import ENV_VAR, RuntimeSettings, load


def write(tmp_path: Path, data: object) -> str:
    path = tmp_path / "routing.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def test_known_keys_are_read_and_unknown_ones_ignored(tmp_path: Path) -> None:
    rt = load(write(tmp_path, {"node": "n9", "redis_port": 6399, "retry_after_s": 11, "from_a_newer_edge": True}))
    assert rt == RuntimeSettings(node="n9", redis_port=6399, retry_after_s=11)


def test_missing_keys_take_the_defaults(tmp_path: Path) -> None:
    assert load(write(tmp_path, {})) == RuntimeSettings()


def test_lists_become_tuples(tmp_path: Path) -> None:
    rt = load(write(tmp_path, {"python_paths": ["/opt/edge"], "blocked_prefixes": ["+1900", "+44870"],
                               "scanner_user_agents": ["sipvicious"], "media_private_networks": ["10.0.0.0/8"]}))
    assert rt.python_paths == ("/opt/edge",)
    assert rt.blocked_prefixes == ("+1900", "+44870")
    assert rt.scanner_user_agents == ("sipvicious",)
    assert rt.media_private_networks == ("10.0.0.0/8",)


def test_shed_sockets_become_address_and_integer_port_pairs(tmp_path: Path) -> None:
    rt = load(write(tmp_path, {"shed_sockets": [["127.0.0.1", "5060"], ["::1", 5070]]}))
    assert rt.shed_sockets == (("127.0.0.1", 5060), ("::1", 5070))


def test_reg_contacts_become_transport_and_address_pairs(tmp_path: Path) -> None:
    rt = load(write(tmp_path, {"reg_contacts": [["udp", "203.0.113.1:5060"], ["tls", "203.0.113.1:5061"]]}))
    assert rt.reg_contacts == (("udp", "203.0.113.1:5060"), ("tls", "203.0.113.1:5061"))
    assert dict(rt.reg_contacts)["tls"] == "203.0.113.1:5061"


def test_settings_read_back_equal_the_ones_written(tmp_path: Path) -> None:
    """Every tuple field of a RuntimeSettings survives JSON (lists) and load()."""
    written = RuntimeSettings(node="n2", python_paths=("/a", "/b"), reg_contacts=(("udp", "192.0.2.1:5060"),),
                              shed_sockets=(("192.0.2.1", 5060),), media_trunk={"codecs": ["PCMU"]},
                              sip_sockets={"carrier": {"udp": "udp:192.0.2.1:5060"}})
    data = {field.name: getattr(written, field.name) for field in fields(written)}
    assert load(write(tmp_path, data)) == written


def test_path_comes_from_the_environment_and_none_means_the_defaults(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, write(tmp_path, {"node": "from-env"}))
    assert load().node == "from-env"
    monkeypatch.delenv(ENV_VAR)
    assert load() == RuntimeSettings()


def test_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        load(str(tmp_path / "absent.json"))


@pytest.mark.parametrize("text", ["{not json", "", '{"node": "n1",}'])
def test_text_that_is_not_json_raises_valueerror(tmp_path: Path, text: str) -> None:
    path = tmp_path / "routing.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError):
        load(str(path))


@pytest.mark.parametrize("text", ["[]", '"edge1"', "42"])
def test_json_that_is_not_an_object_raises_valueerror(tmp_path: Path, text: str) -> None:
    path = tmp_path / "routing.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="not a JSON object"):
        load(str(path))
