"""CSeq numbers when the edge sends a request on behalf of one side of a dialog.

Pure functions only (no ``KSR``): :mod:`routing.kamailio` applies them.

The edge is a proxy, yet it must sometimes send an in-dialog request *as* one side:
a SIP INFO carrying a digit that side sent as an RFC 4733 event or an in-band tone
toward a side that takes DTMF as INFO (RFC 6086 section 4.2: INFO is sent within the
INVITE dialog usage).  Such a request uses the represented side's CSeq space.  The
receiver requires every request of the dialog to carry a higher CSeq than the one
before it (RFC 3261 section 12.2.2: a lower one gets ``500``, and common stacks refuse
an equal one too), so every later request of the represented side must be renumbered
on its way through the edge, and its responses numbered back (RFC 3261 section 17.1.3
matches responses by Via branch and CSeq method; the edge restores the number anyway).

State per side (:class:`SideSeq`):

* ``last``: the highest CSeq the side itself has used (0 before its first request);
* ``shift``: what the edge adds to the side's CSeqs on the way to the other side;
* ``top``: the highest number the other side has had in this side's space (relayed, or
  sent by the edge on the side's behalf);
* ``invite`` / ``invite_out``: the side's last INVITE CSeq as sent and as relayed: the
  ACK of its 2xx (and a CANCEL) repeats the INVITE's number (RFC 3261 sections 13.2.2.4
  and 9.1) even when the shift grew in between.

Invariant: the next number the side will use (> ``last``) plus ``shift`` is above
``top``.  The dialog module records the relayed numbers (the edge renumbers a request
before the dialog module sees it), so its own BYEs stay above ``top`` too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["SideSeq", "CseqMap", "relay", "local"]

#: largest CSeq number (RFC 3261 section 8.1.1.5: less than 2**31)
MAX_CSEQ = 2**31 - 1


@dataclass(frozen=True, slots=True)
class SideSeq:
    """CSeq bookkeeping of one side of a dialog (see the module docstring)."""

    last: int = 0
    shift: int = 0
    top: int = 0
    invite: int = 0
    invite_out: int = 0


@dataclass(frozen=True, slots=True)
class CseqMap:
    """The two sides' bookkeeping of one call, with the tags that tell them apart.

    Attributes:
        caller_tag: the caller's From-tag.
        callee_tag: the callee's To-tag.
        caller: the caller's CSeq state (``last`` and ``top`` start at the INVITE's CSeq).
        callee: the callee's CSeq state (all 0: it has sent nothing).
    """

    caller_tag: str
    callee_tag: str
    caller: SideSeq
    callee: SideSeq

    def side(self, from_caller: bool) -> SideSeq:
        """The state of the caller (``from_caller``) or of the callee."""
        return self.caller if from_caller else self.callee

    def with_side(self, from_caller: bool, seq: SideSeq) -> "CseqMap":
        """A copy with one side's state replaced."""
        return replace(self, caller=seq) if from_caller else replace(self, callee=seq)

    def encode(self) -> str:
        """One line for a Kamailio htable value: ``{caller tag};{callee tag};{10 numbers, comma-separated}``."""
        numbers = (*_fields(self.caller), *_fields(self.callee))
        return f"{self.caller_tag};{self.callee_tag};{','.join(str(n) for n in numbers)}"

    @classmethod
    def decode(cls, text: str) -> "CseqMap":
        """Parse :meth:`encode`'s form.

        Raises:
            ValueError: not that form (tags missing, not 10 non-negative numbers).
        """
        caller_tag, sep1, rest = text.partition(";")
        callee_tag, sep2, numbers = rest.partition(";")
        values = [int(n) for n in numbers.split(",")] if sep1 and sep2 else []
        if len(values) != 10 or not caller_tag or not callee_tag or min(values) < 0:
            raise ValueError(f"not a CSeq map: {text!r}")
        return cls(caller_tag, callee_tag, SideSeq(*values[:5]), SideSeq(*values[5:]))


def _fields(seq: SideSeq) -> tuple[int, int, int, int, int]:
    return seq.last, seq.shift, seq.top, seq.invite, seq.invite_out


def relay(seq: SideSeq, cseq: int, method: str) -> tuple[int, SideSeq]:
    """The number to relay a request the side sent with CSeq ``cseq``, and the side's new state.

    ``ACK`` and ``CANCEL`` of the side's last INVITE get that INVITE's relayed number
    (RFC 3261 sections 13.2.2.4 and 9.1); every other request gets ``cseq + shift``.

    Raises:
        ValueError: ``cseq`` outside 0..2**31-1, or the renumbered value would be.
    """
    if not 0 <= cseq <= MAX_CSEQ:
        raise ValueError(f"CSeq {cseq} out of range")
    if method in ("ACK", "CANCEL"):
        if seq.invite and cseq == seq.invite:
            return seq.invite_out, seq
        return _checked(cseq + seq.shift), seq
    out = _checked(cseq + seq.shift)
    new = replace(seq, last=max(seq.last, cseq), top=max(seq.top, out))
    if method == "INVITE":
        new = replace(new, invite=cseq, invite_out=out)
    return out, new


def local(seq: SideSeq) -> tuple[int, SideSeq]:
    """The CSeq of a request the edge sends on the side's behalf, and the side's new state.

    Returns:
        ``top + 1``, and a state whose shift keeps the side's next request (which has
        a CSeq above ``last``) above that number.

    Raises:
        ValueError: the number would leave 0..2**31-1.
    """
    number = _checked(seq.top + 1)
    return number, replace(seq, top=number, shift=max(seq.shift, number - seq.last))


def _checked(value: int) -> int:
    if value > MAX_CSEQ:
        raise ValueError(f"CSeq {value} out of range")
    return value
