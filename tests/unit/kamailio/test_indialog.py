"""In-dialog requests (routing.kamailio.indialog)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from routing.call import dtmf
from tests.unit.kamailio.fakehtable import HTables
from tests.unit.kamailio.fakeksr import FakeKSR, FakeStore, MSG, request, RT


# -- re-offers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("from_tag, expected", [
    ("caller-tag", ["direction=carrier", "direction=agent"]),  # re-INVITE from the carrier (the caller)
    ("callee-tag", ["direction=agent", "direction=carrier"]),  # re-INVITE/UPDATE from the agent
])
def test_in_dialog_offer_names_the_senders_interface_first(ksr: FakeKSR, sided_router: Any, from_tag: str,
                                                           expected: list[str]) -> None:
    request(ksr, **{"$ft": from_tag, "$dlg(from_tag)": "caller-tag", "$dlg_var(edge_dir)": "origination"})
    ksr.returns["siputils.has_totag"] = 1
    sided_router.ksr_in_dialog(MSG)
    assert ksr.replies == []
    (flags,) = ksr.args_of("rtpengine.rtpengine_manage")[0]
    assert flags.split()[-2:] == expected
    assert ksr.args_of("tm.t_relay") == [()]  # relayed by the plugin, in the dialog's route set
    assert ksr.pv["$avp(edge_dir)"] == "origination"  # for the reply route's answer


# -- REFER --------------------------------------------------------------------------------------------


def _in_dialog(ksr: FakeKSR, method: str, **pvs: Any) -> None:
    """An in-dialog request from the caller of an origination call (trunk telnyx, agent bot)."""
    request(ksr, method=method, **{"$ft": "ft1", "$dlg(from_tag)": "ft1", "$dlg_var(edge_dir)": "origination",
                                   "$dlg_var(edge_trunk)": "telnyx", "$dlg_var(edge_agent)": "bot", **pvs})
    ksr.returns["siputils.has_totag"] = 1
    ksr.returns["textops.has_body_type"] = -1


# -- DTMF INFO --------------------------------------------------------------------------------------------


class Message:
    """The message object app_python3 hands over: ``call_function`` reaches cfg-only functions."""

    def __init__(self, result: int = 1) -> None:
        self.called: list[tuple[str, tuple[Any, ...]]] = []
        self.result = result

    def call_function(self, name: str, *args: Any) -> int:
        self.called.append((name, args))
        return self.result


@pytest.fixture
def digits(store: FakeStore) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    store.record_dtmf = lambda call_id, entry: out.append((call_id, entry))  # type: ignore[attr-defined]
    return out


def _info(ksr: FakeKSR, router: Any, modes: str, body: str = "Signal=5\r\nDuration=160\r\n",
          played: int = 1) -> Message:
    _in_dialog(ksr, "INFO", **{"$cT": "application/dtmf-relay", "$rb": body, "$dlg_var(edge_dtmf)": modes})
    msg = Message(played)
    router.ksr_in_dialog(msg)
    return msg


def test_info_digit_toward_a_side_without_info_is_answered_and_played_into_its_media(
        ksr: FakeKSR, router: Any, digits: list) -> None:
    msg = _info(ksr, router, "info,rfc4733")
    assert digits == [("call-1", "caller:5:info")]
    assert msg.called == [("play_dtmf", (dtmf.play_flags("5", 160, RT.dtmf_duration_ms, RT.dtmf_volume_db),))]
    assert ksr.replies == [("tm", 200, "OK")] and ksr.args_of("tm.t_relay") == []


def test_info_digit_is_relayed_when_rtpengine_cannot_play_it(ksr: FakeKSR, router: Any, digits: list) -> None:
    _info(ksr, router, "info,rfc4733", played=-1)
    assert digits == [("call-1", "caller:5:info")]
    assert ksr.replies == [] and ksr.args_of("tm.t_relay") == [()]


def test_info_digit_between_two_info_sides_is_recorded_and_relayed(ksr: FakeKSR, router: Any,
                                                                   digits: list) -> None:
    msg = _info(ksr, router, "info,info")
    assert digits == [("call-1", "caller:5:info")]
    assert msg.called == [] and ksr.args_of("tm.t_relay") == [()]


def test_info_without_a_digit_gets_400(ksr: FakeKSR, router: Any, digits: list) -> None:
    _info(ksr, router, "info,rfc4733", body="Duration=160\r\n")
    assert ksr.replies == [("tm", 400, "Bad DTMF Signal")]
    assert digits == [] and ksr.args_of("tm.t_relay") == []


# -- the ACK ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("refused", [True, False])
def test_ack_of_a_call_whose_answer_broke_the_policy_is_relayed_and_the_call_ended_at_the_next_tick(
        ksr: FakeKSR, router: Any, store: FakeStore, refused: bool) -> None:
    ht = HTables(ksr)
    state = {"start": 1, **({"media_refused": [488, "SRTP Required", "srtp_required"]} if refused else {})}
    ht.table("cdr")["call-1"] = json.dumps(state)
    ht.table("deadline")["call-1"] = "1900000000:11:22:ft1:tt1"
    store.record_media = lambda call_id, fields, keep_s=0: True  # type: ignore[attr-defined]
    _in_dialog(ksr, "ACK")
    before = int(time.time())
    router.ksr_in_dialog(MSG)
    assert ksr.args_of("tm.t_relay") == [()] and ksr.replies == []
    due = int(ht.table("deadline")["call-1"].split(":")[0])
    assert (before <= due <= before + 1) if refused else due == 1900000000
