"""A voice agent (``edge:agent:{name}``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from routing.call.dtmf import DtmfMode
from routing.call.numbers import NumberFormat, is_e164
from routing.tables import keys
from routing.tables.model.fields import (
    number_format_fields,
    parse_cidr,
    parse_header_names,
    parse_hosts,
    parse_number_format,
    parse_prefixes,
    parse_sip_uri,
    DataError,
    _bool,
    _dtmf,
    _int,
)
from routing.tables.model.media_policy import MediaPolicy
from routing.tables.model.account import parse_account_ref

__all__ = ["Agent", "check_answer_timeout", "ANSWER_TIMEOUT_MS", "check_caller_id"]


@dataclass(frozen=True, slots=True)
class Agent:
    """An AI voice agent reachable over SIP (LiveKit SIP, Pipecat, jambonz, Vapi, Retell).

    Attributes:
        name: unique agent name.
        uris: SIP URI targets for origination, tried in order with the same
            failover rules as termination gateways (see :mod:`routing.call.plan`).
        cidrs: source networks allowed to place termination calls as this agent.
        max_calls: concurrent calls allowed; None = unlimited.
        allow_prefixes: destinations the agent may call, transfer or be redirected to; empty = all not denied.
        deny_prefixes: destinations the agent may never reach.
        x_headers: X- headers the agent may pass to carriers (others are removed).
        trust_identity: whether the agent's identity headers (P-Asserted-Identity...)
            pass to carriers; off by default, so an agent cannot spoof a caller ID that way.
        dtmf: how the agent sends and expects DTMF digits (:mod:`routing.call.dtmf`); None = node default.
        media: codecs, ptime, SRTP and RTP timeout of the agent side (:class:`MediaPolicy`).
        number_format: how the agent writes the destinations it dials (a NANP agent whose
            callers dial ``011`` international numbers); the default reads ``+`` E.164, ``00``
            international numbers and bare full numbers, as before the field existed.
        probe: whether the edge pings the agent's URIs with SIP OPTIONS and skips the ones marked
            down (off for an agent platform that does not answer OPTIONS).
        answer_timeout_ms: longest wait for one URI's final answer (ms); a URI that does not
            answer within it is failed over (also when it sends nothing at all); None = the
            node's ``sip.ringing_timeout_ms`` (and ``sip.failover_timeout_ms`` for no answer).
        hold_answer_ms: on origination calls, the agent's 200 OK is held from the caller until the
            agent's first RTP packet, at most this long (ms); 0 = relayed at once (docs/agents.md).
        caller_id: the agent's default caller ID (E.164), presented where its own is not allowed;
            empty = none (docs/identity.md).
        caller_ids: E.164 prefixes of the caller IDs the agent may present on termination calls;
            with ``present_dids`` empty and off, any.
        present_dids: the DIDs bound to the agent are caller IDs it may present.
        transfer_hosts: hosts the agent may transfer calls to by SIP URI (REFER to ``sip:queue@host``),
            besides the hosts of every agent's URIs (on-net targets); numbers are under
            ``allow_prefixes``/``deny_prefixes`` (:mod:`routing.call.transfer`).
    """

    name: str
    uris: tuple[str, ...] = ()
    cidrs: tuple[str, ...] = ()
    max_calls: int | None = None
    allow_prefixes: tuple[str, ...] = ()
    deny_prefixes: tuple[str, ...] = ()
    x_headers: tuple[str, ...] = ()
    trust_identity: bool = False
    dtmf: DtmfMode | None = None
    media: MediaPolicy = field(default_factory=MediaPolicy)
    number_format: NumberFormat = field(default_factory=NumberFormat)
    transfer_hosts: tuple[str, ...] = ()
    probe: bool = True
    answer_timeout_ms: int | None = None
    hold_answer_ms: int = 0
    caller_id: str = ""
    caller_ids: tuple[str, ...] = ()
    present_dids: bool = False
    account: str = ""

    def to_redis(self) -> dict[str, str]:
        """Fields of ``edge:agent:{name}`` (``account`` only when it has one)."""
        return {**({"account": self.account} if self.account else {}),
            "max_calls": "" if self.max_calls is None else str(self.max_calls),
            **number_format_fields(self.number_format),
            "allow_prefixes": ",".join(self.allow_prefixes),
            "deny_prefixes": ",".join(self.deny_prefixes),
            "x_headers": ",".join(self.x_headers),
            "trust_identity": "yes" if self.trust_identity else "no",
            "dtmf": "" if self.dtmf is None else str(getattr(self.dtmf, "value", self.dtmf)),
            **self.media.to_redis(),
            "transfer_hosts": ",".join(self.transfer_hosts),
            "probe": "yes" if self.probe else "no",
            "answer_timeout_ms": "" if self.answer_timeout_ms is None else str(self.answer_timeout_ms),
            "hold_answer_ms": str(self.hold_answer_ms) if self.hold_answer_ms else "",
            "caller_id": self.caller_id,
            "caller_ids": ",".join(self.caller_ids),
            "present_dids": "yes" if self.present_dids else "no",
        }

    @classmethod
    def from_redis(
        cls, name: str, fields: dict[str, str], uris: list[str], cidrs: set[str] | list[str]
    ) -> "Agent":
        """Build an agent from its three keys.

        Raises:
            DataError: any malformed field, naming the redis key.
        """
        for cidr in cidrs:
            parse_cidr(cidr, keys.agent_cidrs(name))
        checked = tuple(parse_sip_uri(u, keys.agent_uris(name)) for u in uris)
        return cls(
            name=name,
            uris=checked,
            cidrs=tuple(sorted(cidrs)),
            max_calls=_int(fields.get("max_calls"), f"{keys.agent(name)} max_calls"),
            allow_prefixes=parse_prefixes(fields.get("allow_prefixes", ""), f"{keys.agent(name)} allow_prefixes"),
            deny_prefixes=parse_prefixes(fields.get("deny_prefixes", ""), f"{keys.agent(name)} deny_prefixes"),
            x_headers=parse_header_names(fields.get("x_headers", ""), f"{keys.agent(name)} x_headers"),
            trust_identity=_bool(fields.get("trust_identity"), f"{keys.agent(name)} trust_identity", default=False),
            dtmf=_dtmf(fields.get("dtmf"), keys.agent(name)),
            media=MediaPolicy.from_redis(fields, keys.agent(name)),
            number_format=parse_number_format(fields, keys.agent(name)),
            transfer_hosts=parse_hosts(fields.get("transfer_hosts", ""), f"{keys.agent(name)} transfer_hosts"),
            probe=_bool(fields.get("probe"), f"{keys.agent(name)} probe", default=True),
            answer_timeout_ms=_answer_timeout(fields.get("answer_timeout_ms"), f"{keys.agent(name)} answer_timeout_ms"),
            hold_answer_ms=check_hold_answer(_int(fields.get("hold_answer_ms"), f"{keys.agent(name)} hold_answer_ms") or 0,
                                             f"{keys.agent(name)} hold_answer_ms"),
            caller_id=check_caller_id(fields.get("caller_id", ""), f"{keys.agent(name)} caller_id"),
            caller_ids=parse_prefixes(fields.get("caller_ids", ""), f"{keys.agent(name)} caller_ids"),
            present_dids=_bool(fields.get("present_dids"), f"{keys.agent(name)} present_dids", default=False),
            account=parse_account_ref(fields.get("account"), f"{keys.agent(name)} account"),
        )


#: bounds of ``answer_timeout_ms`` (ms): tm's timers take no less than a few hundred ms, no more than the node's maximum
ANSWER_TIMEOUT_MS = (200, 300000)


def _answer_timeout(value: str | None, where: str) -> int | None:
    """An agent's answer timeout (ms) from its redis text, None when empty.

    Raises:
        DataError: not an integer in :data:`ANSWER_TIMEOUT_MS`.
    """
    return check_answer_timeout(_int(value, where), where)


def check_answer_timeout(timeout: int | None, where: str) -> int | None:
    """``timeout`` (ms) when it is None or within :data:`ANSWER_TIMEOUT_MS`.

    Raises:
        DataError: out of bounds, naming ``where``.
    """
    if timeout is not None and not ANSWER_TIMEOUT_MS[0] <= timeout <= ANSWER_TIMEOUT_MS[1]:
        raise DataError(f"{where}: must be between {ANSWER_TIMEOUT_MS[0]} and {ANSWER_TIMEOUT_MS[1]} ms, got {timeout}")
    return timeout


#: bounds of ``hold_answer_ms`` (ms) when set: a poll interval or more, less than a caller waits in silence
HOLD_ANSWER_MS = (100, 10000)


def check_hold_answer(hold_ms: int, where: str) -> int:
    """``hold_ms`` when it is 0 (off) or within :data:`HOLD_ANSWER_MS`.

    Raises:
        DataError: out of bounds, naming ``where``.
    """
    if hold_ms and not HOLD_ANSWER_MS[0] <= hold_ms <= HOLD_ANSWER_MS[1]:
        raise DataError(f"{where}: must be 0 (off) or between {HOLD_ANSWER_MS[0]} and {HOLD_ANSWER_MS[1]} ms, got {hold_ms}")
    return hold_ms


def check_caller_id(number: str, where: str) -> str:
    """A default caller ID: empty, or an E.164 number with ``+``.

    Raises:
        DataError: anything else, naming ``where``.
    """
    number = (number or "").strip()
    if number and not is_e164(number):
        raise DataError(f"{where}: not an E.164 number (+ then 4-15 digits): {number!r}")
    return number
