"""What a carrier receives as the caller of a termination call, sans I/O (docs/identity.md#what-the-carrier-receives).

Two steps: :func:`plan_presentation` at the routing decision (the trunk's shaping applied to the
caller ID the call presents, kept in the call plan), and :func:`render` when the INVITE is
relayed (the From host the agent wrote and its privacy request are known then).  Sources:
RFC 3261 section 19.1.1 (``user=phone``), RFC 3325 (P-Asserted-Identity, P-Preferred-Identity),
RFC 3323 section 4.1.1.3 (an anonymous From: ``"Anonymous" <sip:anonymous@anonymous.invalid>``),
draft-ietf-sip-privacy-04 (Remote-Party-ID, ``party``, ``privacy``, ``screen``)."""

from __future__ import annotations

from dataclasses import dataclass

from routing.call.numbers import NumberFormat
from routing.tables.model.callershape import CallerDisplay, CallerIdFormat, CallerIdHeader, CallerIdShape, FromUser

__all__ = ["plan_presentation", "render", "Rendered", "written", "ANONYMOUS_FROM"]

#: the From of a caller that asked for privacy (RFC 3323 section 4.1.1.3)
ANONYMOUS_FROM = ("Anonymous", "sip:anonymous@anonymous.invalid")
_HEADER_NAMES = {CallerIdHeader.PAI: "P-Asserted-Identity", CallerIdHeader.PPI: "P-Preferred-Identity",
                 CallerIdHeader.RPID: "Remote-Party-ID"}


def written(number: str, fmt: CallerIdFormat, trunk_format: NumberFormat) -> str:
    """``number`` (E.164 with ``+``) as the trunk's carrier wants it: ``+14155550100``,
    ``14155550100``, or national (``4155550100`` with country code 1 and no national prefix;
    a number of another country gets the trunk's international prefix)."""
    digits = number.lstrip("+")
    if fmt is CallerIdFormat.E164:
        return "+" + digits
    if fmt is CallerIdFormat.E164_NOPLUS or not trunk_format.country_code:
        return digits
    cc = trunk_format.country_code
    if digits.startswith(cc):
        return trunk_format.national_prefix + digits[len(cc):]
    return trunk_format.international_prefix + digits


def plan_presentation(number: str, shape: CallerIdShape, trunk_format: NumberFormat, auth_user: str) -> dict | None:
    """The caller presentation a call keeps in its plan, from the caller ID it presents (E.164)
    and the trunk's shaping; None when the trunk shapes nothing (the From goes as written).

    Returns:
        ``{"number": written number, "user": From user, "host": From host or "", "user_phone": bool,
        "display": "keep"|"none"|"number", "header": "from"|"pai"|"ppi"|"rpid"}`` (and
        ``"privacy_only": True`` when added by :func:`routing.call.callerid.presentation` for a
        privacy request on a trunk that shapes nothing: :func:`render` then changes nothing without it).
    """
    if shape.is_default or not number:
        return None
    shown = written(number, shape.format, trunk_format)
    user = auth_user if shape.from_user is FromUser.AUTH and auth_user else shown
    return {"number": shown, "user": user, "host": shape.from_host, "user_phone": shape.user_phone,
            "display": shape.display.value, "header": shape.header.value}


@dataclass(frozen=True, slots=True)
class Rendered:
    """The From and identity header lines a relayed INVITE gets.

    Attributes:
        display: the From display name: None = keep the agent's, "" = remove, else this text.
        from_uri: the From URI.
        headers: header lines without CRLF (``P-Asserted-Identity: <sip:+1...@host;user=phone>``).
    """

    display: str | None
    from_uri: str
    headers: tuple[str, ...]


def render(presentation: dict, agent_host: str, privacy: bool) -> Rendered | None:
    """What the carrier receives, from :func:`plan_presentation`'s result, the From host the agent
    wrote, and whether the agent asked for privacy (a ``Privacy: id`` or ``user`` header,
    RFC 3323): then the From is anonymous and the number goes in P-Asserted-Identity (or the
    trunk's identity header) only, for the carrier's own use.  None: nothing to change (a
    ``privacy_only`` presentation without a privacy request)."""
    if presentation.get("privacy_only") and not privacy:
        return None
    host = presentation["host"] or agent_host
    params = ";user=phone" if presentation["user_phone"] else ""
    number = presentation["number"]
    header = CallerIdHeader(presentation["header"])
    if header is CallerIdHeader.FROM and privacy:
        header = CallerIdHeader.PAI  # the carrier still needs the number (billing, emergency calls)
    lines = []
    if header is not CallerIdHeader.FROM:
        uri = f"<sip:{number}@{host}{params}>"
        if header is CallerIdHeader.RPID:
            uri += ";party=calling;screen=yes;privacy=" + ("full" if privacy else "off")
        lines.append(f"{_HEADER_NAMES[header]}: {uri}")
    if privacy:
        return Rendered(f'"{ANONYMOUS_FROM[0]}"', ANONYMOUS_FROM[1], tuple(lines))
    display = {CallerDisplay.KEEP.value: None, CallerDisplay.NONE.value: "",
               CallerDisplay.NUMBER.value: f'"{number}"'}[presentation["display"]]
    return Rendered(display, f"sip:{presentation['user']}@{host}{params}", tuple(lines))
