"""The SIPp test harness: the demo's launcher (:mod:`routing.ops.sipp`) plus the scenarios
the integration tests generate (responses that only differ by their status code, a carrier
gateway that answers OPTIONS, SIPp ``<send>`` blocks of responses).

Tests import SIPp peers from here only: ``from tests.sipp import uac, uas``.
"""

from __future__ import annotations

from pathlib import Path

from routing.ops.sipp import (
    FINAL_CODES,
    RUNNING,
    SCENARIOS,
    SippError,
    SippRun,
    reject_uac_scenario,
    sipp_binary,
    stop_all,
    uac,
    uas,
)

__all__ = [
    "FINAL_CODES", "RUNNING", "SCENARIOS", "SippError", "SippRun", "reject_uac_scenario", "sipp_binary",
    "stop_all", "uac", "uas", "PCMU_ANSWER_SDP", "reply", "reply_uas_scenario", "gateway_scenario",
]


#: SDP of a PCMU answer (with telephone-event 101) at SIPp's own media port
PCMU_ANSWER_SDP = """      v=0
      o=- 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000"""


def reply(status: str, tag: str = "", dialog: bool = False, retrans: bool = False,
          headers: str = "", sdp: str = "") -> str:
    """A SIPp ``<send>`` of a response to the last request, echoing its Via, From, To, Call-ID
    and CSeq (RFC 3261 section 8.2.6.2).

    Args:
        status: code and reason phrase, e.g. ``"200 OK"``.
        tag: a To tag to add (``"01"`` gives ``[pid]SIPpTag01[call_number]``); empty for none.
        dialog: a dialog-creating response: echo Record-Route and add a Contact (RFC 3261 section 12.1.1).
        retrans: retransmit every 500 ms until the next message arrives (final INVITE responses).
        headers: further header lines, each indented and ending with a newline.
        sdp: an SDP body (indented lines); empty for no body.
    """
    to_tag = f";tag=[pid]SIPpTag{tag}[call_number]" if tag else ""
    lines = [f"SIP/2.0 {status}", "[last_Via:]", "[last_From:]", f"[last_To:]{to_tag}", "[last_Call-ID:]", "[last_CSeq:]"]
    if dialog:
        lines += ["[last_Record-Route:]", "Contact: <sip:[local_ip]:[local_port];transport=[transport]>"]
    head = "".join(f"      {line}\n" for line in lines) + headers
    if sdp:
        message = f"{head}      Content-Type: application/sdp\n      Content-Length: [len]\n\n{sdp}\n"
    else:
        message = f"{head}      Content-Length: 0\n\n"
    attr = ' retrans="500"' if retrans else ""
    return f"""  <send{attr}>
    <![CDATA[
{message}    ]]>
  </send>
"""


def reply_uas_scenario(workdir: Path, code: int, early_media: bool = False) -> Path:
    """A callee that answers INVITEs with ``code`` (optionally after a 183 with SDP)."""
    early = reply("183 Session Progress", tag="01", dialog=True, sdp=PCMU_ANSWER_SDP) + \
        '  <pause milliseconds="100"/>\n' if early_media else ""
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uas reply {code}">
  <recv request="INVITE"/>
{reply("100 Trying")}{early}{reply(f"{code} Test Reply {code}", tag="01", retrans=True)}  <recv request="ACK"/>
</scenario>
"""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"uas_reply_{code}{'_early' if early_media else ''}.xml"
    path.write_text(text)
    return path


def gateway_scenario(workdir: Path, options_code: int = 200, invite_code: int = 200) -> Path:
    """A carrier gateway that answers every OPTIONS with ``options_code`` and every INVITE
    with ``invite_code`` (200: rings, answers with SDP after ``-d`` ms and takes the BYE;
    otherwise 100 then that final response).  Each OPTIONS counts as one SIPp call."""
    if invite_code == 200:
        answer = (reply("180 Ringing", tag="01", dialog=True) + "  <pause/>\n"
                  + reply("200 OK", tag="01", dialog=True, retrans=True, sdp=PCMU_ANSWER_SDP)
                  + '  <recv request="ACK" crlf="true"/>\n  <recv request="BYE"/>\n' + reply("200 OK"))
    else:
        answer = (reply("100 Trying") + reply(f"{invite_code} Test Reply {invite_code}", tag="01", retrans=True)
                  + '  <recv request="ACK"/>\n')
    options = reply(f"{options_code} Options {options_code}", tag="02",
                    headers="      Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\n")
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="gateway options {options_code} invite {invite_code}">
  <recv request="OPTIONS" optional="true" next="options"/>
  <recv request="INVITE" crlf="true"/>
{answer}  <nop next="end"/>
  <label id="options"/>
{options}  <label id="end"/>
</scenario>
"""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"gateway_options{options_code}_invite{invite_code}.xml"
    path.write_text(text)
    return path
