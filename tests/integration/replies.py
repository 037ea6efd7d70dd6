"""SIP messages out of a SIPp message trace (``-trace_msg``), whole, and the values of their headers:
a test asserts on a header of the response it means, not on text found anywhere in the trace."""

from __future__ import annotations

import re

from tests.sipp import SippRun

#: the line SIPp writes between two messages of its trace
_SEPARATOR = "-----------------------------------------------"


def _message(block: str) -> str:
    """The SIP message of one trace block: from its start line to the end of its headers."""
    start = re.search(r"^(?:SIP/2\.0 \d{3}|[A-Z]+ \S+ SIP/2\.0)", block, re.M)
    if start is None:
        return ""
    head = re.split(r"\r?\n[ \t]*\r?\n", block[start.start():], maxsplit=1)[0]
    return "\n".join(line.strip() for line in head.splitlines())


def received_messages(run: SippRun) -> list[str]:
    """Every message SIPp received, start line and headers (no body), in order."""
    return [m for block in run.messages().split(_SEPARATOR) if "message received" in block and (m := _message(block))]


def final_invite_responses(run: SippRun) -> list[str]:
    """The first final (>= 200) response to each INVITE SIPp sent, one per Call-ID in the order they
    came (retransmissions folded), as :meth:`SippRun.final_status` counts them."""
    finals: dict[str, str] = {}
    for message in received_messages(run):
        status = re.match(r"SIP/2\.0 (\d{3})", message)
        cseq = header_values(message, "CSeq")
        if status and int(status.group(1)) >= 200 and cseq and cseq[0].upper().endswith(" INVITE"):
            finals.setdefault(header_values(message, "Call-ID", "i")[0], message)
    return list(finals.values())


def header_values(message: str, name: str, compact: str = "") -> list[str]:
    """Values of every ``name`` header line of ``message`` (case-insensitive; ``compact`` is the
    header's compact form, RFC 3261 section 7.3.3, e.g. ``i`` for Call-ID), in order."""
    names = {name.lower()} | ({compact.lower()} if compact else set())
    out = []
    for line in message.splitlines()[1:]:
        field, sep, value = line.partition(":")
        if sep and field.strip().lower() in names:
            out.append(value.strip())
    return out


def status_line(message: str) -> tuple[int, str]:
    """``(code, reason phrase)`` of a response."""
    match = re.match(r"SIP/2\.0 (\d{3}) ?(.*)", message)
    assert match, message
    return int(match.group(1)), match.group(2).strip()


def request_line(message: str) -> str:
    """The Request-URI of a request."""
    return message.splitlines()[0].split(" ")[1]
