"""Header policy: which headers may cross the edge (an allow-list for X- headers, identity
headers only from trusted sides).

Pure functions over header names; :mod:`routing.kamailio` removes what they name.
Identity headers (RFC 3325 P-Asserted-Identity / P-Preferred-Identity, Remote-Party-ID,
RFC 5806 Diversion, RFC 7044 History-Info) decide the caller ID a carrier presents and
bills, so they pass only from a side marked as trusted.  ``X-`` headers pass only when
their name is in the sending side's allow-list; the edge's own ``X-Edge-*`` headers never
pass from a peer.
"""

from __future__ import annotations

import functools
import re
from typing import Iterable

__all__ = ["IDENTITY_HEADERS", "header_names", "headers_to_remove", "removal", "canonical", "in_dialog_policy"]

#: lower-case names (and compact forms) of identity headers
IDENTITY_HEADERS = frozenset(
    {"p-asserted-identity", "p-preferred-identity", "remote-party-id", "diversion", "history-info"}
)
#: a header line's name, one line at a time (no match across a line without a colon)
_NAMES = re.compile(r"^([^:\s][^:\r\n]*?)[ \t]*:", re.M)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


@functools.lru_cache(maxsize=1024)
def canonical(name: str) -> str:
    """A header name as compared by the policy: control characters and spaces removed, lower case.
    Memoised: every initial INVITE asks for each of its header names and its side's allow-list."""
    return _CONTROL.sub("", name).lower()


def header_names(message: str) -> list[str]:
    """Names of the header fields of a SIP message text, in order (folded lines skipped).

    Args:
        message: the whole message (start line, headers, blank line, body).
    """
    head = message.split("\r\n\r\n", 1)[0].split("\n\n", 1)[0]
    # one regex pass over the header lines (the start line cut off): a folded continuation line
    # starts with a space or tab (RFC 3261 section 7.3.1), which a name cannot
    return _NAMES.findall(head.partition("\n")[2])


def headers_to_remove(names: Iterable[str], allowed_x: Iterable[str], trust_identity: bool) -> list[str]:
    """Header names to strip from a request before it leaves the edge.

    Args:
        names: header names present (as written).
        allowed_x: X- header names the sending side may pass (any case).
        trust_identity: whether the sending side may assert caller identity.

    Returns:
        The names (as written, each once) to remove: every ``X-`` header not allowed, every
        ``X-Edge-*``, and identity headers when the side is not trusted.
    """
    allowed = {canonical(n) for n in allowed_x}
    out: list[str] = []
    for name in names:
        key = canonical(name)
        drop = False
        if key.startswith("x-"):
            drop = key.startswith("x-edge-") or key not in allowed
        elif key in IDENTITY_HEADERS:
            drop = not trust_identity
        if drop and name not in out:
            out.append(name)
    return out


@functools.lru_cache(maxsize=1024)
def removal(names: tuple[str, ...], allowed_x: tuple[str, ...], trust_identity: bool) -> tuple[str, ...]:
    """:func:`headers_to_remove` memoised per process (an initial INVITE's header names repeat call
    after call for a peer, and the sides' policies are few)."""
    return tuple(headers_to_remove(names, allowed_x, trust_identity))


def in_dialog_policy(direction: str, from_caller: bool, trunk: object | None, agent: object | None
                     ) -> tuple[tuple[str, ...], bool]:
    """The header policy of the side that sent an in-dialog request (re-INVITE, UPDATE, INFO,
    REFER, BYE...): the same allow-list as its initial INVITE.

    Args:
        direction: the call's ``origination`` (the caller is the trunk) or ``termination``
            (the caller is the agent).
        from_caller: the request's From tag is the dialog's (the caller sent it).
        trunk, agent: the call's :class:`~routing.tables.model.Trunk` and :class:`~routing.tables.model.Agent`,
            None when unknown (removed since, or the tables cannot be read).

    Returns:
        (X- headers allowed, identity trusted); an unknown sender gets the strictest policy
        (no X- header, no identity header).
    """
    caller_is_trunk = direction != "termination"
    sender = trunk if from_caller == caller_is_trunk else agent
    if sender is None:
        return (), False
    return tuple(getattr(sender, "x_headers", ())), bool(getattr(sender, "trust_identity", False))
