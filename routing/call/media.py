"""Media policy of a call as rtpengine flags: codecs, ptime and SRTP per side.

Pure functions: given the SDP offer and the media policies of the offering
side and the answering side, :func:`offer_flags` returns the flag string for
Kamailio's ``rtpengine_offer`` (rtpengine ng protocol, ``docs/ng_control_protocol.md``
of rtpengine 10.5; Kamailio rtpengine module flag syntax), or a 488 refusal.
:mod:`routing.kamailio` only applies the result.

Rules:

* **Codecs.**  The offerer's codecs that its side does not allow are stripped
  (``codec-strip-X``).  When the two sides share codecs, the answerer is offered
  exactly the shared ones in the answerer's order (``codec-mask-all`` +
  ``codec-offer-X``): no transcoding.  When they share none, the answerer is
  offered its own codecs in its order (``codec-mask-all`` + ``codec-transcode-X``)
  and rtpengine transcodes.  telephone-event (RFC 4733) passes when offered.
  An offer with no codec its side allows is refused (488).
* **ptime.**  Equal ptimes on both sides: passed through untouched (no
  repacketisation).  Different ones: ``ptime=`` toward the answerer and
  ``ptime-reverse=`` toward the offerer (rtpengine repacketises, which engages
  its transcoding engine).
* **SRTP.**  A side set to ``sdes`` must offer RTP/SAVP(F) with ``a=crypto``
  (RFC 4568); ``dtls`` must offer UDP/TLS/RTP/SAVP(F) with ``a=fingerprint``
  (RFC 5764); otherwise 488.  The answerer is offered the protocol of its own
  policy (``RTP/AVP``, ``RTP/SAVP DTLS=off SDES-pad``, ``UDP/TLS/RTP/SAVP SDES-off``),
  rtpengine encrypting or decrypting between the legs.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Sequence
from functools import lru_cache

from routing.call.decision import Reason, Reject
from routing.tables.model import CODECS, MediaPolicy, SilenceFill, SrtpMode

__all__ = ["DEFAULT_PRIVATE_NETWORKS", "SdpOffer", "parse_sdp", "offer_flags", "answer_flags", "answer_refusal",
           "fallback_flags", "reason_header", "nat_flags",
           "BASE_FLAGS", "rtp_timeout_s", "KEEPALIVE_END_REASON", "keepalive_ended",
           "reliable_provisional", "reply_refusal"]

#: flags of every rtpengine offer/answer of the edge: the SDP's o= and c= lines point at rtpengine,
#: ICE candidates are removed (the edge is the only media address either side sees); symmetric RTP
#: whose endpoint is learned in rtpengine's first seconds of media (about 3 s), preferring packets from
#: the SDP's address (``endpoint-learning=heuristic``), after which packets from any other source are dropped
#: (``strict-source``): a third party cannot inject RTP into a call (rtpengine ng protocol,
#: "strict source", "endpoint-learning")
BASE_FLAGS = "replace-origin replace-session-connection ICE=remove strict-source endpoint-learning=heuristic"
#: payload names never stripped or reordered: DTMF events (RFC 4733) and comfort noise (RFC 3389)
PASSTHROUGH = ("telephone-event", "CN")
_STATIC_PT = {"0": "PCMU", "8": "PCMA", "9": "G722", "13": "CN"}
_CANONICAL = {c.lower(): c for c in (*CODECS, *PASSTHROUGH)}
_PROTO_FLAGS = {
    SrtpMode.NONE: "RTP/AVP",
    # SDES-pad: base64 keys with their trailing '=' (RFC 4568 section 6.1 via RFC 4648); without it some
    # endpoints (baresip, libsrtp users) misread the 44-byte AEAD_AES_256_GCM key
    SrtpMode.SDES: "RTP/SAVP DTLS=off SDES-pad",
    SrtpMode.DTLS: "UDP/TLS/RTP/SAVP SDES-off",
}


@dataclass(frozen=True, slots=True)
class SdpOffer:
    """What matters in an SDP offer's first audio stream.

    Attributes:
        protocol: the m= line's transport (``RTP/AVP``, ``RTP/SAVP``, ``UDP/TLS/RTP/SAVP``...).
        codecs: payload names in the offer's order (``PCMU``, ``opus``, ``telephone-event``...);
            names outside :data:`routing.tables.model.CODECS` keep their SDP spelling.
        crypto: the stream carries ``a=crypto`` (SDES keys, RFC 4568).
        fingerprint: the session or stream carries ``a=fingerprint`` (DTLS-SRTP, RFC 5763).
        address: the stream's connection address (its own ``c=``, else the session's).
    """

    protocol: str
    codecs: tuple[str, ...]
    crypto: bool = False
    fingerprint: bool = False
    address: str = ""

    @property
    def srtp(self) -> SrtpMode:
        """The encryption this offer provides."""
        if self.protocol.startswith("UDP/TLS/") and self.fingerprint:
            return SrtpMode.DTLS
        if self.protocol.startswith("RTP/SAVP") and self.crypto:
            return SrtpMode.SDES
        return SrtpMode.NONE


@lru_cache(maxsize=32)
def parse_sdp(body: str) -> SdpOffer | None:
    """Read the first audio m= section of an SDP body (RFC 4566 section 5.14; RFC 3551 static types).

    Memoised per worker: the same body is read by the media policy check, the branch's
    offer and the call record (the result is immutable).

    Returns:
        None when the body has no audio stream.
    """
    protocol = ""
    payloads: list[str] = []
    names: dict[str, str] = {}
    crypto = fingerprint = False
    session_address = stream_address = ""
    section = "session"
    for raw in body.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            if section == "audio":
                break  # only the first audio stream
            parts = line[2:].split()
            section = "audio" if parts and parts[0] == "audio" else "other"
            if section == "audio" and len(parts) >= 3:
                protocol, payloads = parts[2], parts[3:]
            continue
        if section == "other":
            continue
        if line.startswith("c="):
            parts = line[2:].split()
            if len(parts) >= 3:
                if section == "audio":
                    stream_address = parts[2]
                else:
                    session_address = parts[2]
        elif line.startswith("a=fingerprint:"):
            fingerprint = True
        elif section == "audio" and line.startswith("a=crypto:"):
            crypto = True
        elif section == "audio" and line.startswith("a=rtpmap:"):
            match = re.match(r"a=rtpmap:(\d+)\s+([^/\s]+)", line)
            if match:
                names[match.group(1)] = match.group(2)
    if not protocol:
        return None
    codecs: list[str] = []
    for pt in payloads:
        name = names.get(pt) or _STATIC_PT.get(pt)
        if name is None:
            continue
        name = _CANONICAL.get(name.lower(), name)
        if name not in codecs:
            codecs.append(name)
    return SdpOffer(protocol=protocol, codecs=tuple(codecs), crypto=crypto, fingerprint=fingerprint,
                    address=(stream_address or session_address).split("/")[0])


def _codec_flags(offer: SdpOffer, offerer: MediaPolicy, answerer: MediaPolicy,
                 keep_events: bool, keep_cn: bool = True) -> list[str] | Reject:
    allowed_here = offerer.codecs or CODECS
    allowed_there = answerer.codecs or CODECS
    audio = [c for c in offer.codecs if c not in PASSTHROUGH]
    usable = [c for c in audio if c in allowed_here]
    if not usable:
        return Reject.of(Reason.CODECS_NOT_ALLOWED)
    flags = [f"codec-strip-{c}" for c in audio if c not in allowed_here]
    shared = [c for c in allowed_there if c in usable]
    if shared:
        flags.append("codec-mask-all")
        flags += [f"codec-offer-{c}" for c in shared]
    else:
        flags += [f"codec-mask-{c}" for c in usable]
        flags += [f"codec-transcode-{c}" for c in allowed_there]
    flags += [f"codec-offer-{c}" for c in PASSTHROUGH
              if c in offer.codecs and (keep_cn if c == "CN" else keep_events)]
    return flags


#: forces the stream toward the side whose SDP carries it through rtpengine's transcoding engine, where
#: DTX handling (``dtx-delay``) fills the gaps of the other side's stream (rtpengine 10.5: the flag
#: exists for DTMF injection, which needs the same engine; codec.c sets force_transcoding for it)
FILL_FLAG = "inject-DTMF"


def _fills(policy: MediaPolicy, enabled: bool) -> SilenceFill:
    return (policy.fill_silence or SilenceFill.NONE) if enabled else SilenceFill.NONE


def _fill_offer_flags(offer: SdpOffer, offerer: MediaPolicy, answerer: MediaPolicy, enabled: bool) -> list[str]:
    """Flags of an offer for the sides' ``fill_silence`` (see :class:`routing.tables.model.SilenceFill`):
    the offerer's own SDP carries :data:`FILL_FLAG` when it wants filling; an ``audio`` side never
    negotiates CN (so the filling reaches it as silence in its codec); a ``cn`` offerer keeps the CN
    it offered even when the answerer has none (``codec-accept-CN``), and a ``cn`` side that is
    offered the call is offered CN even when the offerer has none (RFC 3389)."""
    flags = []
    mine, theirs = _fills(offerer, enabled), _fills(answerer, enabled)
    if mine is not SilenceFill.NONE:
        flags.append(FILL_FLAG)
    if mine is SilenceFill.AUDIO and "CN" in offer.codecs:
        flags.append("codec-strip-CN")
    elif mine is SilenceFill.CN and "CN" in offer.codecs:
        flags.append("codec-accept-CN")  # kept toward the offerer even when the answerer has no CN
    if theirs is SilenceFill.AUDIO:
        flags.append("codec-mask-CN")
    elif theirs is SilenceFill.CN and "CN" not in offer.codecs:
        flags.append("codec-transcode-CN")
    return flags


def answer_flags(answerer: MediaPolicy, enabled: bool = True) -> tuple[str, ...]:
    """Extra flags of an SDP answer from ``answerer``'s side: :data:`FILL_FLAG` when that side
    wants the other side's silences filled (its ``fill_silence`` is ``audio`` or ``cn``)."""
    return (FILL_FLAG,) if _fills(answerer, enabled) is not SilenceFill.NONE else ()


def offer_flags(offer: SdpOffer, offerer: MediaPolicy, answerer: MediaPolicy, keep_events: bool = True,
                fill: bool = True) -> str | Reject:
    """The ``rtpengine_offer`` flags for an offer from ``offerer``'s side to ``answerer``'s side.

    Args:
        offer: the parsed SDP offer (:func:`parse_sdp`).
        offerer: resolved policy (node defaults applied) of the side that sent the offer.
        answerer: resolved policy of the side the offer goes to.
        keep_events: pass telephone-event when offered; False when the DTMF flags
            (:func:`routing.call.dtmf.sdp_flags`) decide what happens to it.
        fill: the node fills silences (``media.fill_delay_ms`` > 0); False ignores ``fill_silence``.

    Returns:
        The flag string, or a 488 :class:`Reject` (``Reason.SRTP_REQUIRED``,
        ``Reason.DTLS_REQUIRED``, ``Reason.CODECS_NOT_ALLOWED``) when the offerer's side
        requires what its offer does not provide (RFC 3261 section 21.4.26).
    """
    refusal = _srtp_refusal(offerer.srtp, offer.srtp)
    if refusal is not None:
        return refusal
    no_cn = SilenceFill.AUDIO in (_fills(offerer, fill), _fills(answerer, fill))
    codecs = _codec_flags(offer, offerer, answerer, keep_events, keep_cn=not no_cn)
    if isinstance(codecs, Reject):
        return codecs
    flags = [BASE_FLAGS, _PROTO_FLAGS[answerer.srtp or SrtpMode.NONE], *codecs,
             *_fill_offer_flags(offer, offerer, answerer, fill)]
    here, there = offerer.ptime_ms or 20, answerer.ptime_ms or 20
    if here != there:
        flags += [f"ptime={there}", f"ptime-reverse={here}"]
    return " ".join(flags)


def _srtp_refusal(want: SrtpMode | None, got: SrtpMode) -> Reject | None:
    want = want or SrtpMode.NONE
    if want is SrtpMode.SDES and got is not SrtpMode.SDES:
        return Reject.of(Reason.SRTP_REQUIRED)
    if want is SrtpMode.DTLS and got is not SrtpMode.DTLS:
        return Reject.of(Reason.DTLS_REQUIRED)
    return None


def answer_refusal(answer: SdpOffer, policy: MediaPolicy) -> Reject | None:
    """Whether an SDP answer breaks its own side's policy (the ACK's answer to a delayed offer).

    The edge offered that side only its own protocol and codecs (:func:`offer_flags`), so a
    compliant answer always passes; an answer in clear from a side that requires SRTP, or with
    none of its side's codecs, does not (RFC 3264 section 6: an answer must pick from the offer).

    Returns:
        None when the answer is acceptable, else the 488 :class:`Reject` naming the cause
        (``Reason.SRTP_REQUIRED``, ``Reason.DTLS_REQUIRED``, ``Reason.CODECS_NOT_ALLOWED``);
        after a 2xx it cannot be sent as a response, it becomes the ``Reason`` of the BYEs.
    """
    refusal = _srtp_refusal(policy.srtp, answer.srtp)
    if refusal is not None:
        return refusal
    audio = [c for c in answer.codecs if c not in PASSTHROUGH]
    allowed = policy.codecs or CODECS
    if audio and not any(c in allowed for c in audio):
        return Reject.of(Reason.CODECS_NOT_ALLOWED)
    return None


def reliable_provisional(code: int, require: str, rseq: str) -> bool:
    """Whether a response is a reliable provisional response (RFC 3262 section 3): a 101-199 with
    ``100rel`` among its ``Require`` option tags and an ``RSeq`` sequence number.  Its SDP counts
    in the offer/answer exchange like a 2xx's (RFC 3262 section 5): the 2xx will not change it.

    Args:
        code: the response's status code.
        require: the values of all its ``Require`` headers, comma-separated (``""`` when none).
        rseq: its ``RSeq`` header value (``""`` when none).
    """
    tags = {tag.strip().lower() for tag in require.split(",")}
    return 100 < code < 200 and "100rel" in tags and rseq.strip().isdigit()


def reply_refusal(sdp: SdpOffer, sender: MediaPolicy, receiver: MediaPolicy, offer: bool) -> Reject | None:
    """The 488 an SDP in a response deserves under its sender's policy, or None when it follows it.

    Args:
        sdp: the response's SDP (:func:`parse_sdp`).
        sender: resolved policy of the side that sent the response (the callee).
        receiver: resolved policy of the side the response goes to (the caller).
        offer: the request had no SDP, so this SDP is the offer (delayed offer, RFC 3261 section
            13.2.1): checked as :func:`offer_flags` checks any offer; otherwise it is the answer to
            the edge's offer: checked by :func:`answer_refusal`.
    """
    if offer:
        flags = offer_flags(sdp, sender, receiver)
        return flags if isinstance(flags, Reject) else None
    return answer_refusal(sdp, sender)


def fallback_flags(receiver: MediaPolicy) -> str:
    """Flags for an offer the edge cannot bring into policy (a 2xx offer that breaks its sender's
    policy; the call is ended right after the ACK): the receiving side still gets only its own
    protocol, so a side that requires SRTP is never sent an offer in clear."""
    return f"{BASE_FLAGS} {_PROTO_FLAGS[receiver.srtp or SrtpMode.NONE]}"


def reason_header(reject: Reject) -> str:
    """The ``Reason`` header (RFC 3326) of the BYEs that end a call whose media broke a policy after
    its 2xx: ``Reason: SIP;cause=488;text="SRTP Required"``, without the line end."""
    return f'Reason: SIP;cause={reject.code};text="{reject.reason}"'


#: networks whose addresses a NATed peer may write into its SDP, and whose peers the edge reaches
#: directly: RFC 1918, RFC 6598 (carrier-grade NAT), link-local, loopback, IPv6 unique-local
#: (RFC 4193), link-local and loopback (the default of settings ``media.private_networks``)
DEFAULT_PRIVATE_NETWORKS = (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8",
    "fc00::/7", "fe80::/10", "::1/128",
)


@lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def nat_flags(sdp_address: str, source_ip: str,
              private_networks: Sequence[str] = DEFAULT_PRIVATE_NETWORKS) -> tuple[str, ...]:
    """``SIP-source-address`` when a peer's SDP names a private or unspecified address while its
    SIP comes from outside the private networks: a peer behind NAT that does not know its public
    address.  rtpengine then sends media toward the SIP source address (with the SDP's port) until
    it learns the real RTP source from the first packets (symmetric RTP, RFC 4961; rtpengine ng
    flag ``SIP-source-address``), so the private address never breaks the media path.  Peers on a
    private network (private source too) keep the SDP's address.

    Args:
        sdp_address: the ``c=`` address of the SDP (:attr:`SdpOffer.address`).
        source_ip: where the SIP message came from.
        private_networks: CIDRs treated as private (settings ``media.private_networks``,
            default :data:`DEFAULT_PRIVATE_NETWORKS`: RFC 1918, RFC 6598,
            link-local, loopback, IPv6 unique-local and link-local).

    Raises:
        ValueError: a CIDR of ``private_networks`` is not a network (settings validate them first).
    """
    return _nat_flags(sdp_address, source_ip, tuple(private_networks))


@lru_cache(maxsize=4096)
def _nat_flags(sdp_address: str, source_ip: str, private_networks: tuple[str, ...]) -> tuple[str, ...]:
    """:func:`nat_flags`, memoised per worker: the same peers send every call."""
    try:
        sdp = ipaddress.ip_address(sdp_address)
        source = ipaddress.ip_address(source_ip)
    except ValueError:
        return ()
    nets = _networks(private_networks)
    if sdp == source or _within(source, nets):
        return ()
    if sdp.is_unspecified or _within(sdp, nets):
        return ("SIP-source-address",)
    return ()


def _within(address: ipaddress.IPv4Address | ipaddress.IPv6Address,
            nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in nets)


def rtp_timeout_s(*policies: MediaPolicy) -> int:
    """The RTP inactivity timeout of a call: the shortest one its sides set (s); 0 when none does."""
    values = [p.rtp_timeout_s for p in policies if p.rtp_timeout_s]
    return min(values) if values else 0


#: ``media_end_reason`` of a call the dialog module ended because a side with ``sip_keepalive`` stopped
#: answering its in-dialog OPTIONS
KEEPALIVE_END_REASON = "sip_keepalive"
#: dialog ``dflags`` bit set when the dialog's timer expired (``DLG_FLAG_EXPIRED``, dialog module
#: dlg_hash.h; set in dlg_ontimeout before the BYEs of ``send_bye``)
DLG_FLAG_EXPIRED = 1 << 10
#: the remaining life (s) the dialog module gives a call whose keepalives failed
#: (Kamailio 5.6.3 dialog dlg_req_within.c, dlg_ka_cb_all: ``update_dlg_timer(&dlg->tl, 10)``)
KEEPALIVE_GRACE_S = 10


def keepalive_ended(dflags: int, lifetime_s: int, keepalive_side: bool, answered: bool) -> bool:
    """Whether a dialog the edge did not end itself was ended by the dialog module's keepalive.

    Kamailio 5.6.3 gives no event of its own for a failed keepalive: after ``ka_failed_limit``
    in-dialog OPTIONS to a side got ``408`` or ``481``, the dialog module sets the dialog's
    lifetime to :data:`KEEPALIVE_GRACE_S` (10 s) and restarts its timer; when that expires
    (dlg_ontimeout: ``DLG_FLAG_EXPIRED``) it sends BYE to both sides (``send_bye``) and
    ``dialog:end`` follows.  The only other timer expiries of an edge call are the backstop
    ``default_timeout`` (``sip.max_call_duration_s`` + 60 s, never 10 s) and a 200 never ACKed
    (also cut to 10 s, but that call was never answered by an ACK, so its call clock never ran).

    Args:
        dflags: the dialog's ``$dlg(dflags)``.
        lifetime_s: the dialog's ``$dlg(lifetime)`` (s).
        keepalive_side: a side of the call has ``sip_keepalive`` (keepalives were sent).
        answered: the call's ACK was seen (the edge's call clock was running for it).
    """
    return bool(dflags & DLG_FLAG_EXPIRED) and lifetime_s == KEEPALIVE_GRACE_S and keepalive_side and answered
