"""Session timers (RFC 4028) on behalf of an agent that does not support them, sans I/O.

A carrier that asks for session timers expects refreshes (a re-INVITE or an UPDATE every half
interval) to be answered; an agent that does not know RFC 4028 may refuse an UPDATE (405, 501)
or never answer one, and the carrier then drops the call at its first refresh ("calls drop at
15 minutes").  The edge takes the agent's part:

* the **carrier refreshes**: on an origination call whose INVITE offered timers (``Session-Expires``
  and ``Supported: timer``) and whose agent answered without ``Session-Expires``, the edge adds
  ``Session-Expires: N;refresher=uac`` and ``Require: timer`` to the 2xx (RFC 4028 section 9: the
  UAS may choose the refresher); on a termination call whose carrier answered
  ``refresher=uas`` to an agent that did not offer timers, the carrier refreshes already;
* the edge **answers a refresh UPDATE without SDP itself** (200 with ``Session-Expires:
  N;refresher=uac``: the carrier, the refresh's sender, stays the refresher), answers a re-INVITE
  that repeats the carrier's SDP unchanged with the SDP the carrier last received (:func:`unchanged`;
  on a termination call the carrier received it in the edge's INVITE, :func:`sent_body`), relays
  any other refresh (the media may change) and puts the header back in its 2xx;
* a call whose carrier sends no refresh in time is **ended** by the edge at the point RFC 4028
  section 10 gives the side that is not the refresher: the expiry minus the smaller of 32 s and a
  third of the interval (BYE to both sides, ``media_end_reason=session_expired``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIN_SE_S", "Takeover", "parse_session_expires", "supports_timer", "takeover", "end_after_s", "origin",
           "unchanged", "sent_body"]

#: the smallest session interval RFC 4028 allows (section 4, Min-SE default), s
MIN_SE_S = 90


@dataclass(frozen=True, slots=True)
class Takeover:
    """The edge answers refreshes for the agent.

    Attributes:
        interval_s: the session interval (s).
        refresher: ``uac`` or ``uas`` (RFC 4028 section 7.4): the carrier's role in the call.
    """

    interval_s: int
    refresher: str

    def header(self) -> str:
        """The ``Session-Expires`` header value the edge sends (``90;refresher=uac``)."""
        return f"{self.interval_s};refresher={self.refresher}"

    def refresh_header(self) -> str:
        """The ``Session-Expires`` value of the edge's answer to a carrier's refresh
        (``90;refresher=uac``): the refresher parameter names a side of the refresh's own
        transaction (RFC 4028 section 9: a UAC that sent ``refresher=uac`` keeps it), and the
        carrier, which sent it, stays the refresher on either direction of call."""
        return f"{self.interval_s};refresher=uac"

    def encode(self) -> str:
        """``"{interval}:{refresher}"`` (a dialog variable)."""
        return f"{self.interval_s}:{self.refresher}"

    @classmethod
    def decode(cls, text: str) -> "Takeover | None":
        """Inverse of :meth:`encode`; None for an empty or malformed value."""
        interval, _, refresher = (text or "").partition(":")
        if not interval.isdigit() or refresher not in ("uac", "uas"):
            return None
        return cls(int(interval), refresher)


def parse_session_expires(value: str) -> tuple[int, str] | None:
    """``(interval_s, refresher)`` of a ``Session-Expires`` value (RFC 4028 section 4:
    ``delta-seconds *(;se-params)``, ``refresher=uac|uas``; ``""`` when absent); None when empty or not a number."""
    head, *params = (value or "").split(";")
    if not head.strip().isdigit():
        return None
    refresher = ""
    for param in params:
        name, _, val = param.partition("=")
        if name.strip().lower() == "refresher":
            refresher = val.strip().lower()
    return int(head.strip()), refresher


def supports_timer(supported: str) -> bool:
    """Whether a ``Supported`` header value lists the ``timer`` option tag (RFC 4028 section 3)."""
    return any(tag.strip().lower() == "timer" for tag in (supported or "").split(","))


def takeover(direction: str, request_se: str, request_supported: str, reply_se: str) -> Takeover | None:
    """Whether the edge answers refreshes for the agent, decided at the 2xx of the initial INVITE.

    Args:
        direction: ``origination`` (the carrier sent the INVITE) or ``termination``.
        request_se, request_supported: the INVITE's ``Session-Expires`` and ``Supported`` values.
        reply_se: the 2xx's ``Session-Expires`` value.

    Returns:
        The takeover, or None when the agent handles timers itself or nobody asked for them.
    """
    if direction == "termination":
        answered = parse_session_expires(reply_se)
        if answered is None or answered[1] != "uas" or supports_timer(request_supported):
            return None
        return Takeover(max(answered[0], MIN_SE_S), "uas")
    offered = parse_session_expires(request_se)
    if offered is None or not supports_timer(request_supported) or parse_session_expires(reply_se) is not None:
        return None
    return Takeover(max(offered[0], MIN_SE_S), "uac")


def end_after_s(interval_s: int) -> int:
    """Seconds after a refresh (or the answer) at which the call ends when no refresh came: the
    interval minus the smaller of 32 s and a third of it (RFC 4028 section 10)."""
    return interval_s - min(32, interval_s // 3)


def origin(sdp: str) -> str:
    """The ``o=`` line of an SDP (RFC 4566 section 5.2: username, session id, version, network
    type, address), stripped; ``""`` when there is none."""
    for line in sdp.splitlines():
        if line.startswith("o="):
            return line.strip()
    return ""


def unchanged(previous_origin: str, sdp: str) -> bool:
    """Whether an offer repeats the previous session description unchanged: the same ``o=`` line,
    version included (RFC 3264 section 8: a changed description must increment the version), as
    a pure session refresh does (RFC 4028 section 10).  False without a previous origin."""
    return bool(previous_origin) and origin(sdp) == previous_origin


def sent_body(buffer: str) -> str:
    """The body of a SIP message as sent (Kamailio ``$snd(buf)``: start line, headers, an empty
    line, the body; RFC 3261 section 7): everything after the first empty line, ``""`` when there
    is none."""
    head, sep, body = (buffer or "").partition("\r\n\r\n")
    return body if sep else ""
