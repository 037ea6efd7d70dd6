"""Telephone number normalisation to E.164 (ITU-T E.164, RFC 3966 visual separators).

Every number the edge reads (DIDs from carriers, destinations from agents,
caller numbers) goes through :func:`to_e164` exactly once; downstream code
only ever sees the ``+``-prefixed E.164 string it returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from routing.errors import EdgeError

__all__ = ["NumberError", "NumberFormat", "E164", "to_e164", "is_e164", "E164_PATTERN"]

#: E.164: ``+`` then a country code that does not start with 0, 15 digits at most.
E164_PATTERN = re.compile(r"^\+[1-9][0-9]{3,14}$")
_SEPARATORS = re.compile(r"[\s\-.()]")  # RFC 3966 visual-separator, plus spaces
_DIGITS = re.compile(r"^[0-9]+$")


class NumberError(EdgeError, ValueError):
    """The number cannot be read unambiguously as E.164."""


E164 = str


@dataclass(frozen=True, slots=True)
class NumberFormat:
    """How a peer writes telephone numbers, so they can be turned into E.164.

    Attributes:
        country_code: the peer's own country calling code (``"1"``, ``"44"``), used
            for national numbers; empty when the peer always sends full numbers.
        national_prefix: trunk prefix of national numbers (``"0"`` in the UK,
            empty in NANP).
        international_prefix: prefix of international numbers (``"00"``, ``"011"``).
        national_length: digits in a national significant number (10 in NANP), used
            to recognise numbers sent with neither prefix; 0 when not fixed.
    """

    country_code: str = ""
    national_prefix: str = ""
    international_prefix: str = "00"
    national_length: int = 0

    def __post_init__(self) -> None:
        for field_name in ("country_code", "national_prefix", "international_prefix"):
            value = getattr(self, field_name)
            if value and not _DIGITS.fullmatch(value):
                raise NumberError(f"{field_name} must be digits, got {value!r}")
        if self.country_code.startswith("0"):
            raise NumberError("country_code must not start with 0")
        if not 0 <= self.national_length <= 14:
            raise NumberError("national_length must be between 0 and 14")


def is_e164(value: str) -> bool:
    """True when ``value`` is already a ``+``-prefixed E.164 number."""
    return bool(E164_PATTERN.fullmatch(value))


def to_e164(raw: str, fmt: NumberFormat = NumberFormat()) -> E164:
    """Normalise a number as written by a peer to E.164 with a leading ``+``.

    Accepted forms, in this order: ``+CC...``; the peer's international prefix
    (``00``/``011``) followed by the full number; the peer's national prefix
    followed by a national number (needs ``country_code``); a bare national
    number of ``national_length`` digits; a bare full number starting with the
    country code when ``country_code`` and ``national_length`` identify it;
    otherwise bare digits are read as a full international number only when the
    peer declares no country code (E.164-only peers such as Twilio or Telnyx
    that omit the ``+``).  Visual separators (space, ``-``, ``.``, ``(``, ``)``)
    are ignored.

    Args:
        raw: the user part of a SIP URI or a typed number, e.g. ``"+1 (415) 555-0100"``.
        fmt: the peer's number format.

    Returns:
        The E.164 number, e.g. ``"+14155550100"``.

    Raises:
        NumberError: empty, non-digit characters, or a result that is not E.164.
    """
    text = _SEPARATORS.sub("", raw or "")
    if not text:
        raise NumberError("empty number")
    if text.startswith("+"):
        digits = text[1:]
    else:
        digits = _national_to_full(text, fmt)
    if not _DIGITS.fullmatch(digits):
        raise NumberError(f"not a telephone number: {raw!r}")
    result = "+" + digits
    if not E164_PATTERN.fullmatch(result):
        raise NumberError(f"not a valid E.164 number: {raw!r}")
    return result


def _national_to_full(text: str, fmt: NumberFormat) -> str:
    if not _DIGITS.fullmatch(text):
        raise NumberError(f"not a telephone number: {text!r}")
    if fmt.international_prefix and text.startswith(fmt.international_prefix):
        return text[len(fmt.international_prefix) :]
    if not fmt.country_code:
        return text
    if fmt.national_prefix and text.startswith(fmt.national_prefix):
        return fmt.country_code + text[len(fmt.national_prefix) :]
    if fmt.national_length:
        if len(text) == fmt.national_length:
            return fmt.country_code + text
        if len(text) == fmt.national_length + len(fmt.country_code) and text.startswith(
            fmt.country_code
        ):
            return text
        raise NumberError(
            f"{text!r} is neither a {fmt.national_length}-digit national number nor "
            f"a full number with country code {fmt.country_code}"
        )
    raise NumberError(f"ambiguous number without prefix: {text!r}")


@lru_cache(maxsize=4096)
def from_uri_user(user: str, fmt: NumberFormat = NumberFormat()) -> E164:
    """Normalise the user part of a SIP URI, or a ``tel:`` URI, to E.164 (memoised per process:
    a pure function of the text and the frozen format, called twice per call).

    Handles a leading ``tel:`` (RFC 3966 section 3), visual separators, and a
    ``;phone-context=`` parameter (RFC 3966 section 5.1.5) on a local number:
    a global context such as ``+44`` or ``+1-415`` is prepended to the local
    digits; a domain-name context cannot tell the country and is refused, as
    is a local number starting with 0 (a national trunk prefix inside a
    context is ambiguous).  Other user parameters are ignored; ``user=phone``
    is a URI parameter and never reaches here.

    ``%HH`` escapes are decoded after the parameters are split off (RFC 3261
    section 19.1.2: the user part may carry escaped characters; RFC 3966
    section 3: so may a parameter value), so ``%2B14155550100`` is
    ``+14155550100`` and ``(415)%20555-0100`` is ``(415) 555-0100``.  An
    escaped ``;`` (``%3B``) is a literal character, not a parameter separator,
    and makes the number unreadable.

    Args:
        user: the user part with its user parameters (``"4155550100;phone-context=+1"``),
            or a whole ``tel:`` URI; see :func:`routing.call.request.telephone_user` for the
            parameters Kamailio's ``$rU`` drops.
        fmt: the peer's number format, for numbers without ``+`` and without a context.

    Returns:
        The E.164 number, e.g. ``"+14155550100"``.

    Raises:
        NumberError: the number cannot be read unambiguously.
    """
    text = (user or "").strip()
    if text[:4].lower() == "tel:":
        text = text[4:]
    number, _, params = text.partition(";")
    number = unquote(number)
    context = None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if unquote(name).strip().lower() == "phone-context":
            context = unquote(value).strip()
    if context is None or number.lstrip().startswith("+"):
        return to_e164(number, fmt)
    context_digits = _SEPARATORS.sub("", context)
    if not context_digits.startswith("+") or not _DIGITS.fullmatch(context_digits[1:] or "x"):
        raise NumberError(f"phone-context {context!r} does not name a country: cannot read {number!r}")
    local = _SEPARATORS.sub("", number)
    if not _DIGITS.fullmatch(local) or local.startswith("0"):
        raise NumberError(f"ambiguous local number {number!r} in phone-context {context!r}")
    return to_e164(context_digits + local, fmt)


__all__ += ["from_uri_user"]
