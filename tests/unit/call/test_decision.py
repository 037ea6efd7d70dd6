"""routing.call.decision: the Reason table, the stage of each refusal tag, Reject values."""

from __future__ import annotations

import dataclasses
import re

import pytest

from routing.call.decision import STAGE_OF_TAG, Reason, Reject

#: every Reason constant: name -> (code, phrase, tag)
REASONS = {name: value for name, value in vars(Reason).items() if name.isupper()}
#: refusals the native admission route answers before any Python runs (never recorded for explain)
NATIVE_ADMISSION_TAGS = {Reason.NODE_CPS[2], Reason.NODE_CALLS[2], Reason.NODE_OVERLOADED[2]}


def test_every_reason_is_a_code_a_phrase_and_a_tag() -> None:
    assert len(REASONS) > 20
    for name, value in REASONS.items():
        code, phrase, tag = value
        assert isinstance(code, int) and isinstance(phrase, str) and isinstance(tag, str), name
        assert phrase.strip() == phrase and phrase, name


def test_every_reason_code_is_a_final_4xx_to_6xx() -> None:
    assert {name: value[0] for name, value in REASONS.items() if not 400 <= value[0] <= 699} == {}


def test_every_refusal_answers_its_own_code_and_phrase() -> None:
    answers = [(code, phrase) for code, phrase, _ in REASONS.values()]
    assert len(answers) == len(set(answers))


def test_rejection_reasons_are_stable_snake_case_codes() -> None:
    tags = [v[2] for k, v in vars(Reason).items() if k.isupper()]
    assert all(re.fullmatch(r"[a-z_]+", t) for t in tags)
    assert len(tags) == len(set(tags))


def test_every_reason_tag_has_a_stage_for_edgectl_explain() -> None:
    assert {tag for _, _, tag in REASONS.values()} - set(STAGE_OF_TAG) == set()


def test_every_reason_tag_but_the_native_admissions_has_a_stage() -> None:
    missing = {tag for _, _, tag in REASONS.values()} - set(STAGE_OF_TAG)
    assert missing - NATIVE_ADMISSION_TAGS == set()


def test_stages_are_short_lower_case_names() -> None:
    assert all(re.fullmatch(r"[a-z]+", stage) for stage in STAGE_OF_TAG.values())


@pytest.mark.parametrize("name", sorted(REASONS))
def test_reject_of_builds_code_reason_and_tag(name: str) -> None:
    code, phrase, tag = REASONS[name]
    reject = Reject.of(REASONS[name])
    assert (reject.code, reject.reason, reject.tag, reject.retry_after_s) == (code, phrase, tag, None)
    assert Reject.of(REASONS[name], 7).retry_after_s == 7


def test_reject_equality_ignores_what_the_edge_knew_of_the_call() -> None:
    known = Reject(403, "Source Not Allowed", "acl_source", direction="origination", trunk="t", agent="a")
    assert known == Reject.of(Reason.SOURCE_NOT_ALLOWED)
    assert Reject.of(Reason.STORE_UNAVAILABLE, 5) != Reject.of(Reason.STORE_UNAVAILABLE, 7)


def test_reject_is_frozen() -> None:
    reject = Reject.of(Reason.NO_ROUTE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        reject.code = 200  # type: ignore[misc]

