"""DTMF policy: how each side of a call sends and expects keypad digits, and what the edge does about it.

Pure functions only (no ``KSR``, no redis): :mod:`routing.kamailio` applies them.

Each trunk and agent has a DTMF mode (``dtmf`` field, else the node's
``dtmf.default_mode`` setting):

* ``rfc4733`` — digits travel as RTP ``telephone-event`` packets (RFC 4733,
  which obsoletes RFC 2833).
* ``info`` — digits travel as SIP INFO requests in the dialog
  (``application/dtmf-relay``, ``Signal=5`` / ``Duration=160``; or
  ``application/dtmf``, the bare digit).
* ``inband`` — digits are audio tones in the voice stream (ITU-T Q.23 frequency pairs).

The conversions are rtpengine's (10.5, "DTMF transcoding" and "play DTMF" in its
README):

* towards an ``rfc4733`` side whose peer does not use events,
  ``codec-transcode=telephone-event`` adds the codec to the offer; rtpengine
  then turns the peer's in-band tones into events and the side's events into
  tones for the peer (``always-transcode`` on the other way round, with the
  codec masked in the offer to the non-event side).
* toward an ``info`` side, a digit of an ``rfc4733`` or ``inband`` side (reported by
  rtpengine's DTMF log) becomes a SIP INFO the edge sends on the sender's behalf
  (:func:`info_needed`, :func:`info_body`; CSeq handling in :mod:`routing.call.cseq`), and
  rtpengine silences the digit in the audio toward the receiver (:func:`block_params`);
* from an ``info`` side, the INFO is answered ``200`` by the edge and the digit
  is injected into the other leg with the ng ``play DTMF`` command: as an
  event when that leg negotiated ``telephone-event``, else as a PCM tone.
  This needs ``inject-DTMF`` in both offer and answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import Enum

from routing.errors import EdgeError

__all__ = [
    "DtmfMode",
    "DtmfError",
    "parse_mode",
    "sdp_flags",
    "needs_injection",
    "info_needed",
    "info_body",
    "block_params",
    "info_action",
    "parse_info",
    "play_flags",
    "DIGITS",
    "record_entry",
    "LoggedDigit",
    "parse_log_event",
    "logged_entry",
]

#: RFC 4733 section 3.2 event codes 0-15, in order.
DIGITS = "0123456789*#ABCD"
#: content types of DTMF INFO bodies the edge understands
INFO_TYPES = ("application/dtmf-relay", "application/dtmf")
#: ``play DTMF`` limits of rtpengine (ms)
MIN_DURATION_MS = 100
MAX_DURATION_MS = 5000

_SIGNAL = re.compile(r"^\s*signal\s*=\s*(\S+)\s*$", re.I | re.M)
_DURATION = re.compile(r"^\s*duration\s*=\s*(\d+)\s*$", re.I | re.M)


class DtmfError(EdgeError, ValueError):
    """A DTMF mode or an INFO body that cannot be understood; the message says why."""


class DtmfMode(str, Enum):
    """How one side of a call carries DTMF digits."""

    RFC4733 = "rfc4733"
    INFO = "info"
    INBAND = "inband"


def parse_mode(value: str | None, where: str) -> DtmfMode | None:
    """Parse a trunk's or agent's ``dtmf`` field; empty or missing means "node default" (None).

    Raises:
        DtmfError: anything but ``rfc4733``, ``info``, ``inband`` or empty; the message starts with ``where``.
    """
    if value is None or value.strip() == "":
        return None
    try:
        return DtmfMode(value.strip().lower())
    except ValueError:
        raise DtmfError(f"{where} dtmf: must be rfc4733, info or inband, got {value!r}") from None


def needs_injection(caller: DtmfMode | str, callee: DtmfMode | str) -> bool:
    """True when exactly one side uses SIP INFO: its digits are played into the other side's
    media, which must then accept ``play DTMF`` (rtpengine flag ``inject-DTMF`` in offer and
    answer; it sends all audio through the transcoding engine).  Two INFO sides need none:
    their INFO requests are relayed."""
    return (DtmfMode(caller) is DtmfMode.INFO) != (DtmfMode(callee) is DtmfMode.INFO)


def sdp_flags(sender: DtmfMode | str, receiver: DtmfMode | str, offer: bool) -> tuple[str, ...]:
    """Extra rtpengine flags for an SDP going from the side in mode ``sender`` to the side in mode ``receiver``.

    Args:
        sender: mode of the side that wrote the SDP (the offerer for an offer).
        receiver: mode of the side the rewritten SDP goes to.
        offer: True for an offer (initial INVITE, re-INVITE, UPDATE with SDP), False for an answer.

    Returns:
        Flags in the Kamailio rtpengine module syntax (``codec-strip=telephone-event``,
        ``always-transcode``...), empty when the SDP passes as it is (both sides
        ``rfc4733``: events are relayed untouched).

    Offers decide the codecs (rtpengine README, "DTMF transcoding"):

    * receiver ``rfc4733``, sender not: ``codec-transcode=telephone-event`` offers
      events to the receiver whatever the sender offered (its own ``telephone-event``
      is stripped, so it sends tones); rtpengine detects the sender's tones
      (``detect-DTMF``) and turns the receiver's events into tones;
    * sender ``rfc4733``, receiver not: ``telephone-event`` is masked in the offer
      (hidden from the receiver, still accepted from the sender) and ``always-transcode``
      makes rtpengine turn the sender's events into tones for the receiver;
    * neither uses events: ``telephone-event`` is stripped, so tones (or INFO) it is;
      from an ``inband`` sender to an ``info`` receiver (offer and answer) ``detect-DTMF``
      has rtpengine report the tones, which become INFO requests.

    Answers only repeat ``inject-DTMF`` (needed in both messages).
    """
    sender, receiver = DtmfMode(sender), DtmfMode(receiver)
    flags: list[str] = []
    if offer and not (sender is DtmfMode.RFC4733 and receiver is DtmfMode.RFC4733):
        if receiver is DtmfMode.RFC4733:
            flags += ["codec-strip=telephone-event", "codec-transcode=telephone-event", "detect-DTMF"]
        elif sender is DtmfMode.RFC4733:
            flags += ["codec-mask=telephone-event", "always-transcode"]
        else:
            flags += ["codec-strip=telephone-event"]
    if sender is DtmfMode.INBAND and receiver is DtmfMode.INFO:
        flags.append("detect-DTMF")  # the tones become INFO requests (info_needed)
    if needs_injection(sender, receiver):
        flags.append("inject-DTMF")
    return tuple(flags)


def info_needed(sender: DtmfMode | str, receiver: DtmfMode | str) -> bool:
    """True when digits of a side in mode ``sender`` reach the side in mode ``receiver`` as SIP
    INFO requests the edge sends on the sender's behalf (the receiver uses ``info``, the sender
    does not).  The digit itself is then removed from the media toward the receiver (rtpengine
    ``block DTMF`` with ``DTMF-security=silence``), so it arrives once."""
    return DtmfMode(receiver) is DtmfMode.INFO and DtmfMode(sender) is not DtmfMode.INFO


#: how long rtpengine holds back the audio of an in-band side whose tones become INFO requests (ms):
#: long enough for its tone detector to recognise a digit before the tone would be sent on
INBAND_BLOCK_DELAY_MS = 100
#: the same for an ``rfc4733`` side (ms): an event packet marks its digit from its first packet on
EVENT_BLOCK_DELAY_MS = 20


def block_params(sender: DtmfMode | str) -> dict[str, str | int]:
    """Parameters of rtpengine's ng ``block DTMF`` for the media of a side in mode ``sender`` whose
    digits the edge sends as INFO (rtpengine README, "block DTMF", ``DTMF-security``, ``delay-buffer``).

    * ``rfc4733``: ``drop``: the event packets are not forwarded (nor turned into tones), and
      they are still reported (``dtmf-log-dest``).
    * ``inband``: ``silence``, with the side's audio held back :data:`INBAND_BLOCK_DELAY_MS`
      (``delay-buffer``) so a detected tone is replaced by silence before it is sent on.

    Raises:
        ValueError: ``sender`` is ``info`` (its digits are INFO requests already) or no mode.
    """
    mode = DtmfMode(sender)
    if mode is DtmfMode.RFC4733:
        return {"DTMF-security": "silence", "delay-buffer": EVENT_BLOCK_DELAY_MS}
    if mode is DtmfMode.INBAND:
        return {"DTMF-security": "silence", "delay-buffer": INBAND_BLOCK_DELAY_MS}
    raise ValueError("an info side's digits are not in its media")


def info_body(digit: str, duration_ms: int) -> tuple[str, str]:
    """Content type and body of a DTMF INFO for ``digit`` lasting ``duration_ms`` (ms):
    ``application/dtmf-relay`` with ``Signal=`` and ``Duration=`` lines, the form
    :func:`parse_info` reads and carriers (Cisco, Asterisk, FreeSWITCH, Twilio) send.

    Raises:
        DtmfError: ``digit`` is no DTMF digit.
    """
    return "application/dtmf-relay", f"Signal={_digit(digit)}\r\nDuration={max(0, int(duration_ms))}\r\n"


def info_action(sender: DtmfMode | str, receiver: DtmfMode | str) -> str:
    """What the edge does with a DTMF INFO from a side in mode ``sender``.

    Returns:
        ``"convert"`` when the sender uses INFO and the other side does not: answer
        200 and play the digit into the media toward the other side (an RFC 4733
        event or a tone, by that side's codecs).  Otherwise ``"relay"``: the request
        passes as it is (the other side uses INFO too, or neither side does, and then
        the media was not set up for injection).
    """
    sender, receiver = DtmfMode(sender), DtmfMode(receiver)
    return "convert" if sender is DtmfMode.INFO and receiver is not DtmfMode.INFO else "relay"


def parse_info(content_type: str, body: str) -> tuple[str, int | None]:
    """The digit (and duration, ms, when given) carried by a DTMF INFO body.

    Accepted forms (de-facto standards, no RFC):

    * ``application/dtmf-relay``: ``Signal=5`` and optionally ``Duration=160`` lines
      (Cisco; also sent by Asterisk, FreeSWITCH, Twilio); ``Signal`` may be a
      digit, ``*``, ``#``, ``A``-``D`` or an event code 10-15;
    * ``application/dtmf``: the digit alone (``5``) or its event code (``11``).

    Raises:
        DtmfError: another content type, no signal, or a signal that is no DTMF digit.
    """
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype not in INFO_TYPES:
        raise DtmfError(f"content type {content_type!r} is not a DTMF INFO body")
    duration: int | None = None
    if ctype == "application/dtmf-relay":
        match = _SIGNAL.search(body)
        if not match:
            raise DtmfError("application/dtmf-relay body without a Signal= line")
        signal = match.group(1)
        found = _DURATION.search(body)
        if found:
            duration = int(found.group(1))
    else:
        signal = body.strip()
    return _digit(signal), duration


def _digit(signal: str) -> str:
    text = signal.strip().upper()
    if len(text) == 1 and text in DIGITS:
        return text
    if text.isdigit() and 0 <= int(text) < len(DIGITS):
        return DIGITS[int(text)]
    raise DtmfError(f"signal {signal!r} is not a DTMF digit (0-9, *, #, A-D or event 0-15)")


def play_flags(digit: str, duration_ms: int | None, default_ms: int, volume_db: int) -> str:
    """Flags of the ng ``play DTMF`` command for one digit (Kamailio rtpengine ``play_dtmf``).

    The duration is clamped to rtpengine's 100-5000 ms; ``volume_db`` is the tone
    level in dB below full scale (rtpengine ``volume``, used for PCM tones).

    Raises:
        DtmfError: ``digit`` is no DTMF digit.
    """
    code = _digit(digit)
    duration = duration_ms if duration_ms else default_ms
    duration = max(MIN_DURATION_MS, min(MAX_DURATION_MS, duration))
    return f"code={code} duration={duration} volume={abs(volume_db)}"


def record_entry(side: str, digit: str, via: DtmfMode | str) -> str:
    """One digit of a call record's ``dtmf`` field: ``{side}:{digit}:{mode}``.

    ``side`` is ``caller`` or ``callee`` (who pressed the key); ``via`` is how the
    edge received it.  Entries are joined with ``,`` in the order they arrived, e.g.
    ``caller:5:info,caller:#:info``.
    """
    return f"{side}:{_digit(digit)}:{DtmfMode(via).value}"


@dataclass(frozen=True, slots=True)
class LoggedDigit:
    """One DTMF event reported by rtpengine (``dtmf-log-dest``: one JSON object per UDP datagram,
    sent when an event ends; rtpengine README / rtpengine(8) ``--dtmf-log-dest``).

    Attributes:
        call_id: the call's SIP Call-ID.
        source_tag: tag of the side whose media carried the digit (its From- or To-tag).
        digit: ``0``-``9``, ``*``, ``#``, ``A``-``D``.
        duration_ms: length of the event (ms).
    """

    call_id: str
    source_tag: str
    digit: str
    duration_ms: int


def parse_log_event(data: bytes) -> LoggedDigit:
    """Parse one rtpengine DTMF log datagram, e.g.
    ``{"callid":"c1","source_tag":"t1","tags":[...],"type":"DTMF","event":5,"duration":200,...}``.

    Raises:
        DtmfError: not JSON, not a DTMF event, or fields missing or out of range.
    """
    try:
        event = json.loads(data)
        if event.get("type") != "DTMF":
            raise DtmfError(f"not a DTMF event: type {event.get('type')!r}")
        code = int(event["event"])
        if not 0 <= code < len(DIGITS):
            raise DtmfError(f"event {code} is not a DTMF digit")
        return LoggedDigit(str(event["callid"]), str(event["source_tag"]), DIGITS[code], int(event.get("duration", 0)))
    except DtmfError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DtmfError(f"unreadable rtpengine DTMF event: {exc!r}") from None


def logged_entry(digit: LoggedDigit, caller_tag: str, modes: tuple[str, str]) -> str | None:
    """The call-record entry of a digit rtpengine saw in the media, or None when it is not to be recorded.

    Args:
        digit: the parsed event.
        caller_tag: the caller's From-tag; any other source tag is the callee's.
        modes: (caller mode, callee mode).

    Returns:
        ``{side}:{digit}:{mode}`` with the sending side's mode, or None when that side
        uses ``info``: then the event is the edge's own ``play DTMF`` of a digit already
        recorded from the INFO.
    """
    from_caller = digit.source_tag == caller_tag
    mode = DtmfMode(modes[0] if from_caller else modes[1])
    if mode is DtmfMode.INFO:
        return None
    return record_entry("caller" if from_caller else "callee", digit.digit, mode)
