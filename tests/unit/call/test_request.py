"""routing.call.request.telephone_user: the user part of a telephone URI with the parameters Kamailio drops."""

from __future__ import annotations

import pytest

from routing.call.request import telephone_user


@pytest.mark.parametrize(
    ("user", "uri", "expected"),
    [
        # what Kamailio 5.6 gives as $rU / $ru (seen with xlog on 5.6.3)
        ("4155550100", "tel:4155550100;phone-context=+1", "4155550100;phone-context=+1"),
        ("+1-415-555-0100", "tel:+1-415-555-0100", "+1-415-555-0100"),
        ("+1-415-555-0100", "TEL:+1-415-555-0100;ext=12", "+1-415-555-0100;ext=12"),
        ("4155550100", "sip:4155550100;phone-context=+1@192.0.2.1;user=phone", "4155550100;phone-context=+1"),
        ("+1-415-555-0100", "sips:+1-415-555-0100;isub=12@192.0.2.1;user=phone", "+1-415-555-0100;isub=12"),
        # URIs whose user Kamailio keeps whole are returned as given
        ("%2B14155550100", "sip:%2B14155550100@192.0.2.1", "%2B14155550100"),
        ("+14155550100", "sip:+14155550100@192.0.2.1:5060;transport=udp", "+14155550100"),
        ("alice", "sip:alice:secret@192.0.2.1", "alice"),
        ("", "sip:192.0.2.1", ""),
        ("", "tel:", ""),
    ],
)
def test_telephone_user(user: str, uri: str, expected: str) -> None:
    assert telephone_user(user, uri) == expected
