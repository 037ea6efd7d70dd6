"""The routing tables as typed values, and their exact text form in redis.

Each class parses itself from the strings redis returns (``from_redis``) and
renders itself back (``to_redis``), so ``edgectl`` writes and the call path
reads through one definition.  Invalid data raises :class:`DataError` naming
the key and field, whether it came from the CLI or from a hand edit.

One module per noun: :mod:`.trunk` (``Trunk``, ``Gateway``, ``Registration``),
:mod:`.agent`, :mod:`.did`, :mod:`.route`, :mod:`.account`, :mod:`.media_policy` (``MediaPolicy``, shared by
trunks and agents), and :mod:`.fields` (``DataError``, the enums and the parsers they share).
Import the names from this package: ``from routing.tables.model import Trunk``.
"""

from routing.tables.model.fields import (
    CODECS,
    NAME_PATTERN,
    PREFIX_PATTERN,
    AuthMode,
    DataError,
    Direction,
    SilenceFill,
    CallerIdAction,
    CallerIdPolicy,
    ReferToFormat,
    ForwardedCallerId,
    SrtpMode,
    TransferMode,
    Transport,
    parse_hosts,
    check_name,
    check_prefix,
    format_increment,
    format_params,
    number_format_fields,
    parse_cidr,
    parse_codecs,
    parse_header_names,
    parse_increment,
    parse_number_format,
    parse_params,
    parse_prefixes,
    parse_rate,
    parse_sip_uri,
)
from routing.tables.model.media_policy import MediaPolicy
from routing.tables.model.callershape import CallerDisplay, CallerIdFormat, CallerIdHeader, CallerIdShape, FromUser
from routing.tables.model.trunk import (CONTACT_USER_PATTERN, RINGBACK_MS, SESSION_TIMER_S, Gateway, Registration, Trunk,
                                        check_ringback, check_session_timer)
from routing.tables.model.agent import ANSWER_TIMEOUT_MS, Agent, check_answer_timeout, check_hold_answer
from routing.tables.model.did import Did
from routing.tables.model.route import RouteEntry
from routing.tables.model.account import Account, check_account, parse_account_ref, same_account

__all__ = [
    "Account", "check_account", "parse_account_ref", "same_account",
    "DataError", "Direction", "AuthMode", "Transport", "SrtpMode", "MediaPolicy", "SilenceFill", "CODECS",
    "Gateway", "Registration", "Trunk", "Agent", "Did", "RouteEntry", "NAME_PATTERN", "PREFIX_PATTERN",
    "CONTACT_USER_PATTERN", "check_name", "check_prefix", "parse_codecs", "parse_params", "format_params",
    "parse_cidr", "parse_sip_uri", "parse_prefixes", "parse_header_names", "parse_increment",
    "format_increment", "parse_rate", "number_format_fields", "parse_number_format",
    "TransferMode", "ForwardedCallerId", "ReferToFormat", "parse_hosts", "check_answer_timeout", "check_hold_answer", "ANSWER_TIMEOUT_MS", "check_ringback",
    "RINGBACK_MS", "check_session_timer", "SESSION_TIMER_S", "CallerIdPolicy", "CallerIdAction",
    "CallerIdShape", "CallerIdHeader", "CallerIdFormat", "FromUser", "CallerDisplay",
]
