"""routing.kamailio.identitycheck over the fake KSR: a certificate not cached yet gives ``unverified``
and asks the monitor for it (no download in the call), a cached one is handed to secsipid_check as a
file, whose answer decides; the prechecks refuse a stale or foreign PASSporT without secsipid."""

from __future__ import annotations

import base64
import importlib
import json
import time
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from routing.call.identity import cert_name
from routing.call.plan import CallPlan
from tests.unit.kamailio.conftest import edge_over_fakes
from tests.unit.kamailio.fakeksr import RT, FakeKSR, FakeStore

URL = "https://certs.example.test/shaken.pem"


def identity(iat: float, orig: str = "14155550123") -> str:
    claims = {"attest": "B", "orig": {"tn": orig}, "dest": {"tn": ["14155550100"]}, "iat": int(iat), "origid": "o"}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJFUzI1NiJ9.{payload}.c2ln;info=<{URL}>;alg=ES256;ppt=shaken"


@pytest.fixture
def checking(kemi: types.ModuleType, store: FakeStore, tmp_path: Path) -> Any:
    return edge_over_fakes(kemi, store, replace(RT, stir_verify_dir=str(tmp_path), stir_verify_expire_s=60))


def run(ksr: FakeKSR, router: Any, value: str) -> str:
    module = importlib.import_module("routing.kamailio.identitycheck")
    ksr.pv["$hdr(Identity)"] = value
    plan = CallPlan(call_id="c1", direction="origination", targets=[], caller="+14155550123", verify_identity=True)
    return module.check(router.worker, plan)


def test_no_certificate_yet_asks_the_monitor_and_never_calls_secsipid(ksr: FakeKSR, checking: Any,
                                                                      tmp_path: Path) -> None:
    assert run(ksr, checking, identity(time.time())) == "unverified;reason=no-certificate"
    assert (tmp_path / f"{cert_name(URL)}.url").read_text() == URL
    assert "secsipid.secsipid_check" not in ksr.names()


def test_a_cached_certificate_is_checked_by_secsipid_as_a_file(ksr: FakeKSR, checking: Any, tmp_path: Path) -> None:
    pem = tmp_path / f"{cert_name(URL)}.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    value = identity(time.time())
    assert run(ksr, checking, value) == "valid;attest=B"
    assert ksr.args_of("secsipid.secsipid_check") == [(value, str(pem))]
    ksr.returns["secsipid.secsipid_check"] = -251
    assert run(ksr, checking, value) == "invalid;reason=signature"


# made when the test runs, not when it is collected: a full suite collects this file some 20 minutes
# before it runs it, past the PASSporT's freshness window
@pytest.mark.parametrize(("make", "expected"), [
    (lambda: identity(time.time() - 600), "invalid;reason=expired"),
    (lambda: identity(time.time(), orig="12025550100"), "invalid;reason=orig"),
    (lambda: "garbage", "invalid;reason=malformed"),
    (lambda: identity(time.time()).replace("https://", "file://"), "unverified;reason=url"),
], ids=["expired", "orig", "malformed", "url"])
def test_prechecks_decide_without_secsipid(ksr: FakeKSR, checking: Any, make: Any, expected: str) -> None:
    assert run(ksr, checking, make()) == expected
    assert "secsipid.secsipid_check" not in ksr.names()
