"""Call shapes shared by the tests of an edge with one network per side (test_nat.py, test_sides.py).

* Readers of what a peer received: a baresip UA's SIP trace (:func:`received`,
  :func:`assert_sees_only`) and a SIPp run's SDP lines (:func:`sdp_lines_received`).
* :func:`reoffer_call`: one call between two SIPp peers (any transport SIPp speaks, IPv4 or IPv6)
  whose media are :class:`tests.rtppeer.RtpPeer` endpoints; after the answer the **callee** sends
  a re-INVITE and/or an UPDATE with an SDP offer (RFC 3261 section 14, RFC 3311), the caller
  answers each in its 200, and RTP must keep flowing both ways afterwards.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tests.sipp import SippRun, reply, uac, uas
from tests.baresip import Baresip, dominant_frequency
from tests.helpers import wait_until
from tests.rtppeer import RtpPeer

from .conftest import Edge

TONE_TOLERANCE_HZ = 8

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TRANSPORT = re.compile(r"^(udp|tcp|tls) (\S+) -> (\S+)$", re.IGNORECASE)
_IPV4 = re.compile(r"(?<![0-9.])(\d{1,3}(?:\.\d{1,3}){3})(?![0-9])")
#: lines whose addresses tell the topology: Via, Record-Route, Contact (long and compact forms), SDP c=/o=
_TOPOLOGY_LINE = re.compile(r"^(via|v|record-route|contact|m)\s*:|^[co]=", re.IGNORECASE)
_SEPARATOR = "-----------------------------------------------"
_scenarios = itertools.count()


# -- baresip traces ------------------------------------------------------------

def received(ua: Baresip) -> list[tuple[str, list[str]]]:
    """``(source address, lines)`` of every SIP message ``ua`` received (its ``-s`` trace)."""
    return [(src.rsplit(":", 1)[0], lines) for _, src, lines in received_with_transport(ua)]


def received_with_transport(ua: Baresip) -> list[tuple[str, str, list[str]]]:
    """``(transport, source ip:port, lines)`` of every SIP message ``ua`` received (``-s`` trace);
    transport in lower case (``udp``, ``tcp``, ``tls``).

    The trace prints sent and received messages alike as ``TRANSPORT src -> dst``.  The UA's own
    endpoints are those on its address, and the local end of each TCP/TLS connection it opened
    (baresip does not bind those to its address): the sender of a connection's first message
    when neither end is on the UA's address."""
    out: list[tuple[str, str, list[str]]] = []
    current: list[str] | None = None
    pairs: set[frozenset[str]] = set()
    local: set[str] = set()

    def host(endpoint: str) -> str:
        return endpoint.rsplit(":", 1)[0].strip("[]")

    for raw in _ANSI.sub("", ua.output()).splitlines():
        line = raw.strip()
        match = _TRANSPORT.match(line)
        if match:
            src, dst = match.group(2), match.group(3)
            if frozenset((src, dst)) not in pairs:
                pairs.add(frozenset((src, dst)))
                if ua.ip not in (host(src), host(dst)):
                    local.add(src)  # a connection the UA opened from another local address
            current = [] if host(dst) == ua.ip or dst in local else None
            if current is not None:
                out.append((match.group(1).lower(), src, current))
        elif line == "#":
            current = None
        elif current is not None:
            current.append(line)
    return out


def topology_addresses(ua: Baresip) -> tuple[set[str], set[str], list[str]]:
    """(sources of the messages ``ua`` received, IPv4 addresses in their Via / Record-Route /
    Contact headers and SDP c=/o= lines, those lines)."""
    messages = received(ua)
    assert messages, f"{ua.ip} received no SIP message in its trace: {ua.output()[-1500:]}"
    lines = [l for _, msg in messages for l in msg if _TOPOLOGY_LINE.match(l)]
    return {src for src, _ in messages}, {a for l in lines for a in _IPV4.findall(l)}, lines


def assert_sees_only(ua: Baresip, source: str, allowed: set[str], must: list[str]) -> None:
    """Every SIP message ``ua`` received came from ``source``, names no IPv4 address outside
    ``allowed`` in its topology lines, and ``must`` lines (e.g. ``c=IN IP4 ...``) were among them."""
    sources, seen, lines = topology_addresses(ua)
    assert sources == {source}, f"{ua.ip} received SIP from {sources}, expected only {source}"
    assert seen <= allowed, f"{ua.ip} saw {seen - allowed} in: {[l for l in lines if set(_IPV4.findall(l)) - allowed]}"
    for line in must:
        assert line in lines, f"{ua.ip} never received {line!r}: {lines}"
    edge_address = source  # the SDP's origin names the edge's address on this side too
    assert any(l.startswith("o=") and l.endswith(f"IN IP4 {edge_address}") for l in lines), lines


def assert_tone(path: Path, hz: int) -> None:
    """A baresip recording is not silence and peaks at ``hz`` (± :data:`TONE_TOLERANCE_HZ`)."""
    freq, rms = dominant_frequency(path)
    assert rms > 300, f"{path.name}: silence (rms {rms:.0f})"
    assert abs(freq - hz) <= TONE_TOLERANCE_HZ, f"{path.name}: heard {freq:.1f} Hz, expected {hz} Hz"


def talk(edge: Edge, caller: Baresip, callee: Baresip, uri: str, hangs_up: Baresip) -> None:
    """``caller`` dials ``uri``, ``callee`` answers, both talk 2 s (their tones), ``hangs_up`` ends it."""
    caller.dial(uri)
    callee.answer()
    caller.wait_event("CALL_ESTABLISHED")
    callee.wait_event("CALL_ESTABLISHED")
    wait_until(lambda: edge.active_leases() == 2, timeout=5, what="call admitted")
    time.sleep(2.0)  # the audio itself: the recordings need a few seconds of tone
    hangs_up.hangup()
    caller.wait_event("CALL_CLOSED")
    callee.wait_event("CALL_CLOSED")




# -- SIPp traces ---------------------------------------------------------------

def messages_received(run: SippRun) -> list[str]:
    """Every message a SIPp run received, in order (its ``-trace_msg`` blocks)."""
    return [b for b in run.messages().split(_SEPARATOR) if "message received" in b]


def sdp_lines_received(run: SippRun) -> list[str]:
    """The SDP ``c=`` and ``o=`` lines of every message a SIPp run received."""
    return [l.strip() for b in messages_received(run) for l in b.splitlines() if l.startswith(("c=", "o="))]


def requests_received(run: SippRun, method: str, cseq: int | None = None) -> list[str]:
    """The ``method`` requests a SIPp run received (only CSeq number ``cseq`` when given)."""
    out = []
    for block in messages_received(run):
        if not re.search(rf"^{method} sips?:", block, re.M):
            continue
        if cseq is None or re.search(rf"^CSeq:\s*{cseq} {method}\b", block, re.M | re.I):
            out.append(block)
    return out


def responses_received(run: SippRun, method: str, code: int = 200) -> list[str]:
    """The ``code`` responses to ``method`` a SIPp run received."""
    return [b for b in messages_received(run)
            if re.search(rf"^SIP/2\.0 {code} ", b, re.M) and re.search(rf"^CSeq:\s*\d+ {method}\b", b, re.M | re.I)]


def media_address(message: str) -> tuple[str, int]:
    """``(connection address, audio port)`` of the SDP in a SIP message."""
    ip = re.search(r"^c=IN IP[46] (\S+)", message, re.M).group(1)
    port = int(re.search(r"^m=audio (\d+)", message, re.M).group(1))
    return ip, port


def audio_formats(message: str) -> list[str]:
    """Payload types of the ``m=audio`` line of the SDP in a SIP message."""
    return re.search(r"^m=audio \d+ \S+ ([0-9 ]+)", message, re.M).group(1).split()


def top_via(message: str) -> str:
    """``TRANSPORT host:port`` of a message's first Via (the last hop that sent it)."""
    return re.search(r"^(?:Via|v):\s*SIP/2\.0/(\S+ \S+?)[;\s]", message, re.M | re.I).group(1)


# -- callee re-offers between SIPp peers ---------------------------------------

_RTPMAP = {"0": "PCMU/8000", "8": "PCMA/8000", "101": "telephone-event/8000"}


def sdp(ip: str, port: int, formats: str = "0 101", version: int = 1) -> str:
    """An SDP body (SIPp-indented lines) for an RTP endpoint at ``ip``:``port`` (IPv4 or IPv6)."""
    family = "IP6" if ":" in ip else "IP4"
    lines = ["v=0", f"o=- 1 {version} IN {family} {ip}", "s=-", f"c=IN {family} {ip}", "t=0 0",
             f"m=audio {port} RTP/AVP {formats}", *(f"a=rtpmap:{f} {_RTPMAP[f]}" for f in formats.split()),
             "a=ptime:20", "a=sendrecv"]
    return "\n".join(f"      {line}" for line in lines)


def _request(method: str, uri: str, cseq: str, headers: str, body: str = "") -> str:
    """A SIPp ``<send>`` of a request; ``headers`` are indented lines ending with a newline."""
    content = f"      Content-Type: application/sdp\n      Content-Length: [len]\n\n{body}\n" if body else \
        "      Content-Length: 0\n\n"
    retrans = "" if method == "ACK" else ' retrans="500"'
    return (f"  <send{retrans}>\n    <![CDATA[\n      {method} {uri} SIP/2.0\n"
            "      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
            f"{headers}      CSeq: {cseq}\n      Max-Forwards: 70\n{content}    ]]>\n  </send>\n")


def _write(workdir: Path, name: str, body: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{name}_{next(_scenarios)}.xml"
    path.write_text(f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="{name}">\n{body}</scenario>\n')
    return path


_CALLER_CONTACT = "      Contact: <sip:[caller]@[local_ip]:[local_port];transport=[transport]>\n"
_CALLEE_CONTACT = "      Contact: <sip:callee@[local_ip]:[local_port];transport=[transport]>\n"


def caller_scenario(workdir: Path, offer: str, answer: str, reoffers: tuple[str, ...], hangs_up: bool) -> Path:
    """A caller (SIPp uac): INVITE with ``offer``, ACK; answers each of the callee's ``reoffers``
    (methods, in order) with ``answer`` in its 200 (and takes the re-INVITE's ACK); then sends
    BYE after ``-d`` ms (``hangs_up``) or takes the callee's BYE.  Contacts carry ``transport=``
    so in-dialog requests reach it over the transport it called with."""
    dialog = ('      From: "Caller" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n'
              "      To: <sip:[service]@[remote_ip]:[remote_port]>{to}\n      Call-ID: [call_id]\n")
    first = dialog.format(to="") + _CALLER_CONTACT
    inside = dialog.format(to="[peer_tag_param]") + "      [routes]\n" + _CALLER_CONTACT
    body = _request("INVITE", "sip:[service]@[remote_ip]:[remote_port]", "1 INVITE", first, offer)
    body += ('  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n'
             '  <recv response="200" rrs="true"/>\n')
    body += _request("ACK", "[next_url]", "1 ACK", inside)
    for method in reoffers:
        body += f'  <recv request="{method}"/>\n' + reply("200 OK", headers=_CALLER_CONTACT, sdp=answer)
        if method == "INVITE":
            body += '  <recv request="ACK"/>\n'
    if hangs_up:
        body += "  <pause/>\n" + _request("BYE", "[next_url]", "2 BYE", inside) + '  <recv response="200"/>\n'
    else:
        body += '  <recv request="BYE"/>\n' + reply("200 OK")
    return _write(workdir, "caller", body + '  <timewait milliseconds="300"/>\n')


def callee_scenario(workdir: Path, answer: str, reoffer: str, reoffers: tuple[str, ...], hangs_up: bool) -> Path:
    """A callee (SIPp uas): answers the INVITE with ``answer``, then 0.5 s after its ACK sends each of
    ``reoffers`` (``INVITE``, ``UPDATE``) with ``reoffer`` as SDP offer through the route set it
    received, ACKing a re-INVITE's 200; then sends BYE after ``-d`` ms (``hangs_up``) or takes the
    caller's BYE."""
    body = ('  <recv request="INVITE" rrs="true"/>\n' + reply("100 Trying")
            + reply("200 OK", tag="01", dialog=True, retrans=True, sdp=answer)
            + '  <recv request="ACK">\n    <action>\n'
            '      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="caller"/>\n'
            '      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="callee"/>\n'
            "    </action>\n  </recv>\n"
            '  <pause milliseconds="500"/>\n')
    inside = "      From: [$callee]\n      To: [$caller]\n      [last_Call-ID:]\n      [routes]\n" + _CALLEE_CONTACT
    cseq = 101
    for method in reoffers:
        body += _request(method, "[next_url]", f"{cseq} {method}", inside, reoffer)
        body += '  <recv response="100" optional="true"/>\n  <recv response="200"/>\n'
        if method == "INVITE":
            body += _request("ACK", "[next_url]", f"{cseq} ACK", inside)
        cseq += 1
    if hangs_up:
        body += "  <pause/>\n" + _request("BYE", "[next_url]", f"{cseq} BYE", inside) + '  <recv response="200"/>\n'
    else:
        body += '  <recv request="BYE"/>\n' + reply("200 OK")
    return _write(workdir, "callee", body + '  <timewait milliseconds="300"/>\n')


@dataclass(frozen=True)
class Peer:
    """A SIPp peer of :func:`reoffer_call`: SIP on ``ip``:``port`` (``sipp_args``: e.g.
    ``("-t", "t1")`` for TCP), media from an :class:`RtpPeer` on ``ip``."""

    ip: str
    port: int
    sipp_args: tuple[str, ...] = ()


@dataclass
class ReofferCall:
    """What :func:`reoffer_call` saw: the finished SIPp runs, and where RTP came from between the
    callee's last re-offer's 200 and the BYE (each set holds the sources of at least 25 packets)."""

    caller: SippRun
    callee: SippRun
    caller_rtp_sources: set[str]
    callee_rtp_sources: set[str]


def reoffer_call(workdir: Path, caller: Peer, callee: Peer, target: str, number: str,
                 reoffers: tuple[str, ...] = ("INVITE", "UPDATE"), hangs_up: str = "callee",
                 reoffer_formats: str = "8 0 101", talk_ms: int = 1500) -> ReofferCall:
    """One call from ``caller`` through the edge at ``target`` (``host:port``, brackets for IPv6)
    to ``number``, answered by ``callee``, who then sends ``reoffers`` with an SDP offering
    ``reoffer_formats``; both talk PCMU (payload type 0) all along.

    The callee waits 0.5 s after the ACK before its re-offers, so both RtpPeers talk by then.
    Between the moment the last re-offer's 200 reached the callee and the BYE (``talk_ms`` later;
    both read from SIPp's timestamped traces, so the test's own polling delay does not shorten
    it), each RtpPeer must receive at least 25 packets (0.5 s): RTP keeps flowing both ways.  The
    side named by ``hangs_up`` (``caller`` or ``callee``) sends the BYE.

    Raises:
        AssertionError: a SIPp peer failed, or the media stopped.
    """
    with RtpPeer(caller.ip) as caller_rtp, RtpPeer(callee.ip) as callee_rtp:
        callee_run = uas(workdir / "callee", callee.ip, callee.port, rtp_echo=False, answer_ms=talk_ms,
                         scenario=callee_scenario(workdir, sdp(callee.ip, callee_rtp.port),
                                                  sdp(callee.ip, callee_rtp.port, reoffer_formats, version=2),
                                                  reoffers, hangs_up == "callee"),
                         extra=list(callee.sipp_args))
        caller_sdp = sdp(caller.ip, caller_rtp.port)
        caller_run = uac(workdir / "caller", caller.ip, caller.port, target, number, hold_ms=talk_ms,
                         scenario=caller_scenario(workdir, caller_sdp, caller_sdp, reoffers, hangs_up == "caller"),
                         extra=list(caller.sipp_args))
        wait_until(lambda: responses_received(caller_run, "INVITE") and requests_received(callee_run, "ACK"),
                   timeout=15, what="call answered")
        caller_rtp.target = media_address(responses_received(caller_run, "INVITE")[0])
        callee_rtp.target = media_address(requests_received(callee_run, "INVITE")[0])
        caller_rtp.talking = callee_rtp.talking = True
        last = reoffers[-1]
        wait_until(lambda: responses_received(callee_run, last), timeout=15, what=f"200 to the callee's {last}")
        # each side sends where the latest SDP it received points (an offer to the caller, an answer to the callee)
        caller_rtp.target = media_address(requests_received(caller_run, last)[-1])
        callee_rtp.target = media_address(responses_received(callee_run, last)[-1])
        assert caller_run.wait(timeout=30) == 0, caller_run.output()
        assert callee_run.wait(timeout=30) == 0, callee_run.output()
    offset = time.time() - time.monotonic()
    start = block_time(responses_received(callee_run, last)[-1]) - offset
    (bye,) = (caller_run if hangs_up == "callee" else callee_run).received_requests("BYE")
    end = block_time(bye) - offset
    heard = [[src for t, _, src in peer.received if start <= t <= end] for peer in (caller_rtp, callee_rtp)]
    assert all(len(h) >= 25 for h in heard), \
        f"RTP packets between the last re-offer's 200 and the BYE ({end - start:.2f} s): caller " \
        f"{len(heard[0])}, callee {len(heard[1])}"
    return ReofferCall(caller_run, callee_run, set(heard[0]), set(heard[1]))


def block_time(block: str) -> float:
    """Wall-clock time (s since the epoch) of a SIPp ``-trace_msg`` block, from its header line
    (SIPp writes local time)."""
    stamp = re.match(r"\s*(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)", block).group(1)
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()


def assert_offers_from(run: SippRun, reoffers: tuple[str, ...], address: str, allowed: set[str],
                       formats: list[str], transport: str = "UDP") -> None:
    """The callee's ``reoffers`` reached the caller's SIPp ``run`` from the edge's socket facing it:
    their top Via is ``transport`` ``address`` (the hop that sent them), every IPv4 or IPv6 address
    in their Via / Record-Route / Contact lines and SDP ``c=``/``o=`` is in ``allowed``, their SDP
    names ``address`` and offers exactly ``formats`` (the caller side's media policy)."""
    for cseq, method in enumerate(reoffers, start=101):
        (request,) = requests_received(run, method, cseq) or [""]
        assert request, f"{run.name} never received the callee's {method}: {run.output()[-1500:]}"
        via = top_via(request)
        assert via.upper().startswith(f"{transport.upper()} {bracket(address)}:"), (method, via, request)
        lines = [l.strip() for l in request.splitlines() if _TOPOLOGY_LINE.match(l.strip())]
        seen = {a for l in lines for a in _addresses(l)}
        assert seen <= allowed, (method, seen - allowed, lines)
        family = "IP6" if ":" in address else "IP4"
        assert f"c=IN {family} {address}" in lines, (method, lines)
        assert audio_formats(request) == formats, (method, request)


def assert_answers_at(run: SippRun, reoffers: tuple[str, ...], address: str) -> None:
    """The 200s answering the callee's ``reoffers`` reached its SIPp ``run`` with an SDP naming
    ``address`` (the edge's address on the callee's side) in ``c=`` and ``o=``."""
    family = "IP6" if ":" in address else "IP4"
    for method in reoffers:
        answers = responses_received(run, method)
        assert answers, f"{run.name} never got a 200 to its {method}"
        sdp_lines = [l.strip() for l in answers[-1].splitlines() if l.startswith(("c=", "o="))]
        assert sdp_lines and all(l.endswith(f"IN {family} {address}") for l in sdp_lines), (method, sdp_lines)


def bracket(address: str) -> str:
    """An address as a SIP host: IPv6 in brackets (RFC 3261 section 25.1)."""
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


_IPV6 = re.compile(r"\[?([0-9a-f]*:[0-9a-f:]+)\]?", re.IGNORECASE)


def _addresses(line: str) -> set[str]:
    """IPv4 and IPv6 addresses in a header or SDP line (IPv6 without brackets)."""
    found = set(_IPV4.findall(line))
    body = line.split(":", 1)[1] if not line[:2] in ("c=", "o=") else line
    found |= {m for m in _IPV6.findall(body) if m.count(":") >= 2}
    return found


def sipp_topology_addresses(run: SippRun) -> set[str]:
    """Every IPv4 and IPv6 address in the Via / Record-Route / Contact headers and SDP ``c=``/``o=``
    lines of every message a SIPp run received."""
    return {a for b in messages_received(run) for l in b.splitlines()
            if _TOPOLOGY_LINE.match(l.strip()) for a in _addresses(l.strip())}


def transports_received(run: SippRun) -> set[str]:
    """The transports (``UDP``, ``TCP``) every message a SIPp run received came over."""
    return {m.group(1) for b in messages_received(run) for m in [re.search(r"^(\w+) message received", b, re.M)] if m}
