"""Destination policy for termination, transfers (REFER) and redirects (3xx): toll-fraud guardrails.

A destination is an E.164 number.  It is refused when it starts with any
blocked prefix (the node-wide list from the settings, the agent's and the
trunk's own), or when an allow-list is set and none of its prefixes matches.
A block always wins over an allow.  Pure functions; the lists come from the
routing tables and the runtime settings.
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["destination_allowed"]


def destination_allowed(
    number: str,
    allow: Iterable[str] = (),
    deny: Iterable[str] = (),
) -> bool:
    """Whether ``number`` (E.164 with ``+``) passes an allow-list and a block-list of prefixes.

    Args:
        number: destination, e.g. ``"+442071838750"``.
        allow: prefixes that are allowed; empty means every destination not blocked.
        deny: blocked prefixes (premium, satellite, high-cost ranges...).
    """
    if any(number.startswith(prefix) for prefix in deny):
        return False
    allow = tuple(allow)
    return not allow or any(number.startswith(prefix) for prefix in allow)
