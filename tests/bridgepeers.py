"""SIPp scenarios of a bridged transfer's peers (generated per test into its workdir): the carrier
whose caller the agent transfers, and the human the edge's transfer leg reaches.

Both write the media address of every SDP they receive (``c=`` and ``m=audio``) to a file as
``{what} {ip} {port}`` lines (SIPp ``exec``), and put ``-key rtp_ip``/``rtp_port`` (a
:class:`tests.tonertp.ToneRtp`) in their own SDP, so a test aims its tone endpoints at the
addresses rtpengine gave and hears what crossed the edge.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["carrier_scenario", "human_scenario", "hasty_agent_scenario", "referring_agent_scenario",
           "consult_scenario", "called_carrier_scenario", "referring_caller_scenario", "media_lines",
           "CARRIER_IDS", "human_ids", "sends", "receives"]

_HEAD = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<!DOCTYPE scenario SYSTEM "sipp.dtd">\n'


def _sdp(direction: str = "sendrecv", te: int = 0) -> str:
    """A PCMU SDP at ``[rtp_ip]:[rtp_port]``; ``te``: with RFC 4733 telephone-event at that payload type."""
    events = f"      a=rtpmap:{te} telephone-event/8000\n      a=fmtp:{te} 0-15\n" if te else ""
    return ("      v=0\n      o=- 1 [cseq] IN IP4 [rtp_ip]\n      s=-\n      c=IN IP4 [rtp_ip]\n      t=0 0\n"
            f"      m=audio [rtp_port] RTP/AVP 0{f' {te}' if te else ''}\n      a=rtpmap:0 PCMU/8000\n{events}"
            f"      a={direction}")


def _note(what: str) -> str:
    """Actions writing the received SDP's media address to ``[sdp_file]``."""
    return (f'    <action>\n'
            f'      <ereg regexp="c=IN IP4 ([0-9.]+)" search_in="body" check_it="true" assign_to="c_{what},ip_{what}"/>\n'
            f'      <ereg regexp="m=audio ([0-9]+)" search_in="body" check_it="true" assign_to="m_{what},port_{what}"/>\n'
            f'      <exec command="echo {what} [$ip_{what}] [$port_{what}] >> [sdp_file]"/>\n'
            f'    </action>\n')


def _references(steps: list[str]) -> str:
    """SIPp refuses variables assigned and never used: the whole-match ones of :func:`_note`."""
    names = re.findall(r'assign_to="([cm]_[a-z]+),', "".join(steps))
    return f'  <Reference variables="{",".join(names)}"/>\n' if names else ""


def _reply(status: str, sdp: str = "", contact: str = "[local_ip]:[local_port]") -> str:
    body = f"Content-Type: application/sdp\n      Content-Length: [len]\n\n{sdp}" if sdp else "Content-Length: 0\n"
    return (f"  <send>\n    <![CDATA[\n      SIP/2.0 {status}\n      [last_Via:]\n      [last_From:]\n      [last_To:]\n"
            f"      [last_Call-ID:]\n      [last_CSeq:]\n      [last_Record-Route:]\n      Contact: <sip:peer@{contact}>\n"
            f"      {body}\n    ]]>\n  </send>\n")


def _request(method: str, cseq: int, from_: str, to: str, sdp: str = "", ctype: str = "application/sdp") -> str:
    body = f"Content-Type: {ctype}\n      Content-Length: [len]\n\n{sdp}" if sdp else "Content-Length: 0\n"
    return (f'  <send retrans="500">\n    <![CDATA[\n      {method} [next_url] SIP/2.0\n'
            f"      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n      From: {from_}\n"
            f"      To: {to}\n      Call-ID: [call_id]\n      CSeq: {cseq} {method}\n      [routes]\n"
            f"      Contact: <sip:peer@[local_ip]:[local_port]>\n      Max-Forwards: 70\n      {body}\n    ]]>\n  </send>\n")


#: the carrier's own From and the agent's To in its scenario (:func:`carrier_scenario`), for :func:`sends`
CARRIER_IDS = ('"Caller" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]',
               "<sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]")


def human_ids(tag: str = "[pid]SIPpTag01[call_number]") -> tuple[str, str]:
    """The human's own From and the edge's To in its scenario (:func:`human_scenario`)."""
    return f"[$me];tag={tag}", "[$caller]"


def sends(method: str, cseq: int, ids: tuple[str, str], sdp: str = "", note: str = "", ack_sdp: str = "",
          info: str = "") -> str:
    """Steps of a peer sending an in-dialog ``method`` (1 s after the previous step): with ``sdp``
    (``_sdp`` direction, ``""`` none) or the DTMF ``info`` digit (``application/dtmf-relay``); its
    200 awaited (its SDP noted as ``note``); a re-INVITE's ACK sent, with ``ack_sdp`` as answer."""
    me, peer = ids
    body = _sdp(sdp) if sdp else ""
    request = (_request(method, cseq, me, peer, f"      Signal={info}\n      Duration=160", "application/dtmf-relay")
               if info else _request(method, cseq, me, peer, body))
    steps = ['  <pause milliseconds="1000"/>\n', request, '  <recv response="100" optional="true"/>\n',
             '  <recv response="200">\n' + _note(note) + "  </recv>\n" if note else '  <recv response="200"/>\n']
    if method == "INVITE":
        steps.append(_request("ACK", cseq, me, peer, _sdp(ack_sdp) if ack_sdp else "").replace(' retrans="500"', ""))
    return "".join(steps)


def receives(method: str, note: str = "", answer: str = "", ack_note: str = "") -> str:
    """Steps of a peer receiving an in-dialog ``method`` (its SDP noted as ``note``), answering
    200 (with an SDP of direction ``answer``), and for a re-INVITE its ACK (noted as ``ack_note``)."""
    steps = ['  <recv request="' + method + '">\n' + _note(note) + "  </recv>\n" if note
             else f'  <recv request="{method}"/>\n', _reply("200 OK", _sdp(answer) if answer else "")]
    if method == "INVITE":
        steps.append('  <recv request="ACK">\n' + _note(ack_note) + "  </recv>\n" if ack_note
                     else '  <recv request="ACK"/>\n')
    return "".join(steps)


def carrier_scenario(workdir: Path, refer_code: str = "", bridged: bool = True, hangs_up: bool = True,
                     hold: bool = False, hangup_ms: int = 4000, held: bool = False, timers: bool = False,
                     after: str = "", te: int = 0) -> Path:
    """The carrier's caller: INVITE to ``[service]`` with its SDP, the agent's answer noted
    (``answer``); the REFER answered ``refer_code`` (``"501 Not Implemented"``; none expected when
    empty); with ``bridged`` the edge's re-INVITE noted (``reinvite``) and answered; with ``hold``
    a re-INVITE ``a=sendonly`` sent after 1 s and its answer noted (``hold``); with ``held`` a
    re-INVITE awaited, noted (``held``) and answered ``a=recvonly``; with ``timers`` its INVITE asks
    for session timers (RFC 4028, 90 s) and, 1 s after the bridge, it refreshes with an UPDATE
    without SDP; then the steps ``after`` (:func:`sends`, :func:`receives`); then BYE after
    ``hangup_ms`` (``hangs_up``) or the BYE awaited; ``te``: its offer and its answer to the edge's
    re-INVITE take RFC 4733 telephone-event at that payload type."""
    me = '"Caller" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]'
    peer = "<sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]"
    invite = _request("INVITE", 1, me, "<sip:[service]@[remote_ip]:[remote_port]>", _sdp(te=te)).replace("[next_url]",
                      "sip:[service]@[remote_ip]:[remote_port]").replace("      [routes]\n", "")
    if timers:
        invite = invite.replace("      Max-Forwards: 70\n", "      Max-Forwards: 70\n      Supported: timer\n"
                                "      Session-Expires: 90\n", 1)
    steps = [invite,
             '  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n',
             '  <recv response="200" rrs="true">\n' + _note("answer") + "  </recv>\n",
             _request("ACK", 1, me, peer).replace(' retrans="500"', "")]
    if refer_code:
        steps += ['  <recv request="REFER"/>\n', _reply(refer_code)]
    if bridged:
        steps += ['  <recv request="INVITE">\n' + _note("reinvite") + "  </recv>\n", _reply("200 OK", _sdp(te=te)),
                  '  <recv request="ACK"/>\n']
    if hold:
        steps += ['  <pause milliseconds="1000"/>\n', _request("INVITE", 2, me, peer, _sdp("sendonly")),
                  '  <recv response="100" optional="true"/>\n',
                  '  <recv response="200">\n' + _note("hold") + "  </recv>\n",
                  _request("ACK", 2, me, peer).replace(' retrans="500"', "")]
    if timers:
        steps += ['  <pause milliseconds="1000"/>\n', _request("UPDATE", 4, me, peer).replace(
                      "      Max-Forwards: 70\n", "      Max-Forwards: 70\n      Session-Expires: 90;refresher=uac\n"
                      "      Supported: timer\n"), '  <recv response="200"/>\n']
    if held:
        steps += ['  <recv request="INVITE">\n' + _note("held") + "  </recv>\n", _reply("200 OK", _sdp("recvonly")),
                  '  <recv request="ACK"/>\n']
    if after:
        steps.append(after)
    if hangs_up:
        steps += [f'  <pause milliseconds="{hangup_ms}"/>\n', _request("BYE", 5, me, peer), '  <recv response="200"/>\n']
    else:
        steps += ['  <recv request="BYE"/>\n', _reply("200 OK")]
    path = workdir / "carrier_bridge.xml"
    path.write_text(_HEAD + '<scenario name="bridge carrier">\n' + "".join(steps) + _references(steps) + "</scenario>\n")
    return path


def human_scenario(workdir: Path, answer: str = "200 OK", hangs_up: bool = False, hold: bool = False,
                   hangup_ms: int = 4000, holds: bool = False, tag: str = "[pid]SIPpTag01[call_number]",
                   hold_answer: str = "recvonly", after: str = "", te: int = 0) -> Path:
    """The human behind a carrier gateway: the leg's INVITE noted (``invite``) and answered
    ``answer`` (with its SDP when 2xx; ``"ring"``: 180, then the CANCEL awaited and the INVITE
    answered 487); with ``hold`` a re-INVITE awaited, noted (``hold``) and
    answered ``a=recvonly``; with ``holds`` a re-INVITE ``a=sendonly`` sent after 1 s and its
    answer noted (``holds``); then BYE after ``hangup_ms`` (``hangs_up``) or the BYE awaited.
    ``tag``: its To-tag (fixed when a test must name the dialog, as a ``Replaces`` does);
    ``hold_answer``: the direction of its answer to the re-INVITE; ``after``: steps before the BYE
    (:func:`sends`, :func:`receives`); ``te``: its answer takes RFC 4733 telephone-event at that
    payload type (the one the leg's INVITE offers)."""
    steps = ['  <recv request="INVITE" rrs="true">\n' + _note("invite").replace(
        "    <action>\n", '    <action>\n'
        '      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="caller"/>\n'
        '      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="me"/>\n', 1) + "  </recv>\n"]
    if answer == "ring":  # rings until the edge cancels the leg (RFC 3261 section 9.2: 200 to the CANCEL, 487)
        ringing = _reply("180 Ringing").replace("[last_To:]", "[last_To:];tag=[pid]SIPpTag01[call_number]")
        steps[0] = steps[0].replace("    <action>\n", '    <action>\n      <ereg regexp="([0-9]+) INVITE" '
                                    'search_in="hdr" header="CSeq:" check_it="true" assign_to="cs_all,icseq"/>\n', 1)
        steps += [ringing, '  <recv request="CANCEL"/>\n', _reply("200 OK"),
                  _reply("487 Request Terminated").replace("[last_CSeq:]", "CSeq: [$icseq] INVITE").replace(
                      "[last_To:]", "[last_To:];tag=[pid]SIPpTag01[call_number]"),
                  '  <recv request="ACK"/>\n', '  <Reference variables="caller,me,cs_all"/>\n']
    elif not answer.startswith("2"):
        steps += [_reply(answer), '  <recv request="ACK"/>\n', '  <Reference variables="caller,me"/>\n']
    else:
        me = f"[$me];tag={tag}"
        steps += [_reply(answer, _sdp(te=te)).replace("[last_To:]", f"[last_To:];tag={tag}"),
                  '  <recv request="ACK"/>\n']
        if hold:
            steps += ['  <recv request="INVITE">\n' + _note("hold") + "  </recv>\n", _reply("200 OK", _sdp(hold_answer)),
                      '  <recv request="ACK"/>\n']
        if holds:
            steps += ['  <pause milliseconds="1000"/>\n', _request("INVITE", 1, me, "[$caller]", _sdp("sendonly")),
                      '  <recv response="100" optional="true"/>\n',
                      '  <recv response="200">\n' + _note("holds") + "  </recv>\n",
                      _request("ACK", 1, me, "[$caller]").replace(' retrans="500"', "")]
        if after:
            steps.append(after)
        if hangs_up:
            steps += [f'  <pause milliseconds="{hangup_ms}"/>\n', _request("BYE", 2, me, "[$caller]"),
                      '  <recv response="200"/>\n']
        else:
            steps += ['  <recv request="BYE"/>\n', _reply("200 OK"), '  <Reference variables="caller,me"/>\n']
    path = workdir / "human_bridge.xml"
    path.write_text(_HEAD + '<scenario name="bridge human">\n' + "".join(steps) + _references(steps) + "</scenario>\n")
    return path


def hasty_agent_scenario(workdir: Path) -> Path:
    """An agent that hangs up as soon as its transfer is under way: it answers, REFERs to
    ``[refer_to]`` with context headers of its own (``X-Ticket``, ``X-Denied``), takes the 202 and
    the NOTIFY ``100 Trying``, then sends BYE at once."""
    me, peer = "[$me];tag=[pid]SIPpTag01[call_number]", "[$caller]"
    steps = ['  <recv request="INVITE" rrs="true">\n    <action>\n'
             '      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="caller"/>\n'
             '      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="me"/>\n'
             '    </action>\n  </recv>\n',
             _reply("200 OK", _sdp().replace("[rtp_ip]", "[media_ip]").replace("[rtp_port]", "[media_port]")).replace(
                 "[last_To:]", "[last_To:];tag=[pid]SIPpTag01[call_number]"),
             '  <recv request="ACK"/>\n',
             _request("REFER", 1, me, peer).replace("      Max-Forwards: 70\n",
                                                     "      Max-Forwards: 70\n      Refer-To: <[refer_to]>\n"
                                                     "      X-Ticket: 99\n      X-Denied: 1\n"),
             '  <recv response="100" optional="true"/>\n  <recv response="202"/>\n',
             '  <recv request="NOTIFY"/>\n', _reply("200 OK"),
             _request("BYE", 2, me, peer), '  <recv response="200"/>\n']
    path = workdir / "agent_hasty.xml"
    path.write_text(_HEAD + '<scenario name="hasty agent">\n' + "".join(steps) + "</scenario>\n")
    return path


def referring_agent_scenario(workdir: Path, pause_ms: int) -> Path:
    """An agent that answers, waits ``pause_ms`` (its consult call is up by then), REFERs to
    ``[refer_to]``, takes the 202 and two NOTIFYs, and waits for the BYE."""
    me, peer = "[$me];tag=[pid]SIPpTag01[call_number]", "[$caller]"
    steps = ['  <recv request="INVITE" rrs="true">\n    <action>\n'
             '      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="caller"/>\n'
             '      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="me"/>\n'
             '    </action>\n  </recv>\n',
             _reply("200 OK", _sdp().replace("[rtp_ip]", "[media_ip]").replace("[rtp_port]", "[media_port]")).replace(
                 "[last_To:]", "[last_To:];tag=[pid]SIPpTag01[call_number]"),
             '  <recv request="ACK"/>\n', f'  <pause milliseconds="{pause_ms}"/>\n',
             _request("REFER", 1, me, peer).replace("      Max-Forwards: 70\n",
                                                     "      Max-Forwards: 70\n      Refer-To: <[refer_to]>\n"),
             '  <recv response="100" optional="true"/>\n  <recv response="202"/>\n',
             '  <recv request="NOTIFY"/>\n', _reply("200 OK"), '  <recv request="NOTIFY"/>\n', _reply("200 OK"),
             '  <recv request="BYE"/>\n', _reply("200 OK")]
    path = workdir / "agent_referring.xml"
    path.write_text(_HEAD + '<scenario name="referring agent">\n' + "".join(steps) + "</scenario>\n")
    return path


def consult_scenario(workdir: Path, tag: str) -> Path:
    """The agent's consult call (attended transfer): INVITE to ``[service]`` through the edge with
    From-tag ``tag``, answered, then the BYE awaited (the edge's, once it joined the calls)."""
    me = f"<sip:bot@[local_ip]:[local_port]>;tag={tag}"
    steps = [_request("INVITE", 1, me, "<sip:[service]@[remote_ip]:[remote_port]>",
                      _sdp().replace("[rtp_ip]", "[media_ip]").replace("[rtp_port]", "[media_port]")).replace(
                 "[next_url]", "sip:[service]@[remote_ip]:[remote_port]").replace("      [routes]\n", ""),
             '  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n',
             '  <recv response="200" rrs="true"/>\n',
             _request("ACK", 1, me, "<sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]").replace(' retrans="500"', ""),
             '  <recv request="BYE"/>\n', _reply("200 OK")]
    path = workdir / "consult.xml"
    path.write_text(_HEAD + '<scenario name="consult call">\n' + "".join(steps) + "</scenario>\n")
    return path


def called_carrier_scenario(workdir: Path, refer_code: str, hangup_ms: int) -> Path:
    """The carrier of a termination call (the agent called it): the INVITE noted (``invite``) and
    answered with its SDP, the agent's REFER answered ``refer_code``, the edge's re-INVITE noted
    (``reinvite``) and answered, then BYE after ``hangup_ms``."""
    tag = "[pid]SIPpTag01[call_number]"
    steps = ['  <recv request="INVITE" rrs="true">\n' + _note("invite").replace(
        "    <action>\n", '    <action>\n'
        '      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="caller"/>\n'
        '      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="me"/>\n', 1) + "  </recv>\n",
             _reply("200 OK", _sdp()).replace("[last_To:]", f"[last_To:];tag={tag}"), '  <recv request="ACK"/>\n',
             '  <recv request="REFER"/>\n', _reply(refer_code),
             '  <recv request="INVITE">\n' + _note("reinvite") + "  </recv>\n", _reply("200 OK", _sdp()),
             '  <recv request="ACK"/>\n', f'  <pause milliseconds="{hangup_ms}"/>\n',
             _request("BYE", 1, f"[$me];tag={tag}", "[$caller]"), '  <recv response="200"/>\n']
    path = workdir / "carrier_called.xml"
    path.write_text(_HEAD + '<scenario name="called carrier">\n' + "".join(steps) + _references(steps) + "</scenario>\n")
    return path


def referring_caller_scenario(workdir: Path, pause_ms: int) -> Path:
    """An agent that calls ``[service]`` through the edge (a termination call), waits ``pause_ms``,
    REFERs the carrier to ``[refer_to]``, takes the 202 and two NOTIFYs, and waits for the BYE."""
    me = "<sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]"
    peer = "<sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]"
    steps = [_request("INVITE", 1, me, "<sip:[service]@[remote_ip]:[remote_port]>",
                      _sdp().replace("[rtp_ip]", "[media_ip]").replace("[rtp_port]", "[media_port]")).replace(
                 "[next_url]", "sip:[service]@[remote_ip]:[remote_port]").replace("      [routes]\n", ""),
             '  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n',
             '  <recv response="200" rrs="true"/>\n', _request("ACK", 1, me, peer).replace(' retrans="500"', ""),
             f'  <pause milliseconds="{pause_ms}"/>\n',
             _request("REFER", 2, me, peer).replace("      Max-Forwards: 70\n",
                                                     "      Max-Forwards: 70\n      Refer-To: <[refer_to]>\n"),
             '  <recv response="100" optional="true"/>\n  <recv response="202"/>\n',
             '  <recv request="NOTIFY"/>\n', _reply("200 OK"), '  <recv request="NOTIFY"/>\n', _reply("200 OK"),
             '  <recv request="BYE"/>\n', _reply("200 OK")]
    path = workdir / "agent_caller.xml"
    path.write_text(_HEAD + '<scenario name="referring caller">\n' + "".join(steps) + "</scenario>\n")
    return path


def media_lines(path: Path) -> dict[str, tuple[str, int]]:
    """The media addresses a peer noted, by what (the last of each)."""
    found: dict[str, tuple[str, int]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2].isdigit():
                found[parts[0]] = (parts[1], int(parts[2]))
    return found
