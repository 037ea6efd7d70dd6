"""The one settings file of an edge node (YAML), validated with pydantic.

Every rendered config (Kamailio, rtpengine, redis, the plugin's
``routing.json``) comes from a :class:`Settings`.  Defaults are the embedded
demo edge: everything on loopback, a local redis started by ``edgectl up``.
An error names the field path and the problem, e.g.
``sip.listen.0.port: Input should be less than or equal to 65535``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from routing.errors import EdgeError
from routing.call.media import DEFAULT_PRIVATE_NETWORKS
from routing.ops.capturesettings import Capture
from routing.ops.cdrsettings import Cdr
from routing.ops.rtpnodes import RtpNode
from routing.ops.stirsettings import Stir
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from routing.ops.storesettings import Redis

__all__ = ["Settings", "SettingsError", "load_settings", "format_validation_error", "REPO_ROOT", "DEFAULT_RUN_DIR"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RUN_DIR = REPO_ROOT / "run"


class SettingsError(EdgeError, ValueError):
    """The settings file is unreadable or invalid; the message names each bad field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ip(value: str) -> str:
    ipaddress.ip_address(value)
    return value


#: An IPv4 or IPv6 address literal.
IpAddress = Annotated[str, AfterValidator(_ip)]


#: the two networks an edge can face: carriers (often public, behind a 1:1 NAT) and agents (often a private VPC)
SIDES = ("carrier", "agent")


class Listener(_Model):
    """A SIP listening socket.

    ``advertise`` is the public address in front of a NAT, written into Via and
    Record-Route instead of ``address`` (and accepted as an alias of the edge);
    it is not checked against the host's interfaces.  ``side`` names the network
    the socket faces: requests toward carriers leave from a ``carrier`` (or ``both``)
    socket, requests toward agents from an ``agent`` (or ``both``) one (docs/media.md).
    """

    transport: Literal["udp", "tcp", "tls"] = "udp"
    address: IpAddress = "127.0.0.1"
    port: int = Field(5060, ge=1, le=65535)
    advertise: IpAddress | None = None
    side: Literal["both", "carrier", "agent"] = "both"


class Tls(_Model):
    """TLS signalling (RFC 3261 section 26.2): the edge's certificate, and how it checks carriers'."""

    certificate: Path | None = Field(None, description="PEM certificate chain (default <run_dir>/tls/edge.crt)")
    private_key: Path | None = Field(None, description="PEM private key (default <run_dir>/tls/edge.key)")
    ca_list: Path = Field(Path("/etc/ssl/certs/ca-certificates.crt"), description="CAs trusted for gateways")
    verify_gateways: bool = Field(True, description="check the certificate of tls gateways (off only for tests)")
    min_version: Literal["TLSv1.2+", "TLSv1.3"] = "TLSv1.2+"


class Sip(_Model):
    """Kamailio: listeners, worker counts and transaction timers."""

    listen: list[Listener] = Field(
        default_factory=lambda: [Listener(transport="udp"), Listener(transport="tcp")], min_length=1
    )
    workers: int = Field(4, ge=1, le=64, description="UDP worker processes per listener")
    tcp_workers: int = Field(2, ge=1, le=64, description="TCP worker processes")
    failover_timeout_ms: int = Field(
        3000, ge=500, le=60000, description="no reply at all from a hop for this long -> next hop (tm fr_timer)"
    )
    ringing_timeout_ms: int = Field(
        60000, ge=1000, le=300000, description="provisional but no final reply for this long -> next hop (tm fr_inv_timer)"
    )
    max_call_duration_s: int = Field(
        14400, ge=5, le=86400, description="dialog timeout: the call is torn down with BYE after this long"
    )
    transfer_bye_delay_s: int = Field(
        2, ge=0, le=60,
        description="after a carrier reports a transfer done (NOTIFY sipfrag 2xx), the edge ends the call itself "
        "(BYE to both sides) unless the agent has sent BYE within this many seconds",
    )
    log_level: int = Field(2, ge=-5, le=3, description="Kamailio debug level (2 = info)")
    shm_mb: int = Field(
        1024, ge=64, le=65536,
        description="Kamailio shared memory (MB, kamailio -m): transactions, dialogs and rtpengine state; "
        "the 64 MB default runs out near 450 CPS (docs/benchmarks.md)",
    )
    allocator: Literal["tlsf", "qm", "fm"] = Field(
        "tlsf", description="Kamailio memory manager (kamailio -x): TLSF halves worker CPU in malloc under load",
    )
    tls: Tls = Field(default_factory=Tls)

    @model_validator(mode="after")
    def _check_sides(self) -> "Sip":
        sided = {l.side for l in self.listen} - {"both"}
        for side in SIDES:
            if sided and not any(l.side in (side, "both") for l in self.listen):
                raise ValueError(f"listen: a listener has a side but none serves the {side} side (side: {side} or both)")
        return self

    @property
    def sided(self) -> bool:
        """True when a listener faces only one side (requests are then sent from their side's sockets)."""
        return any(l.side != "both" for l in self.listen)


class MediaInterface(_Model):
    """One rtpengine interface: the local address media uses and the address written into SDP."""

    address: IpAddress
    advertise: IpAddress | None = Field(None, description="public address of a 1:1 NAT, written into SDP c=/o=")


class MediaSides(_Model):
    """rtpengine interfaces per side: carriers' media on ``carrier``, agents' on ``agent``.

    The two may be of different IP families (IPv4 carriers, IPv6 agents): rtpengine writes each
    side's SDP in its own interface's family (``c=IN IP6`` toward an IPv6 side) and relays between
    them (measured with rtpengine 10.5, tests/integration/test_sides_ipv6.py)."""

    carrier: MediaInterface
    agent: MediaInterface


class RtpEngine(_Model):
    """rtpengine: media address, port range and control sockets."""

    address: IpAddress = Field("127.0.0.1", description="media address of both sides (when `sides` is not set)")
    advertise: IpAddress | None = None
    sides: MediaSides | None = Field(
        None, description="one interface per side (carrier, agent) instead of `address`/`advertise` for both",
    )
    ng_port: int = Field(2223, ge=1, le=65535)
    cli_port: int = Field(9900, ge=1, le=65535)
    port_min: int = Field(30000, ge=1024, le=65535)
    port_max: int = Field(40000, ge=1024, le=65535)
    media_timeout_s: int = Field(60, ge=10, le=3600, description="no RTP for this long ends the media session")
    log_level: int = Field(5, ge=0, le=7)
    nodes: tuple[RtpNode, ...] = Field((), description="rtpengine set used instead of the local one (docs/media.md)")
    disable_s: int = Field(5, ge=1, le=3600, description="a node of the set that fails is skipped this long (s)")

    @model_validator(mode="after")
    def _check_ports(self) -> "RtpEngine":
        if self.port_max - self.port_min < 100:
            raise ValueError("port_max must be at least port_min + 100")
        return self


def _ptime(value: int) -> int:
    if value % 10:
        raise ValueError("must be a multiple of 10 ms")
    return value


def _cidr(value: str) -> str:
    ipaddress.ip_network(value, strict=False)
    return value


class SideMedia(_Model):
    """Node default media policy of one kind of side (carrier trunks or agents); a trunk's or agent's own
    fields in redis override it field by field (docs/media.md)."""

    codecs: list[Literal["PCMU", "PCMA", "G722", "opus"]] = Field(
        default_factory=lambda: ["PCMU", "PCMA", "G722", "opus"], min_length=1,
        description="audio codecs allowed on this side, in preference order (telephone-event is always kept)",
    )
    ptime_ms: Annotated[int, AfterValidator(_ptime)] = Field(20, ge=10, le=60, description="packetisation (ms)")
    srtp: Literal["none", "sdes", "dtls"] = Field("none", description="encryption this side requires")
    rtp_timeout_s: int = Field(
        60, ge=5, le=86400,
        description="no RTP from any side for this long ends the call with BYE to both sides (s)",
    )
    sip_keepalive: bool = Field(
        False, description="send this side in-dialog OPTIONS every media.keepalive_interval_s; no answer ends the call",
    )
    fill_silence: Literal["none", "audio", "cn"] = Field(
        "none", description="what this side receives while the other side is silent: nothing, silence, or CN packets",
    )

    @model_validator(mode="after")
    def _unique(self) -> "SideMedia":
        if len(set(self.codecs)) != len(self.codecs):
            raise ValueError("codecs: a codec is listed twice")
        return self


class Media(_Model):
    """Media policy defaults and the media watchdog (docs/media.md)."""

    trunk: SideMedia = Field(default_factory=SideMedia)
    agent: SideMedia = Field(default_factory=SideMedia)
    check_interval_s: int = Field(
        2, ge=1, le=60, description="how often the call clock asks rtpengine about each answered call, and counts the "
        "spend so far of calls under a daily spend cap (s)"
    )
    quality_ttl_s: int = Field(
        86400, ge=60, le=30 * 86400, description="how long a call's media quality record is kept after it ends (s)"
    )
    first_audio_poll_ms: int = Field(
        0, ge=0, le=1000,
        description="time to first audio: after the answer, rtpengine's packet count of the agent's stream is read this "
        "often until its first packet (ms; the measure's resolution, 250 is a good value); 0 = not measured (the default: "
        "one rtpengine query per call and interval until the agent's first packet)",
    )
    dead_air_s: int = Field(
        5, ge=1, le=60, description="an answered call whose agent sent no RTP this long after the answer counts as dead air "
        "(s); on a call whose first voice is measured, also one whose agent sent only silence"
    )
    first_voice: bool = Field(
        False, description="on a call whose agent's stream rtpengine transcodes, the agent's first non-silent audio is "
        "measured too (a copy of its stream until then; needs first_audio_poll_ms). Off by default: rtpengine 10.5 "
        "recomputes the agent stream's transcoding for the copy, which stops DTMF conversion on calls whose sides "
        "use different DTMF modes",
    )
    voice_threshold_dbov: int = Field(
        -40, ge=-70, le=-10, description="first voice: a 20 ms frame of the agent's audio at or above this level is voice "
        "(dBov, 0 = a full-scale square wave); digital silence is below -72, speech about -15 to -35",
    )
    announcements_dir: Path = Field(
        Path("/var/lib/byoc-edge/announcements"),
        description="directory of the announcements a DID's fallback may end with (announce:NAME plays NAME.wav, "
        "read by rtpengine, so on the rtpengine host)",
    )
    announcement_max_s: int = Field(
        30, ge=1, le=300,
        description="the longest an announcement plays before the caller gets the final refusal (s); a longer file is cut",
    )
    private_networks: list[Annotated[str, AfterValidator(_cidr)]] = Field(
        default_factory=lambda: list(DEFAULT_PRIVATE_NETWORKS),
        description="networks treated as private: a peer whose SDP names an address in them while its SIP comes "
        "from outside them is behind NAT, and its media is sent to its SIP source address (docs/media.md)",
    )
    keepalive_interval_s: int = Field(
        30, ge=30, le=3600,
        description="interval of the in-dialog OPTIONS to sides with sip_keepalive (s; the dialog module's minimum is 30)",
    )
    keepalive_failures: int = Field(
        2, ge=1, le=10, description="unanswered keepalives (408 or 481) before the call is ended",
    )
    fill_delay_ms: int = Field(
        40, ge=0, le=500,
        description="rtpengine dtx-delay: how long a transcoded stream waits before filling a gap (ms); "
                    "0 turns fill_silence off",
    )
    comfort_noise_dbov: int = Field(
        70, ge=0, le=127, description="level of the comfort noise sent to fill_silence=cn sides (-dBov, RFC 3389)",
    )


class Limits(_Model):
    """Refusal policy."""

    retry_after_s: int = Field(5, ge=1, le=3600, description="Retry-After on 503 refusals")


class Overload(_Model):
    """Node-wide admission of new calls (issue 12 item 3): native route blocks at the top of
    Kamailio's request route answer the excess ``503`` with ``Retry-After`` before any redis
    access or routing work (``templates/kamailio.cfg.j2``, ``overload.*`` in its context)."""

    max_cps: int = Field(
        0, ge=0, le=100000, description="new calls (initial INVITEs) per second the node admits; 0 = no limit",
    )
    max_calls: int = Field(
        0, ge=0, le=1000000, description="concurrent calls (dialogs) the node admits; 0 = no limit",
    )
    max_transactions: int = Field(
        5000, ge=0, le=1000000,
        description="shed new INVITEs while tm's transactions in use exceed this (the edge is backed up); 0 = off. "
        "Little's law at this 2-core machine's knee (~350 CPS of short calls): each call keeps an INVITE and a BYE "
        "transaction for tm's 5 s wait_timer after their final reply, about 350 x 2 x 5 = 3,500 in use; 5,000 leaves "
        "about 40 % headroom above that and trips within a few seconds of a backlog (docs/settings.md)",
    )
    shed_backlog_kb: int = Field(
        64, ge=0, le=65536,
        description="automatic shedding: while more than this many KB of SIP datagrams wait in the kernel queues of "
        "the UDP listeners (the edge is behind), the share of new INVITEs refused rises by 10 % per multiple of it at each 20 ms reading once it stayed above it for 100 ms; 0 = off "
        "(routing/call/overload.py)",
    )
    resume_backlog_kb: int = Field(
        16, ge=0, le=65536,
        description="below this backlog (KB) the share of new INVITEs shed falls by 0.4 % every 20 ms reading (2 % per 100 ms)",
    )
    retry_after_s: int = Field(2, ge=1, le=3600, description="Retry-After on the node's overload 503s (s)")

    @model_validator(mode="after")
    def _backlog_order(self) -> "Overload":
        if self.shed_backlog_kb and self.resume_backlog_kb >= self.shed_backlog_kb:
            raise ValueError("resume_backlog_kb must be below shed_backlog_kb")
        return self


class Drain(_Model):
    """Taking the node out of service (``edgectl drain``, docs/operations.md#draining-a-node): new
    INVITEs and out-of-dialog OPTIONS get ``503 Node Draining`` from the native request route while
    calls in progress go on."""

    retry_after_s: int = Field(
        30, ge=1, le=3600,
        description="Retry-After of the 503 Node Draining answers (s): how long a carrier that honours it "
        "(RFC 3261 section 21.5.4) keeps new calls and probes away from this node",
    )


#: Destinations refused on every trunk unless an operator removes them: international premium
#: rate (+979), satellite and international networks (+870, +881, +882, +883), NANP premium (+1900, +1976).
DEFAULT_BLOCKED = ["+1900", "+1976", "+870", "+881", "+882", "+883", "+979"]


def _prefix(value: str) -> str:
    if not re.fullmatch(r"\+[0-9]{1,15}", value):
        raise ValueError(f"{value!r} is not an E.164 prefix (+ and digits)")
    return value


class Policy(_Model):
    """Toll-fraud guardrails applied to every termination call, transfer and redirect."""

    blocked_prefixes: list[Annotated[str, AfterValidator(_prefix)]] = Field(
        default_factory=lambda: list(DEFAULT_BLOCKED),
        description="E.164 prefixes no agent may reach on any trunk",
    )


#: User-Agent fragments of SIP scanners and crackers (case-insensitive); a match is banned at once.
DEFAULT_SCANNERS = [
    "friendly-scanner", "sipvicious", "sipcli", "sip-scan", "sipscan", "vaxsipuseragent", "pplsip",
    "sundayddr", "iwar", "sipsak", "smap", "nessus", "sipptk", "voipbuster",
]


class Security(_Model):
    """Flood and scanner defence (Kamailio pike + a ban table)."""

    flood_requests: int = Field(
        30, ge=4, le=100000,
        description="requests per 2 s from one untrusted source before it is banned (pike reqs_density_per_unit)",
    )
    ban_time_s: int = Field(300, ge=10, le=86400, description="how long a banned source is ignored (s)")
    scanner_user_agents: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SCANNERS),
        description="User-Agent fragments that get a source banned at once",
    )
    secret_key_file: Path | None = Field(
        None, description="key that encrypts trunk passwords in redis (default: <run_dir>/secret.key, created 0600)"
    )
    auth_realm: str = Field("byoc-edge", pattern=r"^[A-Za-z0-9.\-]{1,64}$", description="digest realm of challenges")
    auth_max_failures: int = Field(5, ge=1, le=1000, description="failed digest attempts before the source is banned")
    auth_failure_window_s: int = Field(60, ge=5, le=86400, description="failures older than this are forgotten (s)")
    topology_hiding: bool = Field(
        True, description="hide each side's Via, Record-Route and Contact from the other (Kamailio topoh)",
    )
    topology_mask_ip: IpAddress | None = Field(
        None, description="address topoh writes into the masked Via, Record-Route and Contact values (mask_ip); "
        "default: the first UDP listener's advertised (else local) address.  An edge with one network per side "
        "sets an address of neither network (e.g. 192.0.2.1), so no side sees the other's",
    )


class Health(_Model):
    """Gateway health: continuous SIP OPTIONS pings per gateway (``routing/monitor/prober.py``).

    A gateway is marked down after ``down_after`` failed probes in a row and up
    again after ``up_after`` successes in a row; least-cost routing skips down
    gateways.  Trunks whose carrier does not answer OPTIONS opt out per trunk
    (``edgectl trunk add --no-probe``).
    """

    enabled: bool = Field(True, description="ping every gateway of every probed trunk")
    interval_s: float = Field(10.0, ge=0.2, le=3600, description="time between two probes of one gateway (s)")
    timeout_ms: int = Field(1000, ge=50, le=30000, description="no final answer within this long = a failed probe (ms)")
    down_after: int = Field(3, ge=1, le=100, description="failed probes in a row that mark a gateway down")
    up_after: int = Field(2, ge=1, le=100, description="successful probes in a row that mark a down gateway up")


class Metrics(_Model):
    """Prometheus endpoints: Kamailio (xhttp_prom), rtpengine (``/metrics``) and the edge exporter.

    All bind ``address`` (loopback by default: put a reverse proxy or a
    firewall rule in front before exposing them).
    """

    address: IpAddress = Field("127.0.0.1", description="address of the three HTTP metrics endpoints")
    kamailio_port: int = Field(9161, ge=1, le=65535, description="Kamailio xhttp_prom /metrics (TCP)")
    rtpengine_port: int = Field(9162, ge=1, le=65535, description="rtpengine listen-http /metrics")
    exporter_port: int = Field(9163, ge=1, le=65535, description="edge exporter /metrics (redis state, gateway health)")

    @model_validator(mode="after")
    def _check_ports(self) -> "Metrics":
        if len({self.kamailio_port, self.rtpengine_port, self.exporter_port}) != 3:
            raise ValueError("kamailio_port, rtpengine_port and exporter_port must differ")
        return self


class Diagnostics(_Model):
    """What the edge keeps to explain its decisions (``edgectl explain``)."""

    trace_ttl_s: int = Field(
        3600, ge=0, le=604800,
        description="how long the record of a refused call (edge:trace:{call-id}) is kept in redis (s); 0 = not kept",
    )


class Registration(_Model):
    """Registration trunks: the edge REGISTERing to carriers (Kamailio ``uac`` module, ``uac_reg``)."""

    timer_interval_s: int = Field(
        10, ge=1, le=600,
        description="how often the uac module checks its registrations (s, reg_timer_interval); a refresh is sent "
        "once the registration expires within this plus 3 s",
    )
    retry_interval_s: int = Field(60, ge=5, le=3600, description="wait after a failed registration before retrying (s)")
    sync_interval_s: int = Field(
        5, ge=1, le=300, description="how often trunk changes in redis reach the registrations, and their state is published (s)",
    )


class Dtmf(_Model):
    """DTMF handling (routing/call/dtmf.py, docs/media.md#dtmf): the mode of trunks and agents without their own."""

    default_mode: Literal["rfc4733", "info", "inband"] = Field(
        "rfc4733", description="DTMF mode of a trunk or agent whose dtmf field is empty",
    )
    duration_ms: int = Field(
        250, ge=100, le=5000, description="length of a digit played from an INFO without Duration (ms, rtpengine play DTMF)",
    )
    volume_db: int = Field(8, ge=0, le=63, description="level of a played DTMF tone, dB below full scale")
    log_port: int = Field(
        2224, ge=0, le=65535,
        description="UDP port on 127.0.0.1 where rtpengine reports the digits it sees (dtmf-log-dest) and the "
        "edge records them with the call; 0 = digits seen in the media are not recorded",
    )


class Settings(_Model):
    """One edge node's settings (see ``docs/settings.md``)."""

    node: str = Field("edge1", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    run_dir: Path = DEFAULT_RUN_DIR
    sip: Sip = Field(default_factory=Sip)
    rtpengine: RtpEngine = Field(default_factory=RtpEngine)
    redis: Redis = Field(default_factory=Redis)
    limits: Limits = Field(default_factory=Limits)
    overload: Overload = Field(default_factory=Overload)
    drain: Drain = Field(default_factory=Drain)
    policy: Policy = Field(default_factory=Policy)
    security: Security = Field(default_factory=Security)
    health: Health = Field(default_factory=Health)
    metrics: Metrics = Field(default_factory=Metrics)
    diagnostics: Diagnostics = Field(default_factory=Diagnostics)
    registration: Registration = Field(default_factory=Registration)
    dtmf: Dtmf = Field(default_factory=Dtmf)
    cdr: Cdr = Field(default_factory=Cdr)
    capture: Capture = Field(default_factory=Capture)
    stir: Stir = Field(default_factory=Stir)

    @property
    def cdr_spool_path(self) -> Path:
        """Directory of spooled call records."""
        return self.cdr.spool_dir or Path(self.run_dir) / "cdr-spool"

    @property
    def cdr_jsonl_path(self) -> Path:
        """The JSON-lines file of call records (``cdr.store: jsonl``)."""
        return self.cdr.jsonl_path or Path(self.run_dir) / "cdr" / "records.jsonl"

    @property
    def capture_path(self) -> Path:
        """Directory of the per-call SIP captures."""
        return self.capture.dir or Path(self.run_dir) / "captures"
    media: Media = Field(default_factory=Media)

    @model_validator(mode="after")
    def _check_dtmf_port(self) -> "Settings":
        if self.dtmf.log_port and self.dtmf.log_port == self.rtpengine.ng_port:
            raise ValueError("dtmf.log_port must differ from rtpengine.ng_port (both are UDP ports on 127.0.0.1)")
        if self.capture.enabled and self.capture.address == "127.0.0.1" and self.capture.port in (
                self.rtpengine.ng_port, self.dtmf.log_port):
            raise ValueError("capture.port must differ from rtpengine.ng_port and dtmf.log_port (UDP ports on 127.0.0.1)")
        return self

    @model_validator(mode="after")
    def _check_capture_family(self) -> "Settings":
        """siptrace sends its HEP from one of Kamailio's UDP sockets: one must be of the collector's IP family."""
        if not self.capture.enabled:
            return self
        family = ipaddress.ip_address(self.capture.address).version
        if not any(l.transport == "udp" and ipaddress.ip_address(l.address).version == family for l in self.sip.listen):
            other = "::1" if family == 4 else "127.0.0.1"
            raise ValueError(f"capture.address {self.capture.address}: no UDP listener of its IP family sends the HEP "
                             f"(set capture.address: {other}, or capture.enabled: false)")
        return self

    @model_validator(mode="after")
    def _check_side_families(self) -> "Settings":
        """A side's own listeners are of its media interface's IP family: rtpengine writes the side's
        SDP in that family, so a peer reached over the other family would get an address it cannot use."""
        if self.rtpengine.sides is None:
            return self
        for side in SIDES:
            media = ipaddress.ip_address(getattr(self.rtpengine.sides, side).address)
            for index, listener in enumerate(self.sip.listen):
                if listener.side != side or listener.address in ("0.0.0.0", "::"):
                    continue
                if ipaddress.ip_address(listener.address).version != media.version:
                    raise ValueError(
                        f"sip.listen.{index}.address {listener.address} (side {side}) and rtpengine.sides.{side}.address "
                        f"{media} must be of the same IP family: a side's SIP and media use one family")
        return self

    @property
    def tls_certificate(self) -> Path:
        """The edge's TLS certificate file."""
        return self.sip.tls.certificate or Path(self.run_dir) / "tls" / "edge.crt"

    @property
    def tls_private_key(self) -> Path:
        """The edge's TLS private key file."""
        return self.sip.tls.private_key or Path(self.run_dir) / "tls" / "edge.key"

    @property
    def tls_enabled(self) -> bool:
        """True when a listener uses TLS."""
        return any(l.transport == "tls" for l in self.sip.listen)

    @property
    def secret_key_path(self) -> Path:
        """The key file that encrypts stored secrets."""
        return self.security.secret_key_file or Path(self.run_dir) / "secret.key"

    @property
    def sip_target(self) -> tuple[str, int]:
        """Where a local SIP probe reaches the edge: first UDP listener (wildcards -> loopback)."""
        listener = next((l for l in self.sip.listen if l.transport == "udp"), self.sip.listen[0])
        host = listener.address
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        return host, listener.port


def format_validation_error(exc: ValidationError) -> str:
    """Every error of ``exc`` as ``field.path: message``, joined by ``; `` (one line)."""
    parts = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{path}: {err['msg']}")
    return "; ".join(parts)


def load_settings(path: str | Path | None = None) -> Settings:
    """Load and validate a settings file; None gives the embedded default.

    Relative ``run_dir`` values are taken relative to the settings file.

    Raises:
        SettingsError: unreadable file, bad YAML, or invalid fields (all named).
    """
    if path is None:
        return Settings()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise SettingsError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SettingsError(f"{path}: not valid YAML: {problem}{line}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping at the top level")
    if "run_dir" in data and not Path(str(data["run_dir"])).is_absolute():
        data["run_dir"] = str((path.parent / str(data["run_dir"])).resolve())
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(f"{path}: {format_validation_error(exc)}") from None
