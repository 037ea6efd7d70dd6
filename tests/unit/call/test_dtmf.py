"""DTMF policy (routing/call/dtmf.py), the per-side mode in trunks and agents, its edgectl options and
the node default in the settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from routing.tables import admin, keys
from routing.cli import main
from routing.call.dtmf import (
    EVENT_BLOCK_DELAY_MS,
    INBAND_BLOCK_DELAY_MS,
    block_params,
    info_body,
    info_needed,
    DtmfError,
    DtmfMode,
    LoggedDigit,
    info_action,
    logged_entry,
    parse_log_event,
    needs_injection,
    parse_info,
    parse_mode,
    play_flags,
    record_entry,
    sdp_flags,
)
from routing.tables.model import Agent, DataError, Trunk
from routing.call.pipeline import dtmf_mode
from routing.call.plan import CallPlan, Target
from routing.ops.render import render, runtime_settings
from routing.ops.runtime import RuntimeSettings
from routing.ops.settings import Settings, SettingsError, load_settings
from routing.tables.store import RedisStore


# -- modes ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, mode", [("rfc4733", DtmfMode.RFC4733), (" INFO ", DtmfMode.INFO),
                                        ("inband", DtmfMode.INBAND), ("", None), (None, None)])
def test_parse_mode(text: str | None, mode: DtmfMode | None) -> None:
    assert parse_mode(text, "trunk x") is mode


def test_parse_mode_refuses_unknown_naming_the_field() -> None:
    with pytest.raises(DtmfError, match=r"^edge:trunk:x dtmf: must be rfc4733, info or inband, got 'rfc2833'"):
        parse_mode("rfc2833", "edge:trunk:x")


# -- rtpengine flags --------------------------------------------------------------------


def test_rfc4733_both_sides_passes_untouched() -> None:
    assert sdp_flags("rfc4733", "rfc4733", offer=True) == ()
    assert sdp_flags("rfc4733", "rfc4733", offer=False) == ()


def test_offer_to_rfc4733_side_from_tone_side_adds_events_and_detection() -> None:
    assert sdp_flags("inband", "rfc4733", offer=True) == (
        "codec-strip=telephone-event", "codec-transcode=telephone-event", "detect-DTMF")


def test_offer_from_rfc4733_side_to_tone_side_masks_events_and_transcodes() -> None:
    assert sdp_flags("rfc4733", "inband", offer=True) == ("codec-mask=telephone-event", "always-transcode")


def test_no_events_between_sides_that_do_not_use_them() -> None:
    assert sdp_flags("inband", "inband", offer=True) == ("codec-strip=telephone-event",)


@pytest.mark.parametrize("sender, receiver", [("info", "rfc4733"), ("rfc4733", "info"), ("info", "inband"),
                                              ("inband", "info")])
def test_info_side_marks_the_call_for_injection_in_offer_and_answer(sender: str, receiver: str) -> None:
    assert "inject-DTMF" in sdp_flags(sender, receiver, offer=True)
    assert "inject-DTMF" in sdp_flags(sender, receiver, offer=False)
    assert needs_injection(sender, receiver)


@pytest.mark.parametrize("offer", [True, False])
def test_tones_toward_an_info_side_are_detected_in_offer_and_answer(offer: bool) -> None:
    assert "detect-DTMF" in sdp_flags("inband", "info", offer=offer)
    assert sdp_flags("rfc4733", "info", offer=False) == ("inject-DTMF",)  # events need no detector


@pytest.mark.parametrize("sender, receiver, needed", [
    ("rfc4733", "info", True), ("inband", "info", True), ("info", "info", False),
    ("info", "rfc4733", False), ("rfc4733", "inband", False), ("inband", "rfc4733", False),
])
def test_info_is_generated_only_toward_an_info_side_from_another_mode(sender: str, receiver: str,
                                                                       needed: bool) -> None:
    assert info_needed(sender, receiver) is needed


def test_generated_info_body_is_what_the_info_parser_reads() -> None:
    ctype, body = info_body("#", 180)
    assert ctype == "application/dtmf-relay"
    assert body == "Signal=#\r\nDuration=180\r\n"
    assert parse_info(ctype, body) == ("#", 180)
    with pytest.raises(DtmfError):
        info_body("X", 100)


def test_blocking_parameters_per_sender_mode() -> None:
    assert block_params("rfc4733") == {"DTMF-security": "silence", "delay-buffer": EVENT_BLOCK_DELAY_MS}
    assert block_params("inband") == {"DTMF-security": "silence", "delay-buffer": INBAND_BLOCK_DELAY_MS}
    with pytest.raises(ValueError):
        block_params("info")


def test_two_info_sides_need_no_injection_nor_transcoding() -> None:
    assert sdp_flags("info", "info", offer=True) == ("codec-strip=telephone-event",)
    assert sdp_flags("info", "info", offer=False) == ()
    assert not needs_injection("info", "info")


def test_answers_without_info_need_no_flags() -> None:
    assert sdp_flags("inband", "rfc4733", offer=False) == ()
    assert not needs_injection("inband", "rfc4733")


def test_info_converted_only_from_an_info_side_to_another_mode() -> None:
    assert info_action("info", "info") == "relay"
    assert info_action("info", "rfc4733") == "convert"
    assert info_action("inband", "info") == "relay"
    assert info_action("rfc4733", "inband") == "relay"  # no side uses INFO: media not armed for injection


# -- INFO bodies ------------------------------------------------------------------------


@pytest.mark.parametrize("ctype, body, expected", [
    ("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n", ("5", 160)),
    ("Application/DTMF-Relay; charset=utf-8", "signal= #\nduration=250", ("#", 250)),
    ("application/dtmf-relay", "Signal=11\r\n", ("#", None)),
    ("application/dtmf-relay", "Signal=*", ("*", None)),
    ("application/dtmf-relay", "Signal=a", ("A", None)),
    ("application/dtmf", "9\r\n", ("9", None)),
    ("application/dtmf", "10", ("*", None)),
])
def test_parse_info(ctype: str, body: str, expected: tuple[str, int | None]) -> None:
    assert parse_info(ctype, body) == expected


@pytest.mark.parametrize("ctype, body, message", [
    ("application/dtmf-relay", "Duration=160", "without a Signal= line"),
    ("application/dtmf-relay", "Signal=E", "is not a DTMF digit"),
    ("application/dtmf-relay", "Signal=16", "is not a DTMF digit"),
    ("application/dtmf", "", "is not a DTMF digit"),
    ("text/plain", "Signal=5", "is not a DTMF INFO body"),
])
def test_parse_info_refusals(ctype: str, body: str, message: str) -> None:
    with pytest.raises(DtmfError, match=message):
        parse_info(ctype, body)


def test_play_flags_clamp_duration_to_rtpengine_limits() -> None:
    assert play_flags("5", 160, 250, 8) == "code=5 duration=160 volume=8"
    assert play_flags("#", None, 250, 8) == "code=# duration=250 volume=8"
    assert play_flags("1", 40, 250, 8) == "code=1 duration=100 volume=8"
    assert play_flags("1", 90000, 250, 8) == "code=1 duration=5000 volume=8"
    with pytest.raises(DtmfError):
        play_flags("x", 100, 250, 8)


def test_record_entry() -> None:
    assert record_entry("caller", "5", DtmfMode.INFO) == "caller:5:info"
    assert record_entry("callee", "11", "rfc4733") == "callee:#:rfc4733"


# -- rtpengine DTMF log events -----------------------------------------------------------


def test_parse_log_event_as_rtpengine_sends_it() -> None:
    data = (b'{"callid":"c1@h","source_tag":"t1","tags":["t1","t2"],"type":"DTMF","timestamp":1795279261,'
            b'"source_ip":"127.0.4.11","event":11,"duration":200,"volume":10}')
    assert parse_log_event(data) == LoggedDigit("c1@h", "t1", "#", 200)


@pytest.mark.parametrize("data, message", [
    (b"not json", "unreadable"),
    (b'{"type":"DTMF","callid":"c","source_tag":"t","event":16}', "not a DTMF digit"),
    (b'{"type":"other","callid":"c","source_tag":"t","event":1}', "not a DTMF event"),
    (b'{"type":"DTMF","source_tag":"t","event":1}', "unreadable"),
    (b"[1]", "unreadable"),
])
def test_parse_log_event_refusals(data: bytes, message: str) -> None:
    with pytest.raises(DtmfError, match=message):
        parse_log_event(data)


def test_logged_digit_attributed_to_its_side_and_mode() -> None:
    digit = LoggedDigit("c", "caller-tag", "5", 200)
    assert logged_entry(digit, "caller-tag", ("inband", "rfc4733")) == "caller:5:inband"
    other = LoggedDigit("c", "callee-tag", "#", 200)
    assert logged_entry(other, "caller-tag", ("inband", "rfc4733")) == "callee:#:rfc4733"


def test_edge_own_play_of_an_info_digit_is_not_recorded_twice() -> None:
    assert logged_entry(LoggedDigit("c", "caller-tag", "5", 200), "caller-tag", ("info", "rfc4733")) is None


# -- model, admin, call record --------------------------------------------------------------


def test_trunk_and_agent_keep_their_mode_through_redis(redis_client: redis.Redis) -> None:
    admin.put_trunk(redis_client, Trunk("t", cidrs=("192.0.2.1",), dtmf=DtmfMode.INFO))
    admin.put_agent(redis_client, Agent("a", ("sip:a@192.0.2.9",), dtmf=DtmfMode.INBAND))
    admin.put_agent(redis_client, Agent("b", ("sip:b@192.0.2.9",)))
    assert redis_client.hget(keys.trunk("t"), "dtmf") == "info"
    assert redis_client.hget(keys.agent("b"), "dtmf") == ""
    topology = RedisStore(redis_client, "n1").topology()
    assert topology.trunks["t"].dtmf is DtmfMode.INFO
    assert topology.agents["a"].dtmf is DtmfMode.INBAND
    assert topology.agents["b"].dtmf is None


def test_hand_edited_bad_mode_names_key_and_field(redis_client: redis.Redis) -> None:
    admin.put_trunk(redis_client, Trunk("t", cidrs=("192.0.2.1",)))
    redis_client.hset(keys.trunk("t"), "dtmf", "tones")
    with pytest.raises(DataError, match=r"edge:trunk:t dtmf: must be rfc4733, info or inband"):
        RedisStore(redis_client, "n1").topology()


def test_admin_refuses_bad_mode_without_writing(redis_client: redis.Redis) -> None:
    with pytest.raises(DataError, match="dtmf: must be rfc4733, info or inband"):
        admin.put_agent(redis_client, Agent("a", ("sip:a@192.0.2.9",), dtmf="tones"))  # type: ignore[arg-type]
    assert not redis_client.exists(keys.agent("a"))


def test_node_default_applies_to_sides_without_a_mode() -> None:
    rt = RuntimeSettings(dtmf_default="inband")
    assert dtmf_mode(Trunk("t"), rt) == "inband"
    assert dtmf_mode(Agent("a", dtmf=DtmfMode.INFO), rt) == "info"


def test_plan_carries_both_modes_through_the_transaction_avp() -> None:
    plan = CallPlan("c", "origination", [Target("sip:a", "a", dtmf="info")], caller_dtmf="inband")
    again = CallPlan.loads(plan.dumps())
    assert (again.caller_dtmf, again.current.dtmf) == ("inband", "info")


def test_digits_appended_to_the_call_record_in_order(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client, "n1")
    assert not store.record_dtmf("gone", "caller:1:info")  # no record: nothing created
    assert not redis_client.exists(keys.call("n1", "gone"))
    redis_client.hset(keys.call("n1", "c1"), "direction", "origination")
    assert store.record_dtmf("c1", "caller:5:info")
    assert store.record_dtmf("c1", "callee:#:rfc4733")
    assert redis_client.hget(keys.call("n1", "c1"), "dtmf") == "caller:5:info,callee:#:rfc4733"


# -- settings ---------------------------------------------------------------------------


def test_settings_default_and_runtime(tmp_path: Path) -> None:
    assert Settings().dtmf.default_mode == "rfc4733"
    path = tmp_path / "s.yaml"
    path.write_text("dtmf: {default_mode: info, duration_ms: 160, volume_db: 10, log_port: 3333}\n")
    settings = load_settings(path)
    rt = runtime_settings(settings)
    assert (rt.dtmf_default, rt.dtmf_duration_ms, rt.dtmf_volume_db, rt.dtmf_log_port) == ("info", 160, 10, 3333)
    configs = render(settings)
    assert "dtmf-log-dest = 127.0.0.1:3333" in configs["rtpengine.conf"]
    assert "route=ksr_dtmf_log" in configs["kamailio.cfg"]


def test_log_port_must_not_be_the_ng_port(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("rtpengine: {ng_port: 4000}\ndtmf: {log_port: 4000}\n")
    with pytest.raises(SettingsError, match="dtmf.log_port must differ from rtpengine.ng_port"):
        load_settings(path)


def test_log_port_zero_turns_media_digit_recording_off() -> None:
    configs = render(Settings(dtmf={"log_port": 0}))
    assert "dtmf-log-dest" not in configs["rtpengine.conf"]
    assert "ksr_dtmf_log" not in configs["kamailio.cfg"]


def test_settings_bad_mode_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("dtmf: {default_mode: rfc2833}\n")
    with pytest.raises(SettingsError, match=r"dtmf\.default_mode: "):
        load_settings(path)


# -- edgectl ----------------------------------------------------------------------------


@pytest.fixture
def edgectl(tmp_path: Path, redis_server: tuple[str, int], redis_client: redis.Redis):
    host, port = redis_server
    path = tmp_path / "edge.yaml"
    path.write_text(f"redis: {{host: {host}, port: {port}}}\n", encoding="utf-8")
    runner = CliRunner()
    return lambda *args: runner.invoke(main, ["--settings", str(path), *args], catch_exceptions=False)


def test_edgectl_dtmf_option_on_trunk_and_agent(edgectl, redis_client: redis.Redis) -> None:
    assert edgectl("trunk", "add", "t", "--cidr", "192.0.2.1", "--dtmf", "info").exit_code == 0
    assert edgectl("agent", "add", "a", "--uri", "sip:a@192.0.2.9", "--dtmf", "inband").exit_code == 0
    assert edgectl("agent", "add", "b", "--uri", "sip:b@192.0.2.9").exit_code == 0
    assert '"dtmf": "info"' in edgectl("trunk", "show", "t", "--json").output
    assert '"dtmf": "inband"' in edgectl("agent", "show", "a", "--json").output
    assert '"dtmf": null' in edgectl("agent", "show", "b", "--json").output
    shown = edgectl("agent", "show", "b").output
    assert "dtmf" in shown and "node default" in shown
    bad = edgectl("trunk", "add", "u", "--dtmf", "rfc2833")
    assert bad.exit_code != 0 and "rfc2833" in bad.output
    assert not redis_client.exists(keys.trunk("u"))
