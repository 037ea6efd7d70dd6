"""The media policy of a trunk or an agent (codecs, ptime, SRTP, comfort noise, silence fill)
and its fields in ``edge:trunk:{name}`` / ``edge:agent:{name}``."""

from __future__ import annotations

import functools

from dataclasses import dataclass

from routing.tables.model.fields import DataError, SilenceFill, SrtpMode, _bool, _int, parse_codecs

__all__ = ["MediaPolicy"]


@dataclass(frozen=True, slots=True)
class MediaPolicy:
    """Media policy of one side of a call (a trunk's carrier side or an agent's side).

    Every attribute may be None: the node's default for that kind of side applies
    (settings ``media.trunk`` / ``media.agent``, see :func:`MediaPolicy.over`).

    Attributes:
        codecs: audio codecs allowed on this side, in preference order (names from :data:`CODECS`);
            telephone-event (RFC 4733) is always kept when offered.
        ptime_ms: packetisation interval of this side (ms), 10-60 by 10.
        srtp: encryption this side requires (a call that cannot provide it is refused with 488).
        rtp_timeout_s: no RTP from this side for this long ends the call with BYE to both sides (s, >= 5).
        sip_keepalive: the edge sends this side in-dialog OPTIONS every ``media.keepalive_interval_s``
            (Kamailio dialog module ``ka-src``/``ka-dst``); a side that stops answering (408, 481) gets
            the call ended with BYE to both sides.
        fill_silence: what this side receives while the other side is silent (:class:`SilenceFill`).
    """

    codecs: tuple[str, ...] | None = None
    ptime_ms: int | None = None
    srtp: SrtpMode | None = None
    rtp_timeout_s: int | None = None
    sip_keepalive: bool | None = None
    fill_silence: SilenceFill | None = None

    def over(self, default: "MediaPolicy") -> "MediaPolicy":
        """This policy with every unset attribute taken from ``default``."""
        return MediaPolicy(
            codecs=self.codecs if self.codecs is not None else default.codecs,
            ptime_ms=self.ptime_ms if self.ptime_ms is not None else default.ptime_ms,
            srtp=self.srtp if self.srtp is not None else default.srtp,
            rtp_timeout_s=self.rtp_timeout_s if self.rtp_timeout_s is not None else default.rtp_timeout_s,
            sip_keepalive=self.sip_keepalive if self.sip_keepalive is not None else default.sip_keepalive,
            fill_silence=self.fill_silence if self.fill_silence is not None else default.fill_silence,
        )

    def to_redis(self) -> dict[str, str]:
        """Fields added to ``edge:trunk:{name}`` / ``edge:agent:{name}`` (empty = node default)."""
        return {
            "codecs": ",".join(self.codecs or ()),
            "ptime_ms": "" if self.ptime_ms is None else str(self.ptime_ms),
            "srtp": "" if self.srtp is None else self.srtp.value,
            "rtp_timeout_s": "" if self.rtp_timeout_s is None else str(self.rtp_timeout_s),
            "sip_keepalive": "" if self.sip_keepalive is None else ("yes" if self.sip_keepalive else "no"),
            "fill_silence": "" if self.fill_silence is None else self.fill_silence.value,
        }

    def to_json(self) -> dict[str, object]:
        """A plain dict (call plan, ``routing.json``); inverse of :meth:`from_json`."""
        return {"codecs": list(self.codecs) if self.codecs is not None else None, "ptime_ms": self.ptime_ms,
                "srtp": self.srtp.value if self.srtp else None, "rtp_timeout_s": self.rtp_timeout_s,
                "sip_keepalive": self.sip_keepalive,
                "fill_silence": self.fill_silence.value if self.fill_silence else None}

    @classmethod
    def from_json(cls, data: dict | None) -> "MediaPolicy":
        """Inverse of :meth:`to_json` (None gives an empty policy).  Policies are few and frozen: each
        distinct one is built once per process (the call path reads them several times per call)."""
        data = data or {}
        codecs = data.get("codecs")
        return _policy(tuple(codecs) if codecs is not None else None, data.get("ptime_ms"), data.get("srtp") or None,
                       data.get("rtp_timeout_s"), data.get("sip_keepalive"), data.get("fill_silence") or None)

    @classmethod
    def parse(cls, codecs: str | None, ptime_ms: str | int | None, srtp: str | None,
              rtp_timeout_s: str | int | None, where: str, sip_keepalive: str | bool | None = None,
              fill_silence: str | None = None) -> "MediaPolicy":
        """Validate media fields from redis or the CLI (None or ``""`` = node default).

        Raises:
            DataError: unknown codec, ptime not 10-60 in steps of 10, unknown srtp mode,
                timeout below 5 s, sip_keepalive not yes/no, fill_silence not none/audio/cn;
                the message names ``where`` and the field.
        """
        if isinstance(sip_keepalive, bool):
            sip_keepalive = "yes" if sip_keepalive else "no"
        keepalive = None if not sip_keepalive else _bool(sip_keepalive, f"{where} sip_keepalive", default=False)
        try:
            fill = SilenceFill(fill_silence.strip().lower()) if fill_silence else None
        except ValueError:
            raise DataError(f"{where} fill_silence: must be none, audio or cn, got {fill_silence!r}") from None
        ptime = _int(None if ptime_ms is None else str(ptime_ms), f"{where} ptime_ms", minimum=10)
        if ptime is not None and (ptime > 60 or ptime % 10):
            raise DataError(f"{where} ptime_ms: must be 10, 20, 30, 40, 50 or 60, got {ptime}")
        try:
            mode = SrtpMode(srtp.strip().lower()) if srtp else None
        except ValueError:
            raise DataError(f"{where} srtp: must be none, sdes or dtls, got {srtp!r}") from None
        timeout = _int(None if rtp_timeout_s is None else str(rtp_timeout_s), f"{where} rtp_timeout_s", minimum=5)
        return cls(
            codecs=parse_codecs(codecs, f"{where} codecs") if codecs else None,
            ptime_ms=ptime,
            srtp=mode,
            rtp_timeout_s=timeout,
            sip_keepalive=keepalive,
            fill_silence=fill,
        )

    @classmethod
    def from_redis(cls, fields: dict[str, str], where: str) -> "MediaPolicy":
        """The media fields of a trunk or agent hash.

        Raises:
            DataError: as :meth:`parse`.
        """
        return cls.parse(fields.get("codecs"), fields.get("ptime_ms"), fields.get("srtp"),
                         fields.get("rtp_timeout_s"), where, fields.get("sip_keepalive"), fields.get("fill_silence"))


@functools.lru_cache(maxsize=256)
def _policy(codecs: tuple[str, ...] | None, ptime_ms: int | None, srtp: str | None, rtp_timeout_s: int | None,
            sip_keepalive: bool | None, fill_silence: str | None) -> MediaPolicy:
    """The :class:`MediaPolicy` of these fields (memoised for :meth:`MediaPolicy.from_json`)."""
    return MediaPolicy(codecs=codecs, ptime_ms=ptime_ms, srtp=SrtpMode(srtp) if srtp else None,
                       rtp_timeout_s=rtp_timeout_s, sip_keepalive=sip_keepalive,
                       fill_silence=SilenceFill(fill_silence) if fill_silence else None)
