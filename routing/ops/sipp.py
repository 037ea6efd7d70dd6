"""Launch SIPp peers (carrier, agent, stranger) on distinct 127.0.0.x addresses.

The launcher of ``edgectl demo`` (:mod:`routing.ops.demo`); the test harness
(``tests/sipp.py``) builds on it with its generated scenarios.  Static scenarios
live in ``sipp/`` at the top of the repository (the demo runs from a checkout);
the caller that accepts any final response is generated here.  Outcomes are read
from SIPp's own message trace (``-trace_msg``), never guessed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import DiagSocket

from routing.errors import EdgeError


SCENARIOS = Path(__file__).resolve().parents[2] / "sipp"
#: every SIPp process started, so a test's teardown can stop what it left behind
RUNNING: list["SippRun"] = []
_media_ports = itertools.count(42000, 4)

#: final codes a generic caller scenario accepts
FINAL_CODES = [301, 302, 400, 403, 404, 405, 408, 480, 481, 483, 484, 486, 487, 488, 500, 502, 503, 504, 600, 603]


class SippError(EdgeError, RuntimeError):
    """SIPp is missing, did not start, or did not finish in time."""


def sipp_binary() -> str:
    """Path of the sipp binary (Debian package sip-tester).

    Raises:
        SippError: not installed.
    """
    path = shutil.which("sipp")
    if not path:
        raise SippError("sipp is not installed (apt-get install sip-tester)")
    return path


def _wait_until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SippError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@dataclass
class SippRun:
    """A finished (or running) SIPp process and its trace files."""

    proc: subprocess.Popen
    workdir: Path
    name: str

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise SippError(f"sipp {self.name} did not finish within {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _files(self, suffix: str) -> list[Path]:
        return sorted(self.workdir.glob(f"*_{suffix}.log"))

    def messages(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self._files("messages"))

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self._files("logs"))

    def errors(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self._files("errors"))

    def output(self) -> str:
        out = (self.workdir / "stdout.txt").read_text(errors="replace") if (self.workdir / "stdout.txt").exists() else ""
        return out[-3000:] + "\n" + self.errors()[-3000:]

    def received_status(self) -> list[tuple[int, str]]:
        """Status lines received, in order: [(code, reason)]."""
        found = []
        for block in self.messages().split("-----------------------------------------------"):
            if "message received" not in block:
                continue
            match = re.search(r"^SIP/2\.0 (\d{3}) ?(.*)$", block, re.M)
            if match:
                found.append((int(match.group(1)), match.group(2).strip()))
        return found

    def final_status(self) -> list[tuple[int, str]]:
        """Final (>= 200) responses received to INVITEs, one per call (retransmissions folded)."""
        finals: dict[str, tuple[int, str]] = {}
        for block in self.messages().split("-----------------------------------------------"):
            if "message received" not in block:
                continue
            status = re.search(r"^SIP/2\.0 (\d{3}) ?(.*)$", block, re.M)
            cseq = re.search(r"^CSeq:\s*1 INVITE", block, re.M | re.I)
            call_id = re.search(r"^Call-ID:\s*(\S+)", block, re.M | re.I)
            if status and cseq and call_id and int(status.group(1)) >= 200:
                finals.setdefault(call_id.group(1), (int(status.group(1)), status.group(2).strip()))
        return list(finals.values())

    def received_responses(self, method: str) -> list[str]:
        """Full text of each response received to a request of ``method`` (by its CSeq)."""
        out = []
        for block in self.messages().split("-----------------------------------------------"):
            if "message received" in block and re.search(r"^SIP/2\.0 \d{3}", block, re.M) \
                    and re.search(rf"^CSeq:\s*\d+ {method}\s*$", block, re.M | re.I):
                out.append(block)
        return out

    def received_requests(self, method: str) -> list[str]:
        """Full text of each request of ``method`` received."""
        out = []
        for block in self.messages().split("-----------------------------------------------"):
            if "message received" in block and re.search(rf"^{method} sip", block, re.M):
                out.append(block)
        return out


def _run(workdir: Path, name: str, argv: list[str]) -> SippRun:
    workdir.mkdir(parents=True, exist_ok=True)
    out = open(workdir / "stdout.txt", "wb")
    proc = subprocess.Popen(argv, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out.close()
    run = SippRun(proc, workdir, name)
    RUNNING.append(run)
    return run


def stop_all() -> None:
    """Stop every SIPp process still running (test teardown)."""
    while RUNNING:
        RUNNING.pop().stop()


def _port_taken(ip: str, port: int, kind: int = socket.SOCK_DGRAM) -> bool:
    """Whether a socket is bound to ``ip``:``port`` (IPv4 or IPv6) for ``kind`` (UDP, or TCP with
    SOCK_STREAM), asked of the kernel's socket table (netlink sock_diag, pyroute2 ``DiagSocket``).
    Never by binding the port: a probe that binds it can make the SIPp starting at that moment
    fail with "Address already in use"."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    protocol = socket.IPPROTO_TCP if kind == socket.SOCK_STREAM else socket.IPPROTO_UDP
    wanted = ipaddress.ip_address(ip)
    with DiagSocket() as diag:
        diag.bind()
        sockets = diag.get_sock_stats(family=family, protocol=protocol)
    return any(entry.get("idiag_sport") == port and ipaddress.ip_address(entry.get("idiag_src")) == wanted
               for entry in sockets)


def _common(scenario: Path, ip: str, port: int) -> list[str]:
    media = next(_media_ports)
    return [
        sipp_binary(), "-sf", str(scenario), "-i", ip, "-p", str(port), "-mi", ip, "-mp", str(media),
        "-trace_msg", "-trace_err", "-trace_logs", "-nostdin", "-timeout", "60", "-timeout_error",
    ]


def uas(workdir: Path, ip: str, port: int, scenario: str | Path = "uas_agent.xml", calls: int = 1,
        answer_ms: int = 300, rtp_echo: bool = True, extra: list[str] | None = None) -> SippRun:
    """Start a callee (agent or carrier gateway) in the background; ``extra`` adds SIPp arguments
    (``["-t", "t1"]``: TCP, then readiness waits on its TCP port; ``ip`` may be IPv6)."""
    path = scenario if isinstance(scenario, Path) else SCENARIOS / scenario
    argv = _common(path, ip, port) + ["-m", str(calls), "-d", str(answer_ms)]
    if rtp_echo:
        argv.append("-rtp_echo")
    run = _run(workdir, f"uas-{ip}:{port}", argv + (extra or []))
    # ready once SIPp holds its SIP port (TCP with -t t1/tn) (or it died: then report why)
    transport = (extra or [])[(extra or []).index("-t") + 1] if "-t" in (extra or []) else "u1"
    kind = socket.SOCK_STREAM if transport.startswith("t") else socket.SOCK_DGRAM
    _wait_until(lambda: _port_taken(ip, port, kind) or run.proc.poll() is not None, what=f"sipp on {ip}:{port}")
    if run.proc.poll() is not None:
        raise SippError(f"sipp {run.name} exited: {run.output()}")
    return run


def uac(workdir: Path, ip: str, port: int, target: str, number: str, caller: str = "+14155550123",
        scenario: str | Path = "uac_call.xml", calls: int = 1, rate: int = 10, hold_ms: int = 1000,
        limit: int | None = None, extra: list[str] | None = None) -> SippRun:
    """Start a caller toward ``target`` (``ip:port`` of the edge) dialling ``number``."""
    path = scenario if isinstance(scenario, Path) else SCENARIOS / scenario
    argv = _common(path, ip, port) + [
        "-s", number, "-key", "caller", caller, "-m", str(calls), "-r", str(rate), "-d", str(hold_ms),
    ]
    if limit:
        argv += ["-l", str(limit)]
    return _run(workdir, f"uac-{ip}:{port}", argv + (extra or []) + [target])


def reject_uac_scenario(workdir: Path, max_forwards: int = 70, extra_headers: str = "",
                        request_uri: str = "sip:[service]@[remote_ip]:[remote_port]", to_uri: str = "") -> Path:
    """A caller that sends one INVITE with SDP and accepts any final response, then ACKs it.

    A 200 (not expected) is ACKed and hung up so no call is left behind.  ``request_uri`` is
    the INVITE's Request-URI (``tel:+1-415-555-0100``; SIPp keywords such as ``[remote_ip]``
    are filled in), ``to_uri`` its To URI (empty: the Request-URI).
    """
    to_uri = to_uri or request_uri
    optional = "\n".join(
        f'  <recv response="{code}" optional="true" next="ack"/>' for code in FINAL_CODES
    )
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uac expect final">
  <send retrans="500">
    <![CDATA[
      INVITE {request_uri} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Caller" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <{to_uri}>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[caller]@[local_ip]:[local_port]>
      Max-Forwards: {max_forwards}
{extra_headers}      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
{optional}
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Caller" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <{to_uri}>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      [routes]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Caller" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <{to_uri}>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      [routes]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <nop next="end"/>
  <label id="ack"/>
  <send>
    <![CDATA[
      ACK {request_uri} SIP/2.0
      [last_Via:]
      From: "Caller" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <label id="end"/>
</scenario>
"""
    workdir.mkdir(parents=True, exist_ok=True)
    suffix = "" if (request_uri, to_uri) == ("sip:[service]@[remote_ip]:[remote_port]",) * 2 else \
        "_" + hashlib.sha1(f"{request_uri} {to_uri}".encode()).hexdigest()[:10]
    path = workdir / f"uac_expect_mf{max_forwards}{suffix}.xml"
    path.write_text(text)
    return path
