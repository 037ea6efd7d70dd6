"""SIPp scenarios for the DTMF tests, generated per call: which codecs a peer offers or
answers (with or without ``telephone-event``), where its media goes (SIPp's own media port
to play a pcap, or a recorder's port given with ``-key rtp_port``), and what it sends in the
dialog (a pcap of RFC 4733 events or in-band tones, DTMF INFO requests)."""

from __future__ import annotations

from pathlib import Path

from tests.sipp import reply


def _sdp(te: bool, port: str, te_pt: str = "101") -> str:
    fmts = f"0 {te_pt}" if te else "0"
    te_lines = f"\n      a=rtpmap:{te_pt} telephone-event/8000\n      a=fmtp:{te_pt} 0-16" if te else ""
    return f"""      v=0
      o=- 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio {port} RTP/AVP {fmts}
      a=rtpmap:0 PCMU/8000{te_lines}
      a=ptime:20
      a=sendrecv"""


def _info(digit: str, cseq: int, caller: bool) -> str:
    if caller:
        head = """      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]"""
    else:
        head = """      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$callee_to];tag=[pid]SIPpTag01[call_number]
      To: [$callee_from]
      Call-ID: [call_id]"""
    return f"""  <send retrans="500">
    <![CDATA[
{head}
      CSeq: {cseq} INFO
      [routes]
      Contact: <sip:[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={digit}
      Duration=200
    ]]>
  </send>
  <recv response="200"/>
  <pause milliseconds="400"/>
"""


def _play(pcap: Path | None, talk_first: bool = False) -> str:
    """Start playing ``pcap`` (in the background); with ``talk_first``, talk 800 ms before going on:
    a caller speaks before pressing keys, and rtpengine can only inject a digit played from an
    INFO into a stream it has already received (its SSRC context)."""
    if pcap is None:
        return ""
    pause = '  <pause milliseconds="800"/>\n' if talk_first else ""
    return f"""  <nop>
    <action>
      <exec play_pcap_audio="{pcap}"/>
    </action>
  </nop>
{pause}"""


def _caller_in_dialog(method: str, cseq: int) -> str:
    """The CDATA of an in-dialog request without body from the caller (ACK, BYE), along the route set."""
    return f"""    <![CDATA[
      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      [routes]
      Contact: <sip:[caller]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>"""


def _until_bye() -> str:
    """Answer INFOs until the peer's BYE, answer it and end the scenario."""
    return f"""  <label id="wait"/>
  <recv request="INFO" optional="true" next="info"/>
  <recv request="BYE"/>
{_answer_info()}  <nop next="end"/>
  <label id="info"/>
{_answer_info()}  <nop next="wait"/>
  <label id="end"/>
  <timewait milliseconds="200"/>"""


def _callee_bye(after_ms: int, cseq: int) -> str:
    """The callee hangs up ``after_ms`` after the ACK, answering INFOs meanwhile, and ends."""
    return f"""  <recv request="INFO" timeout="{after_ms}" ontimeout="hangup" next="heard"/>
  <label id="heard"/>
{_answer_info()}  <recv request="INFO" timeout="{after_ms}" ontimeout="hangup" next="heard"/>
  <label id="hangup"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$callee_to];tag=[pid]SIPpTag01[call_number]
      To: [$callee_from]
      Call-ID: [call_id]
      CSeq: {cseq} BYE
      [routes]
      Contact: <sip:[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true" next="end"/>
"""


def _challenge() -> str:
    """Refuse the first INVITE with a digest challenge (RFC 3261 section 22.2) and take its ACK."""
    return """  <recv request="INVITE"/>
  <send>
    <![CDATA[
      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag02[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="carrier.example", nonce="[pid]n[call_number]x47", algorithm=MD5
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
"""


def _answer_info() -> str:
    """Answer any INFO (relayed by the edge) with 200 while waiting."""
    return reply("200 OK")


def caller(workdir: Path, te: bool, record: bool, pcap: Path | None = None, info: str = "",
           hold_ms: int = 2500, until_bye: bool = False) -> Path:
    """A caller: INVITE with PCMU (+ telephone-event when ``te``), media at SIPp's port or at the
    recorder's (``record``: ``-key rtp_port``), plays ``pcap`` after the ACK, sends one INFO per
    digit of ``info``, accepts INFOs, holds ``hold_ms`` and hangs up; with ``until_bye``, answers
    every INFO and waits for the callee's BYE instead of hanging up."""
    port = "[rtp_port]" if record else "[media_port]"
    infos = "".join(_info(d, 2 + i, caller=True) for i, d in enumerate(info))
    bye_cseq = 2 + len(info)
    hang_up = f"""  <recv request="INFO" timeout="{hold_ms}" ontimeout="bye"/>
{_answer_info()}  <label id="bye"/>
  <send retrans="500">
{_caller_in_dialog("BYE", bye_cseq)}
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="dtmf caller">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[caller]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

{_sdp(te, port)}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
{_caller_in_dialog("ACK", 1)}
  </send>
  <pause milliseconds="300"/>
{_play(pcap, talk_first=bool(info))}{infos}{_until_bye() + chr(10) + "</scenario>" + chr(10) if until_bye else hang_up}"""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "dtmf_caller.xml"
    path.write_text(text)
    return path


def callee(workdir: Path, te: bool, record: bool, pcap: Path | None = None, info: str = "",
           hangup_ms: int = 0, challenge: bool = False) -> Path:
    """A callee: answers with PCMU (+ telephone-event when ``te``), media at SIPp's port or at the
    recorder's, plays ``pcap`` after the ACK, sends one INFO per digit of ``info``, answers INFOs
    and waits for the BYE; with ``hangup_ms``, hangs up itself that long after the ACK (its BYE
    is its first request: CSeq 1 + the INFOs it sent); with ``challenge``, first demands digest
    (401) and takes the INVITE the edge retries with credentials (a carrier gateway)."""
    port = "[rtp_port]" if record else "[media_port]"
    infos = "".join(_info(d, 1 + i, caller=False) for i, d in enumerate(info))
    capture = """
      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="callee_from"/>
      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="callee_to"/>""" if info or hangup_ms else ""
    if te:  # answer telephone-event with the payload type it was offered with (RFC 3264 section 6.1)
        capture += """
      <ereg regexp="a=rtpmap:([0-9]+) telephone-event" search_in="body" check_it="true" assign_to="junk,tept"/>"""
    reference = '\n  <Reference variables="junk"/>' if te else ""
    if capture:
        capture = f"""
    <action>{capture}
    </action>"""
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="dtmf callee">
{_challenge() if challenge else ""}  <recv request="INVITE" rrs="true">{capture}
  </recv>
{reply("200 OK", tag="01", dialog=True, sdp=_sdp(te, port, "[$tept]"))}  <recv request="ACK"/>
  <pause milliseconds="300"/>
{_play(pcap, talk_first=bool(info))}{infos}{_callee_bye(hangup_ms, 1 + len(info)) if hangup_ms else ""}{_until_bye()}{reference}
</scenario>
"""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "dtmf_callee.xml"
    path.write_text(text)
    return path
