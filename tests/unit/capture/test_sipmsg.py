"""routing.capture.sipmsg: start line, header fields (RFC 3261 section 7), digest masking."""

from __future__ import annotations

from routing.capture.sipmsg import MASK, call_id, facts, mask

INVITE = (
    "INVITE sip:+14155550100@127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.11:5070;branch=z9hG4bK-1\r\n"
    "f: <sip:+14155550123@127.0.0.11>;tag=1\r\n"
    "i: 1-2@127.0.0.11\r\n"
    "CSeq: 2 INVITE\r\n"
    "Subject: a long\r\n  folded value\r\n"
    'Proxy-Authorization: Digest username="pbx-user", realm="edge", nonce="abc123", uri="sip:x", '
    'response="0123456789abcdef", algorithm=MD5\r\n'
    "Content-Type: application/sdp\r\n\r\n"
    "v=0\r\nc=IN IP4 127.0.0.11\r\nm=audio 6000 RTP/AVP 0\r\n"
)


def test_request_facts() -> None:
    f = facts(INVITE.encode())
    assert (f.method, f.status, f.reason, f.label) == ("INVITE", 0, "sip:+14155550100@127.0.0.1:5060", "INVITE")
    assert f.call_id == "1-2@127.0.0.11"  # compact form i
    assert f.header("FROM").startswith("<sip:+14155550123")
    assert f.cseq == (2, "INVITE")
    assert f.header("subject") == "a long folded value"
    assert f.body.startswith("v=0")


def test_response_facts() -> None:
    f = facts(b"SIP/2.0 503 Service Unavailable\r\nCSeq: 1 invite\r\nCall-ID: x\r\n\r\n")
    assert (f.method, f.status, f.reason, f.label, f.is_request) == (
        "INVITE", 503, "Service Unavailable", "503 Service Unavailable", False)


def test_malformed_messages_never_raise() -> None:
    assert facts(b"").label == ""
    assert facts(b"SIP/2.0 abc\r\n\r\n").status == 0
    assert facts(b"garbage without headers").cseq == (0, "")


def test_call_id_fast_path() -> None:
    assert call_id(INVITE.encode()) == "1-2@127.0.0.11"
    assert call_id(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: a@b\r\n\r\nCall-ID: body") == "a@b"
    assert call_id(b"OPTIONS sip:x SIP/2.0\r\n\r\nCall-ID: only-in-body") == ""


def test_mask_hides_response_and_nonce_of_credentials_and_challenges() -> None:
    masked = mask(INVITE)
    assert "0123456789abcdef" not in masked and "abc123" not in masked
    assert f'response="{MASK}"' in masked and f'nonce="{MASK}"' in masked
    assert 'username="pbx-user"' in masked and "algorithm=MD5" in masked
    challenge = 'SIP/2.0 407 x\r\nproxy-authenticate: Digest realm="edge", nonce="n0nce", qop="auth"\r\n\r\n'
    assert "n0nce" not in mask(challenge)
    unquoted = "Authorization: Digest response=deadbeef, nonce=n1, username=u"
    assert mask(unquoted) == f'Authorization: Digest response="{MASK}", nonce="{MASK}", username=u'


def test_mask_leaves_other_headers_and_the_body_alone() -> None:
    text = 'INVITE sip:x SIP/2.0\r\nX-Note: nonce="keep"\r\n\r\nresponse="body"'
    assert mask(text) == text
