"""routing.call.rtpset: node URLs, the weighted choice mirroring Kamailio's rtpengine module, node health."""

from __future__ import annotations

import zlib
from collections import Counter

from routing.call.rtpset import (DOWN_AFTER, MEDIA_GONE, MEDIA_STOPPED, NO_MEDIA, RTPENGINE_LOST, health, lost_call,
                                 parse_url, pick)

A, B, C = "udp:10.0.0.1:2223", "udp:10.0.0.2:2223", "udp6:[2001:db8::3]:2224"


def test_parse_url_takes_the_module_forms_and_nothing_else() -> None:
    assert parse_url(A) == ("10.0.0.1", 2223)
    assert parse_url(C) == ("2001:db8::3", 2224)
    assert parse_url("udp:10.0.0.1:2223=3") == ("10.0.0.1", 2223)
    for bad in ("", "udp:", "ws://10.0.0.1:2223/", "udp:10.0.0.1", "tcp:10.0.0.1:1"):
        assert parse_url(bad) is None, bad


def test_pick_spreads_new_sessions_by_weight() -> None:
    counts = Counter(pick([(A, 1), (B, 3)], (), f"call-{i}@host") for i in range(4000))
    assert 0.2 < counts[A] / 4000 < 0.3 and 0.7 < counts[B] / 4000 < 0.8


def test_pick_is_the_modules_crc32_choice_and_stable_per_call_id() -> None:
    """Kamailio 5.6 rtpengine.c select_rtpp_node_new with hash_algo 2 (as the set is rendered): crc32(Call-ID)
    % sum of the weights of the nodes up, walked in the order of rtpengine_sock."""
    for i in range(50):
        key = f"{i}-abc@10.1.1.1"
        cut = zlib.crc32(key.encode()) % 3
        assert pick([(A, 1), (B, 2)], (), key) == (A if cut < 1 else B)
        assert pick([(A, 1), (B, 2)], (), key) == pick([(A, 1), (B, 2)], (), key)


def test_pick_skips_nodes_down_and_gives_none_when_all_are() -> None:
    assert {pick([(A, 1), (B, 1), (C, 1)], {B}, f"k{i}") for i in range(200)} == {A, C}
    assert pick([(A, 1), (B, 1)], {A, B}, "k") is None
    assert pick([], (), "k") is None


def test_health_needs_consecutive_failures_and_one_answer_brings_it_back() -> None:
    failures, dead = 0, False
    for _ in range(DOWN_AFTER - 1):
        failures, dead = health(failures, False, dead)
        assert not dead
    failures, dead = health(failures, True, dead)  # an answer in between starts the count again
    assert (failures, dead) == (0, False)
    for _ in range(DOWN_AFTER):
        failures, dead = health(failures, False, dead)
    assert dead and failures == DOWN_AFTER
    assert health(failures, False, True) == (DOWN_AFTER + 1, True)
    assert health(failures, True, True) == (0, False)


def _reply(last_packet: int) -> dict:
    """An ng ``query`` reply whose newest RTP stream saw its last packet at ``last_packet`` (epoch s)."""
    return {"tags": {"t1": {"medias": [{"type": "audio", "streams": [{"last packet": last_packet, "flags": ["RTP"]}]}]},
                     "t2": {"medias": [{"type": "audio", "streams": [{"last packet": 0, "flags": ["RTP"]}]}]}}}


def test_a_lost_call_without_remote_media_is_released_at_once() -> None:
    """Never answered, or no remote node: its media (if any) died with the edge host."""
    assert lost_call(0, A, _reply(1000), False, 0, 1000, 5) == NO_MEDIA
    assert lost_call(900, "", None, False, 0, 1000, 5) == NO_MEDIA


def test_a_lost_call_whose_media_flows_keeps_its_slots_until_it_stops() -> None:
    assert lost_call(900, A, _reply(998), False, 0, 1000, 5) == ""
    assert lost_call(900, A, _reply(995), False, 0, 1000, 5) == MEDIA_STOPPED
    # silence is counted from the answer at most: a call answered 2 s ago without packets yet is kept
    assert lost_call(998, A, _reply(0), False, 0, 1000, 5) == ""


def test_a_lost_call_gone_from_its_rtpengine_or_whose_rtpengine_is_silent_for_the_timeout_is_released() -> None:
    assert lost_call(900, A, None, True, 0, 1000, 5) == MEDIA_GONE
    assert lost_call(900, A, None, False, 4, 1000, 5) == ""  # not answering for a moment: kept
    assert lost_call(900, A, None, False, 5, 1000, 5) == RTPENGINE_LOST
