"""The caller's identity as the carrier verified it (STIR/SHAKEN, RFC 8224/8588), sans I/O.

A carrier that verifies the caller's ``Identity`` header passes the result as the ``verstat``
parameter (ATIS-1000074, a tel-URI/user parameter) of the From or P-Asserted-Identity URI's
user part: ``sip:+14155550123;verstat=TN-Validation-Passed@carrier.example``.  The edge hands
it to the agent (``X-Edge-Verstat``) and keeps it in the call record.
"""

from __future__ import annotations

import re

__all__ = ["verstat", "VERSTAT_VALUES"]

#: the values ATIS-1000074 defines (others are passed as they are, if they are tokens)
VERSTAT_VALUES = ("TN-Validation-Passed", "TN-Validation-Failed", "No-TN-Validation")
_VERSTAT = re.compile(r";\s*verstat=([A-Za-z0-9._~+-]{1,64})", re.I)


def verstat(from_user: str, pai: str = "") -> str:
    """The carrier's verification status of the caller: the ``verstat`` parameter of the From
    URI's user part, else of the P-Asserted-Identity's; ``""`` when neither has one.

    Args:
        from_user: the From URI's user part with its user parameters (Kamailio ``$fU``).
        pai: the P-Asserted-Identity header value(s), ``""`` when absent.
    """
    for text in (from_user, pai):
        match = _VERSTAT.search(text or "")
        if match:
            return match.group(1)
    return ""
