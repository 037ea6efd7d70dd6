"""In-dialog requests (routing.kamailio.indialog)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.kamailio.fakeksr import FakeKSR, MSG, request


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
