"""Header policy (routing.call.headers): unit and hypothesis property tests."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from routing.call.headers import IDENTITY_HEADERS, canonical, header_names, headers_to_remove

NAME_CHARS = st.characters(min_codepoint=0, max_codepoint=0x7F)


def test_header_names_in_order_skipping_folded_lines() -> None:
    message = (
        "INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP a\r\nSubject: a\r\n long folded\r\n"
        "X-Tenant : 7\r\nContent-Length: 4\r\n\r\nbody: not a header\r\n"
    )
    assert header_names(message) == ["Via", "Subject", "X-Tenant", "Content-Length"]


def test_untrusted_side_loses_identity_headers_and_unlisted_x_headers() -> None:
    names = ["Via", "P-Asserted-Identity", "Diversion", "X-Tenant", "X-Call-Reason", "x-edge-did", "Remote-Party-ID"]
    assert headers_to_remove(names, ["x-call-reason"], trust_identity=False) == [
        "P-Asserted-Identity", "Diversion", "X-Tenant", "x-edge-did", "Remote-Party-ID",
    ]


def test_trusted_side_keeps_identity_but_never_edge_headers() -> None:
    names = ["P-Asserted-Identity", "X-Edge-Trunk", "X-Call-Reason"]
    assert headers_to_remove(names, ["X-Call-Reason", "X-Edge-Trunk"], trust_identity=True) == ["X-Edge-Trunk"]


@settings(max_examples=400, deadline=None)
@given(
    base=st.sampled_from(sorted(IDENTITY_HEADERS) + ["x-edge-trunk", "x-tenant"]),
    noise=st.lists(st.sampled_from(["\x00", "\x0b", " ", "\t", "\x7f", "\x1f"]), max_size=3),
    upper=st.lists(st.booleans(), min_size=40, max_size=40),
    where=st.integers(min_value=0, max_value=30),
)
def test_no_case_or_control_character_trick_gets_a_denied_header_through(
    base: str, noise: list[str], upper: list[bool], where: int
) -> None:
    """ES2020-01 style smuggling: whatever case and control characters, a denied name is removed."""
    cased = "".join(c.upper() if upper[i % 40] else c for i, c in enumerate(base))
    at = where % (len(cased) + 1)
    name = cased[:at] + "".join(noise) + cased[at:]
    assert canonical(name) == base
    assert name in headers_to_remove([name], allowed_x=["X-Call-Reason"], trust_identity=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(NAME_CHARS, min_size=1, max_size=20), max_size=12),
       st.lists(st.text(NAME_CHARS, min_size=1, max_size=20), max_size=4), st.booleans())
def test_what_passes_is_allowed(names: list[str], allowed: list[str], trust: bool) -> None:
    """Every header that is kept is either not X-/identity, an allowed X- header, or trusted identity."""
    removed = set(headers_to_remove(names, allowed, trust))
    allowed_keys = {canonical(a) for a in allowed}
    for name in names:
        if name in removed:
            continue
        key = canonical(name)
        if key.startswith("x-"):
            assert key in allowed_keys and not key.startswith("x-edge-")
        elif key in IDENTITY_HEADERS:
            assert trust


def test_in_dialog_policy_is_the_senders() -> None:
    from routing.call.headers import in_dialog_policy
    from routing.tables.model import Agent, Trunk

    trunk = Trunk("t", x_headers=("X-Call-Reason",), trust_identity=True)
    agent = Agent("a", x_headers=("X-Tenant",))
    assert in_dialog_policy("origination", True, trunk, agent) == (("X-Call-Reason",), True)  # carrier calls
    assert in_dialog_policy("origination", False, trunk, agent) == (("X-Tenant",), False)  # agent answers
    assert in_dialog_policy("termination", True, trunk, agent) == (("X-Tenant",), False)  # agent calls
    assert in_dialog_policy("termination", False, trunk, agent) == (("X-Call-Reason",), True)  # carrier answers
    assert in_dialog_policy("termination", False, None, agent) == ((), False)  # unknown: strictest
