"""The settings file: loading, defaults, and one-line errors naming the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from routing.ops.settings import Settings, SettingsError, load_settings


def write_yaml(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_no_file_gives_the_embedded_default() -> None:
    settings = load_settings(None)
    assert settings == Settings()
    assert [(l.transport, l.address, l.port) for l in settings.sip.listen] == [
        ("udp", "127.0.0.1", 5060),
        ("tcp", "127.0.0.1", 5060),
    ]


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("", encoding="utf-8")
    assert load_settings(path).sip == Settings().sip


def test_errors_name_the_field_path(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "edge.yaml", {"sip": {"listen": [{"port": 70000}]}})
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "sip.listen.0.port: Input should be less than or equal to 65535" in message


def test_every_bad_field_is_named(tmp_path: Path) -> None:
    data = {
        "node": "bad node!",
        "sip": {"listen": [{"address": "127.0.0.1"}, {"address": "not-an-ip"}], "workers": 0},
        "redis": {"db": 99},
    }
    with pytest.raises(SettingsError) as info:
        load_settings(write_yaml(tmp_path / "edge.yaml", data))
    message = str(info.value)
    for field in ("node:", "sip.listen.1.address:", "sip.workers:", "redis.db:"):
        assert field in message, (field, message)
    assert "sip.listen.0" not in message


def test_model_validator_errors_name_the_section(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "edge.yaml", {"rtpengine": {"port_min": 30000, "port_max": 30050}})
    with pytest.raises(SettingsError, match=r"rtpengine: Value error, port_max must be at least port_min \+ 100"):
        load_settings(path)


def test_stranger_retention_cannot_outlast_the_retention(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "edge.yaml", {"cdr": {"retention_days": 3, "stranger_retention_days": 7}})
    with pytest.raises(SettingsError, match=r"cdr: Value error, stranger_retention_days must not exceed retention_days"):
        load_settings(path)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"bogus": 1}, "bogus"),
        ({"sip": {"listen_on": []}}, "sip.listen_on"),
        ({"sip": {"listen": [{"address": "127.0.0.1", "prot": 5060}]}}, "sip.listen.0.prot"),
        ({"redis": {"host": "127.0.0.1", "passwd": "x"}}, "redis.passwd"),
    ],
)
def test_unknown_keys_are_rejected(tmp_path: Path, data: dict[str, object], field: str) -> None:
    with pytest.raises(SettingsError, match=rf"{field}: Extra inputs are not permitted"):
        load_settings(write_yaml(tmp_path / "edge.yaml", data))


def test_relative_run_dir_is_resolved_against_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(write_yaml(conf_dir / "edge.yaml", {"run_dir": "state/run"}))
    assert settings.run_dir == (conf_dir / "state" / "run").resolve()
    assert settings.run_dir.is_absolute()
    settings = load_settings(write_yaml(conf_dir / "edge2.yaml", {"run_dir": "../shared"}))
    assert settings.run_dir == (tmp_path / "shared").resolve()


def test_absolute_run_dir_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "run"
    settings = load_settings(write_yaml(tmp_path / "edge.yaml", {"run_dir": str(target)}))
    assert settings.run_dir == target


def test_yaml_syntax_error_is_one_settings_error(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("sip:\n  listen: [\n  workers: 3\n", encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not valid YAML: ")
    assert "line 2" in message
    assert "\n" not in message  # one line for the CLI
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="expected a mapping at the top level"):
        load_settings(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(SettingsError, match=rf"^{path}: No such file or directory$"):
        load_settings(path)


# -- render ----------------------------------------------------------------------------------------


def test_keepalive_interval_below_the_dialog_modules_minimum_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("media: {keepalive_interval_s: 10}\n")
    with pytest.raises(SettingsError, match="keepalive_interval_s"):
        load_settings(path)


# -- redis Sentinel -------------------------------------------------------------------------------


def test_a_sentinel_set_is_the_store_and_reaches_every_client(tmp_path: Path) -> None:
    from routing.ops.render import render, runtime_settings
    from routing.ops.runtime import load

    data = {"redis": {"manage": False, "sentinels": ["10.0.0.1:26379", "10.0.0.2", "[2001:db8::3]:26380"],
                      "master_name": "edge-store", "password": "pw", "strict_admission": True, "replica_wait_ms": 50}}
    settings = load_settings(write_yaml(tmp_path / "edge.yaml", data))
    args = settings.redis.client_args()
    assert args["sentinels"] == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("2001:db8::3", 26380))
    assert (args["master_name"], args["password"]) == ("edge-store", "pw")
    rt = runtime_settings(settings)
    assert (rt.redis_sentinels, rt.redis_master_name, rt.redis_strict_wait_ms) == (args["sentinels"], "edge-store", 50)
    (tmp_path / "routing.json").write_text(render(settings)["routing.json"])
    assert load(str(tmp_path / "routing.json")).redis_sentinels == args["sentinels"]  # tuples again
    # without Sentinels, no master name reaches the plugin, and no WAIT without strict_admission
    plain = runtime_settings(Settings())
    assert (plain.redis_sentinels, plain.redis_master_name, plain.redis_strict_wait_ms) == ((), "", 0)


@pytest.mark.parametrize("redis_section, message", [
    ({"sentinels": ["10.0.0.1:26379"]}, "redis: Value error, sentinels: edgectl does not start a Sentinel set"),
    ({"manage": False, "sentinels": ["10.0.0.1:99999"]}, "redis.sentinels.0: Value error, '10.0.0.1:99999'"),
    ({"manage": False, "sentinels": ["a:1", "a:1"]}, "redis: Value error, sentinels: a Sentinel is listed twice"),
    ({"manage": False, "master_name": "no spaces"}, "redis.master_name: String should match pattern"),
    ({"replica_wait_ms": 0}, "redis.replica_wait_ms: Input should be greater than or equal to 1"),
])
def test_sentinel_errors_name_the_field(tmp_path: Path, redis_section: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(write_yaml(tmp_path / "edge.yaml", {"redis": redis_section}))
    assert message in str(info.value), str(info.value)


def test_capture_errors_name_the_field(tmp_path: Path) -> None:
    for data, expected in (
        ({"capture": {"max_mb": 0}}, "capture.max_mb: Input should be greater than or equal to 1"),
        ({"capture": {"max_age_s": 0}}, "capture.max_age_s: Input should be greater than or equal to 1"),
        ({"capture": {"hep_address": "homer"}}, "capture.hep_address:"),
        ({"capture": {"port": 2223}}, "capture.port must differ from rtpengine.ng_port"),
        ({"sip": {"listen": [{"address": "::1"}]}}, "capture.address 127.0.0.1: no UDP listener of its IP family"),
    ):
        with pytest.raises(SettingsError, match=re.escape(expected)):
            load_settings(write_yaml(tmp_path / "edge.yaml", data))


def test_capture_defaults() -> None:
    settings = Settings()
    assert settings.capture.enabled and settings.capture.max_bytes == 512_000_000
    assert settings.capture_path == Path(settings.run_dir) / "captures"
    assert Settings.model_validate({"sip": {"listen": [{"address": "::1"}]}, "capture": {"enabled": False}})
