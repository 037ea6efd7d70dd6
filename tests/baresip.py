"""A headless baresip user agent for tests that need real audio, SRTP, opus or TLS.

One :class:`Baresip` is one baresip process (Debian package baresip-core) with
its own config directory, bound to one loopback address.  Its microphone is a
sine tone (``ausine`` module) and everything it hears is written to a WAV file
(``sndfile`` filter, decode side), so a test can check the frequency that crossed the edge
with :func:`dominant_frequency`.  It is driven over ``ctrl_tcp`` (netstring
framed JSON commands ``dial``/``accept``/``hangup``, and events such as
``CALL_ESTABLISHED`` and ``CALL_CLOSED``; baresip 1.0 modules/ctrl_tcp).

Usage::

    with Baresip(workdir, "127.0.0.11", codecs=["PCMU"], tone_hz=440) as ua:
        ua.dial("sip:+14155550100@127.0.0.1:5060")
        ua.wait_event("CALL_ESTABLISHED")
        ...
        ua.hangup()

A missing ``baresip`` binary raises :class:`BaresipError` (the test fails,
never skips).
"""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import socket
import subprocess
import time
import wave
from pathlib import Path

import numpy as np

__all__ = ["Baresip", "BaresipError", "dominant_frequency", "tone_level", "pcmu_tone", "MODULES"]

#: codec modules and the baresip codec names tests use (``audio_codecs`` account parameter)
CODEC_NAMES = {"PCMU": "PCMU/8000/1", "PCMA": "PCMA/8000/1", "G722": "G722/16000/1", "opus": "opus/48000/2"}
#: baresip media encryption per edge SRTP mode (account ``mediaenc``): SDES mandatory, DTLS-SRTP
MEDIAENC = {"sdes": "srtp-mand", "dtls": "dtls_srtp"}
MODULES = ["g711.so", "g722.so", "opus.so", "srtp.so", "dtls_srtp.so", "ausine.so", "aubridge.so", "sndfile.so"]
_ports = itertools.count(0)
#: every UA started and not yet stopped, so a teardown can stop what a test left behind
RUNNING: list["Baresip"] = []


class BaresipError(RuntimeError):
    """baresip is missing, did not start, or an awaited event did not come."""


def _netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


class Baresip:
    """One baresip UA on ``ip``; start with ``with`` or :meth:`start`.

    Args:
        workdir: directory for its config, log and recording.
        ip: loopback address it signals and sends media from (``net_interface``, ``sip_listen``).
        codecs: audio codecs in preference order (``PCMU``, ``PCMA``, ``G722``, ``opus``).
        tone_hz: frequency of the sine tone it sends (Hz).
        mediaenc: None (plain RTP/AVP), ``"sdes"`` (RTP/SAVP, mandatory) or ``"dtls"`` (DTLS-SRTP).
        sip_port: SIP port (UDP/TCP; TLS on ``sip_port+1``); ``sip_port+100`` is the ctrl_tcp port.
        rtp_base: first RTP port of a 100-port range of its own.
        cafile: CA file trusted for TLS signalling.
        extra_config: more ``name value`` lines for the config file.
        sip_trace: log every SIP message sent and received (``baresip -s``) in :meth:`output`.
    """

    def __init__(self, workdir: Path, ip: str, *, codecs: list[str] = ("PCMU",), tone_hz: int = 440,
                 mediaenc: str | None = None, sip_port: int = 5081,
                 rtp_base: int | None = None, cafile: Path | None = None, extra_config: str = "",
                 user: str = "ua", sip_trace: bool = False) -> None:
        self.workdir = Path(workdir)
        self.sip_trace = sip_trace
        self.ip = ip
        self.sip_port = sip_port
        self.ctrl_port = sip_port + 100
        self.codecs = list(codecs)
        self.rtp_base = rtp_base if rtp_base is not None else 43000 + 100 * (next(_ports) % 50)
        self.mediaenc = mediaenc
        self.proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._buffer = b""
        self.events: list[dict] = []
        self._tokens = itertools.count(1)
        self._write_config(tone_hz, cafile, extra_config, user)

    # -- config -------------------------------------------------------------
    def _write_config(self, tone_hz: int, cafile: Path | None, extra: str, user: str) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            "poll_method\tepoll",
            f"net_interface\t{self.ip}",
            f"sip_listen\t{self.ip}:{self.sip_port}",
            f"ctrl_tcp_listen\t{self.ip}:{self.ctrl_port}",
            f"rtp_ports\t{self.rtp_base}-{self.rtp_base + 99}",
            "audio_player\taubridge,sink",
            f"snd_path\t{self.workdir}",
            f"audio_source\tausine,{tone_hz}",
            "ausrc_srate\t48000\nauplay_srate\t48000\nausrc_channels\t2\nauplay_channels\t1",
            "rtcp_mux\tno",
            "module_path\t/usr/lib/baresip/modules",
            *(f"module\t{m}" for m in MODULES),
            "module_app\taccount.so\nmodule_app\tmenu.so\nmodule_app\tctrl_tcp.so",
        ]
        if cafile:
            lines.append(f"sip_cafile\t{cafile}")
        if extra:
            lines.append(extra.strip())
        (self.workdir / "config").write_text("\n".join(lines) + "\n")
        params = ["regint=0", "audio_codecs=" + ",".join(CODEC_NAMES[c] for c in self.codecs)]
        if self.mediaenc:
            params.append(f"mediaenc={MEDIAENC[self.mediaenc]}")
        (self.workdir / "accounts").write_text(f"<sip:{user}@{self.ip}:{self.sip_port}>;" + ";".join(params) + "\n")

    # -- process --------------------------------------------------------------
    def start(self) -> "Baresip":
        """Start baresip and connect to its ctrl_tcp socket.

        Raises:
            BaresipError: not installed, or not answering on ctrl_tcp within 10 s.
        """
        binary = shutil.which("baresip")
        if not binary:
            raise BaresipError("baresip is not installed (apt-get install baresip-core)")
        for old in self.workdir.glob("dump-*.wav"):
            old.unlink()
        self.log = open(self.workdir / "baresip.log", "wb")
        argv = [binary, "-f", str(self.workdir), *(["-s"] if self.sip_trace else [])]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        RUNNING.append(self)
        deadline = time.monotonic() + 10
        while True:
            try:
                self._sock = socket.create_connection((self.ip, self.ctrl_port), timeout=1)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BaresipError(f"baresip did not start: {self.output()[-2000:]}") from None
                time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Quit baresip (terminate, then kill after 5 s)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen process cannot handle SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self in RUNNING:
            RUNNING.remove(self)
        if getattr(self, "log", None):
            self.log.close()

    def freeze(self) -> None:
        """Suspend the process (SIGSTOP): it sends no RTP and no SIP until :meth:`thaw`, like a
        peer whose network or process died; what arrives meanwhile waits in its socket buffers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Resume a frozen process (SIGCONT)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> "Baresip":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def recording(self) -> Path:
        """The WAV of what this UA heard in its latest call (``sndfile`` decode dump)."""
        dumps = sorted(self.workdir.glob("dump-*-dec.wav"), key=lambda p: p.stat().st_mtime)
        return dumps[-1] if dumps else self.workdir / "no-recording.wav"

    def output(self) -> str:
        """baresip's console output so far."""
        path = self.workdir / "baresip.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- ctrl_tcp -----------------------------------------------------------
    def _read(self, timeout: float) -> dict | None:
        """One message from ctrl_tcp, or None after ``timeout`` seconds."""
        assert self._sock is not None
        deadline = time.monotonic() + timeout
        while True:
            head, sep, rest = self._buffer.partition(b":")
            if sep and head.isdigit() and len(rest) > int(head):
                size = int(head)
                payload, self._buffer = rest[:size], rest[size + 1:]
                message = json.loads(payload)
                if message.get("event"):
                    self.events.append(message)
                return message
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                raise BaresipError(f"baresip closed ctrl_tcp: {self.output()[-2000:]}")
            self._buffer += chunk

    def command(self, name: str, params: str = "", timeout: float = 5.0) -> str:
        """Run a menu command (``dial``, ``accept``, ``hangup``...) and return its output.

        Raises:
            BaresipError: no response in ``timeout`` seconds, or the command failed.
        """
        assert self._sock is not None, "start() first"
        token = str(next(self._tokens))
        self._sock.sendall(_netstring(json.dumps({"command": name, "params": params, "token": token}).encode()))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self._read(deadline - time.monotonic())
            if message and message.get("response") and message.get("token") == token:
                if not message.get("ok"):
                    raise BaresipError(f"{name} {params}: {message.get('data')}")
                return str(message.get("data", ""))
        raise BaresipError(f"no response to {name} {params}")

    def dial(self, uri: str) -> None:
        """Place a call to ``uri``."""
        self.command("dial", uri)

    def answer(self, timeout: float = 15.0) -> None:
        """Wait for an incoming call and accept it (200 OK with this UA's SDP answer)."""
        self.wait_event("CALL_INCOMING", timeout)
        self.command("accept")

    def hangup(self) -> None:
        """Hang up the current call."""
        self.command("hangup")

    def wait_event(self, kind: str, timeout: float = 15.0) -> dict:
        """Wait for an event of type ``kind`` (``CALL_ESTABLISHED``, ``CALL_CLOSED``, ``CALL_INCOMING``...),
        including ones already received.

        Raises:
            BaresipError: it did not come in ``timeout`` seconds (names the events seen).
        """
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("type") == kind:
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [f"{e.get('type')}:{e.get('param', '')}" for e in self.events]
                raise BaresipError(f"no {kind} within {timeout}s; events: {seen}; log: {self.output()[-1500:]}")
            self._read(min(left, 0.5))

    def has_event(self, kind: str) -> bool:
        """Whether an event of type ``kind`` has been received (reads what is pending)."""
        if self._sock is not None:
            while self._read(0.01):
                pass
        return any(e.get("type") == kind for e in self.events)


def _samples(path: Path, skip_s: float) -> tuple[np.ndarray, int]:
    """A WAV recording's samples (mono, 16-bit scale) after ``skip_s`` seconds, and its rate (Hz).

    Raises:
        BaresipError: the file is missing or shorter than 0.5 s after ``skip_s``.
    """
    if not path.exists():
        raise BaresipError(f"no recording at {path}")
    with wave.open(str(path), "rb") as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        frames = wav.readframes(wav.getnframes())
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float64)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    samples = samples[int(skip_s * rate):]
    if len(samples) < rate // 2:
        raise BaresipError(f"{path}: only {len(samples) / rate:.2f} s of audio")
    return samples, rate


def dominant_frequency(path: Path, skip_s: float = 0.3) -> tuple[float, float]:
    """The strongest frequency of a WAV recording and its RMS level.

    Args:
        path: 16-bit PCM WAV (baresip ``sndfile`` decode dump, :attr:`Baresip.recording`).
        skip_s: seconds skipped at the start (jitter buffer fill, codec start-up).

    Returns:
        ``(frequency_hz, rms)`` where rms is on the 16-bit scale (0 = silence).

    Raises:
        BaresipError: the file is missing or shorter than 0.5 s after ``skip_s``.
    """
    samples, rate = _samples(path, skip_s)
    rms = float(np.sqrt(np.mean(samples ** 2)))
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1.0 / rate)
    return float(freqs[int(np.argmax(spectrum[1:])) + 1]), rms


def tone_level(path: Path, hz: float, skip_s: float = 0.3, width_hz: float = 20.0) -> float:
    """Share of a recording's spectral magnitude within ``hz`` ± ``width_hz`` (0..1).

    Raises:
        BaresipError: as :func:`dominant_frequency`.
    """
    samples, rate = _samples(path, skip_s)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1.0 / rate)
    band = (freqs > hz - width_hz) & (freqs < hz + width_hz)
    return float(spectrum[band].sum() / spectrum[1:].sum())


def pcmu_tone(hz: float, packets: int, ptime_ms: int = 20, level: float = 0.5) -> list[bytes]:
    """RTP payloads of a sine tone in G.711 mu-law (ITU-T G.711; 8 kHz), ``ptime_ms`` each."""
    n = 8 * ptime_ms
    t = np.arange(n * packets) / 8000.0
    x = level * np.sin(2 * np.pi * hz * t)
    magnitude = np.log1p(255 * np.abs(x)) / np.log1p(255)
    code = np.round(127 - 127 * magnitude).astype(np.int16)  # mu-law: 7-bit magnitude, inverted
    code = np.where(x >= 0, code | 0x80, code)
    data = (code & 0xFF).astype(np.uint8).tobytes()
    return [data[i * n:(i + 1) * n] for i in range(packets)]


def stop_all() -> None:
    """Stop every UA still running (test teardown)."""
    for ua in list(RUNNING):
        ua.stop()
