"""The few facts of a captured SIP message a ladder needs, and the masking of digest secrets.

Parsing follows RFC 3261 section 7 (start line, ``Name: value`` header fields up to the empty
line, continuation lines folded into the previous field) and the compact header forms of
section 7.3.3 (``i`` Call-ID, ``f`` From, ``t`` To, ``m`` Contact, ``c`` Content-Type, ``l``
Content-Length).  Masking hides the ``response`` and ``nonce`` parameters of a digest
(RFC 7616 / RFC 2617 section 3.2) in ``Authorization``/``Proxy-Authorization`` (what a
client sends) and ``WWW-Authenticate``/``Proxy-Authenticate`` (the challenge whose nonce it
echoes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SipFacts", "facts", "call_id", "mask", "MASK"]

#: what a masked value is replaced with
MASK = "***"
_COMPACT = {"i": "call-id", "f": "from", "t": "to", "m": "contact", "c": "content-type", "l": "content-length",
            "v": "via", "k": "supported", "s": "subject", "e": "content-encoding", "o": "event", "r": "refer-to"}
_AUTH_HEADERS = ("authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate")
_DIGEST_SECRET = re.compile(r'(?i)\b(response|nonce)(\s*=\s*)("[^"]*"|[^\s,]+)')
_AUTH_LINE = re.compile(r"(?im)^(" + "|".join(_AUTH_HEADERS) + r")(\s*:)(.*)$")
_CALL_ID = re.compile(rb"(?im)^(?:call-id|i)[ \t]*:[ \t]*(\S+)")


@dataclass(frozen=True, slots=True)
class SipFacts:
    """A message's start line and header fields (names lower-case, compact forms expanded).

    Attributes:
        method: the request's method, or the method of the CSeq a response answers.
        status: the response code; 0 for a request.
        reason: the response's reason phrase; the Request-URI for a request.
        headers: (name, value) in message order.
        body: the message body (text).
    """

    method: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: str

    @property
    def is_request(self) -> bool:
        return self.status == 0

    def header(self, name: str) -> str:
        """The first value of header ``name`` (any case), else ``""``."""
        name = name.lower()
        return next((v for n, v in self.headers if n == name), "")

    def all(self, name: str) -> list[str]:
        """Every value of header ``name`` (any case)."""
        name = name.lower()
        return [v for n, v in self.headers if n == name]

    @property
    def call_id(self) -> str:
        return self.header("call-id")

    @property
    def cseq(self) -> tuple[int, str]:
        """(number, method) of the CSeq header; (0, "") when it is missing or malformed."""
        parts = self.header("cseq").split()
        if len(parts) != 2 or not parts[0].isdigit():
            return 0, ""
        return int(parts[0]), parts[1].upper()

    @property
    def label(self) -> str:
        """``INVITE`` for a request, ``200 OK`` for a response."""
        return self.method if self.is_request else f"{self.status} {self.reason}".strip()


def call_id(payload: bytes) -> str:
    """The Call-ID of a raw SIP message (``""`` when it has none): the collector's fast path."""
    end = payload.find(b"\r\n\r\n")
    match = _CALL_ID.search(payload, 0, end if end >= 0 else len(payload))
    return match.group(1).decode("utf-8", "replace") if match else ""


def facts(payload: bytes | str) -> SipFacts:
    """Parse a SIP message's start line, header fields and body (lenient: never raises)."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    head, sep, body = text.partition("\r\n\r\n")
    if not sep and "\n\n" in text:
        head, sep, body = text.partition("\n\n")
    lines = head.replace("\r\n", "\n").split("\n")
    start = lines[0].strip() if lines else ""
    headers: list[list[str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            headers[-1][1] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip().lower()
        headers.append([_COMPACT.get(name, name), value.strip()])
    pairs = tuple((n, v) for n, v in headers)
    if start.upper().startswith("SIP/"):
        parts = start.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        reason = parts[2] if len(parts) > 2 else ""
        cseq = next((v for n, v in pairs if n == "cseq"), "").split()
        return SipFacts(cseq[1].upper() if len(cseq) == 2 else "", status, reason, pairs, body)
    parts = start.split(" ")
    return SipFacts(parts[0].upper(), 0, parts[1] if len(parts) > 1 else "", pairs, body)


def mask(text: str) -> str:
    """``text`` (a SIP message, a header line or value) with every digest ``response`` and
    ``nonce`` value of its authentication header lines replaced by ``***``."""
    if _AUTH_LINE.search(text):
        return _AUTH_LINE.sub(lambda m: m.group(1) + m.group(2) + mask_value(m.group(3)), text)
    return text


def mask_value(value: str) -> str:
    """A digest credentials or challenge value with ``response`` and ``nonce`` masked."""
    return _DIGEST_SECRET.sub(lambda m: f'{m.group(1)}{m.group(2)}"{MASK}"', value)
