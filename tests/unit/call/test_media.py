"""routing.call.media: SDP reading and the rtpengine flags of each media policy combination."""

from __future__ import annotations

import pytest

from routing.call.decision import Reject
from routing.call.media import (BASE_FLAGS, DEFAULT_PRIVATE_NETWORKS, SdpOffer, answer_refusal, fallback_flags, nat_flags, offer_flags, parse_sdp,
                           reason_header, rtp_timeout_s)
from routing.tables.model import DataError, MediaPolicy, SrtpMode

PLAIN = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 8 9 96 101 13\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n"
    "m=video 4002 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n"
)
SDES = (
    "v=0\r\nc=IN IP4 192.0.2.5\r\nm=audio 4000 RTP/SAVP 0\r\n"
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
)
DTLS = "v=0\r\na=fingerprint:sha-256 AB:CD\r\nm=audio 4000 UDP/TLS/RTP/SAVP 111\r\na=rtpmap:111 OPUS/48000/2\r\n"


def policy(codecs=("PCMU", "PCMA", "G722", "opus"), ptime=20, srtp=SrtpMode.NONE) -> MediaPolicy:
    return MediaPolicy(codecs=tuple(codecs), ptime_ms=ptime, srtp=srtp, rtp_timeout_s=60)


def test_parse_sdp_reads_the_first_audio_stream() -> None:
    offer = parse_sdp(PLAIN)
    assert offer == SdpOffer("RTP/AVP", ("PCMU", "PCMA", "G722", "opus", "telephone-event", "CN"), address="192.0.2.5")
    assert offer.srtp is SrtpMode.NONE
    assert parse_sdp(SDES).srtp is SrtpMode.SDES
    dtls = parse_sdp(DTLS)
    assert dtls.srtp is SrtpMode.DTLS and dtls.codecs == ("opus",)
    assert parse_sdp("v=0\r\nm=video 4002 RTP/AVP 97\r\n") is None
    # RTP/SAVP without keys is no encryption the edge can use
    assert parse_sdp("v=0\r\nm=audio 4000 RTP/SAVP 0\r\n").srtp is SrtpMode.NONE


def test_shared_codecs_are_offered_in_the_answerers_order_without_transcoding() -> None:
    flags = offer_flags(parse_sdp(PLAIN), policy(("PCMU", "PCMA")), policy(("PCMA", "opus", "PCMU")))
    assert flags.split() == [
        *BASE_FLAGS.split(), "RTP/AVP",
        "codec-strip-G722", "codec-strip-opus",  # not allowed on the carrier side
        "codec-mask-all", "codec-offer-PCMA", "codec-offer-PCMU",  # opus is not offered: PCMU/PCMA are shared
        "codec-offer-telephone-event", "codec-offer-CN",
    ]
    assert "transcode" not in flags and "ptime" not in flags


def test_no_shared_codec_transcodes_to_the_answerers_codecs() -> None:
    offer = SdpOffer("RTP/AVP", ("PCMU", "telephone-event"))
    flags = offer_flags(offer, policy(("PCMU",)), policy(("opus", "G722")))
    assert flags.split()[6:] == ["codec-mask-PCMU", "codec-transcode-opus", "codec-transcode-G722",
                                 "codec-offer-telephone-event"]


def test_offer_without_an_allowed_codec_is_refused() -> None:
    result = offer_flags(SdpOffer("RTP/AVP", ("G729", "telephone-event")), policy(("PCMU",)), policy())
    assert result == Reject(488, "No Allowed Codec", "codecs_not_allowed")


@pytest.mark.parametrize(
    "required, sdp, refusal",
    [
        (SrtpMode.SDES, PLAIN, "SRTP Required"),
        (SrtpMode.SDES, DTLS, "SRTP Required"),
        (SrtpMode.DTLS, PLAIN, "DTLS-SRTP Required"),
        (SrtpMode.DTLS, SDES, "DTLS-SRTP Required"),
    ],
)
def test_a_side_requiring_encryption_is_refused_a_clear_offer(required: SrtpMode, sdp: str, refusal: str) -> None:
    result = offer_flags(parse_sdp(sdp), policy(srtp=required), policy())
    assert isinstance(result, Reject) and (result.code, result.reason) == (488, refusal)


@pytest.mark.parametrize(
    "answerer, expected",
    [(SrtpMode.NONE, "RTP/AVP"), (SrtpMode.SDES, "RTP/SAVP DTLS=off SDES-pad"), (SrtpMode.DTLS, "UDP/TLS/RTP/SAVP SDES-off")],
)
def test_the_answerer_gets_the_protocol_of_its_policy(answerer: SrtpMode, expected: str) -> None:
    assert expected in offer_flags(parse_sdp(SDES), policy(srtp=SrtpMode.SDES), policy(srtp=answerer))
    assert expected in offer_flags(parse_sdp(PLAIN), policy(), policy(srtp=answerer))


def test_ptime_is_repacketised_only_when_the_sides_differ() -> None:
    assert "ptime" not in offer_flags(parse_sdp(PLAIN), policy(ptime=30), policy(ptime=30))
    flags = offer_flags(parse_sdp(PLAIN), policy(ptime=20), policy(ptime=40)).split()
    assert flags[-2:] == ["ptime=40", "ptime-reverse=20"]


def test_rtp_timeout_is_the_shortest_set() -> None:
    assert rtp_timeout_s(MediaPolicy(rtp_timeout_s=90), MediaPolicy(rtp_timeout_s=60)) == 60
    assert rtp_timeout_s(MediaPolicy(), MediaPolicy(rtp_timeout_s=120)) == 120
    assert rtp_timeout_s(MediaPolicy(), MediaPolicy()) == 0


def test_policy_fields_from_redis_and_node_defaults() -> None:
    fields = {"codecs": "opus, pcmu", "ptime_ms": "", "srtp": "DTLS", "rtp_timeout_s": "90"}
    got = MediaPolicy.from_redis(fields, "edge:agent:bot")
    assert got == MediaPolicy(codecs=("opus", "PCMU"), ptime_ms=None, srtp=SrtpMode.DTLS, rtp_timeout_s=90)
    resolved = got.over(MediaPolicy(codecs=("PCMU",), ptime_ms=20, srtp=SrtpMode.NONE, rtp_timeout_s=60))
    assert resolved == MediaPolicy(codecs=("opus", "PCMU"), ptime_ms=20, srtp=SrtpMode.DTLS, rtp_timeout_s=90)
    assert MediaPolicy.from_json(resolved.to_json()) == resolved
    assert MediaPolicy.from_redis(got.to_redis(), "x") == got


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"codecs": "PCMU,G729"}, "edge:trunk:t codecs: unknown codec 'G729'"),
        ({"codecs": "PCMU,pcmu"}, "codec PCMU listed twice"),
        ({"ptime_ms": "25"}, "edge:trunk:t ptime_ms: must be 10, 20, 30, 40, 50 or 60"),
        ({"srtp": "zrtp"}, "edge:trunk:t srtp: must be none, sdes or dtls"),
        ({"rtp_timeout_s": "4"}, "edge:trunk:t rtp_timeout_s: must be >= 5"),
    ],
)
def test_bad_policy_fields_name_the_key_and_field(fields: dict[str, str], message: str) -> None:
    with pytest.raises(DataError, match=message):
        MediaPolicy.from_redis(fields, "edge:trunk:t")


@pytest.mark.parametrize(
    "sdp_address, source, flags",
    [
        ("10.0.0.5", "198.51.100.20", ("SIP-source-address",)),  # behind NAT: private SDP, public source
        ("100.64.3.4", "198.51.100.20", ("SIP-source-address",)),  # carrier-grade NAT
        ("0.0.0.0", "198.51.100.20", ("SIP-source-address",)),
        ("fd00::5", "2001:db8::20", ("SIP-source-address",)),
        ("10.0.0.5", "10.0.0.6", ()),  # a LAN peer: its SDP address is reachable
        ("198.51.100.7", "198.51.100.20", ()),  # a public media address of its own (media server)
        ("198.51.100.20", "198.51.100.20", ()),
        ("not-an-ip", "198.51.100.20", ()),
    ],
)
def test_private_sdp_address_of_a_public_peer_uses_the_sip_source(sdp_address: str, source: str, flags: tuple) -> None:
    assert nat_flags(sdp_address, source) == flags


def test_every_offer_resists_rtp_injection() -> None:
    flags = offer_flags(parse_sdp(PLAIN), policy(), policy()).split()
    assert "strict-source" in flags and "endpoint-learning=heuristic" in flags


# -- delayed offer: the ACK's answer and a 2xx offer that breaks its sender's policy -------------

def test_answer_in_clear_from_a_side_requiring_srtp_is_refused() -> None:
    clear = SdpOffer("RTP/AVP", ("PCMU",))
    assert answer_refusal(clear, MediaPolicy(srtp=SrtpMode.SDES)).tag == "srtp_required"
    assert answer_refusal(clear, MediaPolicy(srtp=SrtpMode.DTLS)).tag == "dtls_required"
    assert answer_refusal(clear, MediaPolicy(srtp=SrtpMode.NONE)) is None
    sdes = SdpOffer("RTP/SAVP", ("PCMU",), crypto=True)
    assert answer_refusal(sdes, MediaPolicy(srtp=SrtpMode.SDES)) is None
    assert answer_refusal(sdes, MediaPolicy(srtp=SrtpMode.DTLS)).tag == "dtls_required"


def test_answer_with_none_of_its_sides_codecs_is_refused() -> None:
    policy = MediaPolicy(codecs=("PCMA",))
    assert answer_refusal(SdpOffer("RTP/AVP", ("PCMU", "telephone-event")), policy).tag == "codecs_not_allowed"
    assert answer_refusal(SdpOffer("RTP/AVP", ("PCMU", "PCMA")), policy) is None
    # an answer with only telephone-event/CN (or a rejected stream) is not judged on codecs
    assert answer_refusal(SdpOffer("RTP/AVP", ("telephone-event",)), policy) is None


def test_fallback_offer_keeps_the_receivers_protocol() -> None:
    assert fallback_flags(MediaPolicy(srtp=SrtpMode.SDES)) == f"{BASE_FLAGS} RTP/SAVP DTLS=off SDES-pad"
    assert fallback_flags(MediaPolicy(srtp=SrtpMode.DTLS)) == f"{BASE_FLAGS} UDP/TLS/RTP/SAVP SDES-off"
    assert fallback_flags(MediaPolicy()) == f"{BASE_FLAGS} RTP/AVP"


def test_reason_header_names_the_refusal() -> None:
    assert reason_header(Reject(488, "SRTP Required", "srtp_required")) == 'Reason: SIP;cause=488;text="SRTP Required"'


def test_loopback_peers_are_private_by_default_and_networks_are_a_setting() -> None:
    """A peer on this host is reached directly (default); an operator (or a test on loopback)
    that does not list 127.0.0.0/8 makes a loopback SIP source count as outside the private networks."""
    assert nat_flags("10.9.8.7", "127.0.3.13") == ()
    assert nat_flags("10.9.8.7", "127.0.3.13", ("10.0.0.0/8",)) == ("SIP-source-address",)
    assert nat_flags("192.168.1.5", "127.0.3.13", ("10.0.0.0/8",)) == ()  # not private by this list


def test_private_networks_setting_is_validated_and_rendered() -> None:
    from routing.ops.render import runtime_settings
    from routing.ops.settings import Settings

    assert runtime_settings(Settings()).media_private_networks == DEFAULT_PRIVATE_NETWORKS
    custom = Settings.model_validate({"media": {"private_networks": ["10.0.0.0/8", "fd00::/8"]}})
    assert runtime_settings(custom).media_private_networks == ("10.0.0.0/8", "fd00::/8")
    with pytest.raises(ValueError, match=r"media\.private_networks\.0"):
        Settings.model_validate({"media": {"private_networks": ["10.0.0.300/8"]}})


# -- fill_silence and sip_keepalive ---------------------------------------------------------------

from routing.call.media import FILL_FLAG, answer_flags  # noqa: E402
from routing.tables.model import SilenceFill  # noqa: E402

_PCMU_CN = SdpOffer("RTP/AVP", ("PCMU", "CN"))
_PCMU = SdpOffer("RTP/AVP", ("PCMU",))


def test_offerer_wanting_audio_fill_forces_transcoding_and_drops_cn() -> None:
    flags = offer_flags(_PCMU_CN, MediaPolicy(fill_silence=SilenceFill.AUDIO), MediaPolicy()).split()
    assert FILL_FLAG in flags and "codec-strip-CN" in flags and "codec-offer-CN" not in flags


def test_offerer_wanting_cn_keeps_its_cn_even_if_the_answerer_has_none() -> None:
    flags = offer_flags(_PCMU_CN, MediaPolicy(fill_silence=SilenceFill.CN), MediaPolicy()).split()
    assert FILL_FLAG in flags and "codec-accept-CN" in flags and "codec-offer-CN" in flags


def test_answerer_fill_is_in_its_answer_and_shapes_what_it_is_offered() -> None:
    audio = offer_flags(_PCMU_CN, MediaPolicy(), MediaPolicy(fill_silence=SilenceFill.AUDIO)).split()
    assert FILL_FLAG not in audio and "codec-mask-CN" in audio and "codec-offer-CN" not in audio
    cn = offer_flags(_PCMU, MediaPolicy(), MediaPolicy(fill_silence=SilenceFill.CN)).split()
    assert "codec-transcode-CN" in cn
    assert answer_flags(MediaPolicy(fill_silence=SilenceFill.CN)) == (FILL_FLAG,)
    assert answer_flags(MediaPolicy(fill_silence=SilenceFill.NONE)) == ()
    assert answer_flags(MediaPolicy()) == ()


def test_fill_is_ignored_when_the_node_does_not_fill() -> None:
    flags = offer_flags(_PCMU_CN, MediaPolicy(fill_silence=SilenceFill.AUDIO),
                        MediaPolicy(fill_silence=SilenceFill.CN), fill=False)
    assert flags == offer_flags(_PCMU_CN, MediaPolicy(), MediaPolicy())
    assert answer_flags(MediaPolicy(fill_silence=SilenceFill.AUDIO), enabled=False) == ()


def test_keepalive_and_fill_fields_round_trip_and_validate() -> None:
    policy = MediaPolicy.from_redis({"sip_keepalive": "yes", "fill_silence": "cn"}, "trunk 'x'")
    assert policy.sip_keepalive is True and policy.fill_silence is SilenceFill.CN
    assert MediaPolicy.from_redis(policy.to_redis(), "trunk 'x'") == policy
    assert MediaPolicy.from_json(policy.to_json()) == policy
    assert MediaPolicy.from_redis({}, "trunk 'x'").sip_keepalive is None
    assert MediaPolicy(sip_keepalive=False).over(MediaPolicy(sip_keepalive=True)).sip_keepalive is False
    assert MediaPolicy().over(MediaPolicy(fill_silence=SilenceFill.AUDIO)).fill_silence is SilenceFill.AUDIO
    with pytest.raises(DataError, match="trunk 'x' fill_silence"):
        MediaPolicy.from_redis({"fill_silence": "loud"}, "trunk 'x'")
    with pytest.raises(DataError, match="agent 'y' sip_keepalive"):
        MediaPolicy.from_redis({"sip_keepalive": "maybe"}, "agent 'y'")


from routing.call.media import DLG_FLAG_EXPIRED, KEEPALIVE_GRACE_S, keepalive_ended  # noqa: E402


def test_keepalive_end_is_told_from_the_other_dialog_timer_ends() -> None:
    expired = DLG_FLAG_EXPIRED | 0b10  # DLG_FLAG_CHANGED is set too after the keepalive cut the lifetime
    assert keepalive_ended(expired, KEEPALIVE_GRACE_S, keepalive_side=True, answered=True)
    # the backstop default_timeout (max_call_duration_s + 60) expired
    assert not keepalive_ended(expired, 72, keepalive_side=True, answered=True)
    # ended without the timer (dlg.end_dlg of the call clock, a BYE)
    assert not keepalive_ended(0b10, KEEPALIVE_GRACE_S, keepalive_side=True, answered=True)
    # no side with keepalives, or a 200 never ACKed (the dialog module cuts that to 10 s too)
    assert not keepalive_ended(expired, KEEPALIVE_GRACE_S, keepalive_side=False, answered=True)
    assert not keepalive_ended(expired, KEEPALIVE_GRACE_S, keepalive_side=True, answered=False)


from routing.call.media import reliable_provisional, reply_refusal  # noqa: E402


def test_reliable_provisional_needs_100rel_and_rseq() -> None:
    assert reliable_provisional(183, "100rel", "1")
    assert reliable_provisional(180, "timer, 100REL", " 7 ")
    assert not reliable_provisional(183, "", "")  # an unreliable 18x
    assert not reliable_provisional(183, "100rel", "")  # no RSeq: not a reliable response (RFC 3262 section 7.1)
    assert not reliable_provisional(100, "100rel", "1") and not reliable_provisional(200, "100rel", "1")
    assert not reliable_provisional(183, "precondition", "1")


def test_reply_refusal_checks_an_offer_as_an_offer_and_an_answer_as_an_answer() -> None:
    clear = SdpOffer("RTP/AVP", ("PCMU",))
    g722 = SdpOffer("RTP/AVP", ("G722",))
    sdes, pcmu = MediaPolicy(srtp=SrtpMode.SDES), MediaPolicy(codecs=("PCMU",))
    assert reply_refusal(clear, sdes, MediaPolicy(), offer=False).tag == "srtp_required"
    assert reply_refusal(clear, sdes, MediaPolicy(), offer=True).tag == "srtp_required"
    assert reply_refusal(g722, pcmu, MediaPolicy(), offer=True).tag == "codecs_not_allowed"
    assert reply_refusal(g722, pcmu, MediaPolicy(), offer=False).tag == "codecs_not_allowed"
    assert reply_refusal(clear, pcmu, MediaPolicy(srtp=SrtpMode.SDES), offer=True) is None  # the edge encrypts
    assert reply_refusal(clear, pcmu, MediaPolicy(), offer=False) is None
