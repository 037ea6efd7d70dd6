"""The carrier's STIR/SHAKEN verification of the caller (routing.call.identity)."""

from __future__ import annotations

import pytest

from routing.call.identity import verstat


@pytest.mark.parametrize(("from_user", "pai", "expected"), [
    ("+14155550123;verstat=TN-Validation-Passed", "", "TN-Validation-Passed"),
    ("+14155550123", "<sip:+14155550123;verstat=TN-Validation-Failed@carrier.example;user=phone>", "TN-Validation-Failed"),
    ("+14155550123;VERSTAT=No-TN-Validation", "<sip:+1;verstat=TN-Validation-Passed@x>", "No-TN-Validation"),  # From first
    ("+14155550123", "<tel:+14155550123;verstat=TN-Validation-Passed>", "TN-Validation-Passed"),
    ("+14155550123", "", ""),
    ("+14155550123;verstat=bad value<script>", "", "bad"),  # a token only: nothing else reaches a header
])
def test_verstat_from_the_from_user_else_the_pai(from_user: str, pai: str, expected: str) -> None:
    assert verstat(from_user, pai) == expected


# -- the edge's own check of an Identity header --------------------------------------------------

import base64 as _b64  # noqa: E402
import json as _json  # noqa: E402

from routing.call.identity import cert_name, fetchable, parse_identity, prechecked, verdict  # noqa: E402


def _identity(claims: object, params: str = ";info=<https://c.test/a.pem>;alg=ES256;ppt=shaken") -> str:
    payload = _b64.urlsafe_b64encode(_json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJFUzI1NiJ9.{payload}.c2ln{params}"


def test_parse_identity_reads_the_claims_and_the_info_url() -> None:
    p = parse_identity(_identity({"attest": "A", "orig": {"tn": "14155550123"}, "iat": 1700000000}))
    assert p is not None and (p.info, p.attest, p.orig, p.iat) == ("https://c.test/a.pem", "A", "14155550123", 1700000000)
    assert parse_identity(_identity({"attest": "A"}, params=";alg=ES256")) is None  # no info
    assert parse_identity("a.b;info=<https://c.test/a.pem>") is None  # two parts
    assert parse_identity(_identity([1, 2])) is None  # a payload that is no object


def test_prechecks_and_verdicts() -> None:
    p = parse_identity(_identity({"attest": "C", "orig": {"tn": "14155550123"}, "iat": 1000}))
    assert prechecked(p, "+14155550123", now_s=1030, expire_s=60) == ""
    assert prechecked(p, "+14155550123", now_s=1061, expire_s=60) == "invalid;reason=expired"
    assert prechecked(p, "+12025550100", now_s=1030, expire_s=60) == "invalid;reason=orig"
    assert prechecked(None, "+14155550123", now_s=1030, expire_s=60) == "invalid;reason=malformed"
    assert p is not None and verdict(p, 1) == "valid;attest=C"
    assert [verdict(p, code) for code in (-251, -232, -205, -1)] == [
        "invalid;reason=signature", "invalid;reason=expired", "invalid;reason=info", "invalid;reason=secsipid-1"]


def test_only_https_urls_are_fetched_unless_http_is_allowed_and_names_are_hashes() -> None:
    assert fetchable("https://c.test/a.pem") and not fetchable("http://c.test/a.pem")
    assert fetchable("http://c.test/a.pem", allow_http=True) and not fetchable("file:///etc/passwd", allow_http=True)
    assert len(cert_name("https://c.test/../../etc")) == 64 and "/" not in cert_name("https://c.test/a/b")
