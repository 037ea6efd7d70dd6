"""How a trunk's carrier wants the caller ID of termination calls written (fields of
``edge:trunk:{name}``, docs/identity.md#what-the-carrier-receives): which header carries the
number, its format, the From user and host, ``user=phone``, the display name.  The defaults
write the From as the agent did (today's behaviour)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from routing.tables.model.fields import DataError

__all__ = ["CallerIdHeader", "CallerIdFormat", "FromUser", "CallerDisplay", "CallerIdShape"]


class CallerIdHeader(str, Enum):
    """The header that carries the caller ID besides the From: none (``from``), or RFC 3325
    ``P-Asserted-Identity`` (``pai``) / ``P-Preferred-Identity`` (``ppi``), or the older
    ``Remote-Party-ID`` (``rpid``, draft-ietf-sip-privacy-04, still asked for by some carriers)."""

    FROM = "from"
    PAI = "pai"
    PPI = "ppi"
    RPID = "rpid"


class CallerIdFormat(str, Enum):
    """How the number is written: ``e164`` (``+14155550100``), ``e164-noplus`` (``14155550100``)
    or ``national`` (the trunk's number format: ``4155550100`` with country code 1)."""

    E164 = "e164"
    E164_NOPLUS = "e164-noplus"
    NATIONAL = "national"


class FromUser(str, Enum):
    """The From user part: the caller ID (``caller``), or the trunk's digest username (``auth``,
    for carriers that identify the account by it and read the number from the identity header)."""

    CALLER = "caller"
    AUTH = "auth"


class CallerDisplay(str, Enum):
    """The From display name: kept as the agent wrote it, removed (``none``) or the number."""

    KEEP = "keep"
    NONE = "none"
    NUMBER = "number"


_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$|^\[[0-9A-Fa-f:.]+\]$")


@dataclass(frozen=True, slots=True)
class CallerIdShape:
    """A trunk's caller ID shaping.

    Attributes:
        header: the identity header that carries the number too (:class:`CallerIdHeader`).
        format: how the number is written, in the From and that header (:class:`CallerIdFormat`).
        from_user: what the From user part is (:class:`FromUser`).
        from_host: the From host; empty = the one the agent wrote.
        user_phone: ``;user=phone`` on the From and identity URIs (RFC 3261 section 19.1.1).
        display: the From display name (:class:`CallerDisplay`).
    """

    header: CallerIdHeader = CallerIdHeader.FROM
    format: CallerIdFormat = CallerIdFormat.E164
    from_user: FromUser = FromUser.CALLER
    from_host: str = ""
    user_phone: bool = False
    display: CallerDisplay = CallerDisplay.KEEP

    @property
    def is_default(self) -> bool:
        """True when the From is relayed as the agent wrote it (no shaping)."""
        return self == CallerIdShape()

    def to_redis(self) -> dict[str, str]:
        """The trunk hash fields of the shaping."""
        return {"caller_id_header": self.header.value, "caller_id_format": self.format.value,
                "from_user": self.from_user.value, "from_host": self.from_host,
                "user_phone": "yes" if self.user_phone else "no", "caller_display": self.display.value}

    def to_json(self) -> dict[str, object]:
        """JSON shape (``edgectl trunk show --json``, export)."""
        return {"header": self.header.value, "format": self.format.value, "from_user": self.from_user.value,
                "from_host": self.from_host, "user_phone": self.user_phone, "display": self.display.value}

    @classmethod
    def build(cls, header: str | None = None, format: str | None = None, from_user: str | None = None,
              from_host: str | None = None, user_phone: bool | str | None = None, display: str | None = None,
              where: str = "trunk") -> "CallerIdShape":
        """A shaping from texts (missing = the default).

        Raises:
            DataError: an unknown choice or a malformed host, naming ``where`` and the field.
        """
        def choice(kind: type[Enum], value: str | None, name: str):  # noqa: ANN202
            if not value:
                return next(iter(kind))  # type: ignore[call-overload]
            try:
                return kind(value.strip().lower())
            except ValueError:
                allowed = ", ".join(str(m.value) for m in kind)  # type: ignore[attr-defined]
                raise DataError(f"{where} {name}: {value!r} is not one of {allowed}") from None

        host = (from_host or "").strip()
        if host and not _HOST.match(host):
            raise DataError(f"{where} from_host: {host!r} is not a host name or address")
        if isinstance(user_phone, str):
            if user_phone.strip().lower() not in ("", "yes", "no"):
                raise DataError(f"{where} user_phone: {user_phone!r} is not yes or no")
            user_phone = user_phone.strip().lower() == "yes"
        return cls(header=choice(CallerIdHeader, header, "caller_id_header"),
                   format=choice(CallerIdFormat, format, "caller_id_format"),
                   from_user=choice(FromUser, from_user, "from_user"), from_host=host,
                   user_phone=bool(user_phone), display=choice(CallerDisplay, display, "caller_display"))

    @classmethod
    def from_redis(cls, fields: dict[str, str], where: str) -> "CallerIdShape":
        """The shaping of a trunk hash (fields missing = the default).

        Raises:
            DataError: a malformed field, naming ``where``.
        """
        return cls.build(fields.get("caller_id_header"), fields.get("caller_id_format"), fields.get("from_user"),
                         fields.get("from_host"), fields.get("user_phone"), fields.get("caller_display"), where)
