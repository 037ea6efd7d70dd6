"""An account (``edge:account:{name}``): the optional grouping of trunks, agents, DIDs and routes
of one customer or team, with limits of its own (docs/identity.md#accounts).

A trunk or agent names its account in its own hash (field ``account``); a DID belongs to its
trunk's account, a route entry to its trunk's.  An agent terminates only over trunks of its own
account, or over route entries marked ``shared``; a deployment that names no account has every
trunk and agent in the one unnamed account, as before accounts existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from routing.tables import keys
from routing.tables.model.fields import DataError, _decimal, _float, _int, _num, check_name

__all__ = ["Account", "check_account", "same_account", "parse_account_ref"]


@dataclass(frozen=True, slots=True)
class Account:
    """One customer's or team's limits over all its trunks and agents.

    Attributes:
        name: unique account name (1-63 of ``A-Za-z0-9_.-``, as trunks).
        max_calls: concurrent calls of the account, both directions, all its trunks and agents;
            None = unlimited (still counted).
        max_cps: new calls per second of the account (token bucket, both directions); None = unlimited.
        daily_spend_cap: highest spend per UTC day (currency units) of the account's termination
            calls; once ``edge:account-spend:{name}:{day}`` reaches it, its agents place no new
            call; None = no cap.
    """

    name: str
    max_calls: int | None = None
    max_cps: float | None = None
    daily_spend_cap: Decimal | None = None

    def to_redis(self) -> dict[str, str]:
        """Fields of ``edge:account:{name}`` (empty string = unset)."""
        return {
            "max_calls": "" if self.max_calls is None else str(self.max_calls),
            "max_cps": "" if self.max_cps is None else _num(self.max_cps),
            "daily_spend_cap": "" if self.daily_spend_cap is None else str(self.daily_spend_cap),
        }

    @classmethod
    def from_redis(cls, name: str, fields: dict[str, str]) -> "Account":
        """Parse ``edge:account:{name}``.

        Raises:
            DataError: a malformed field, naming the key.
        """
        where = keys.account(name)
        return cls(
            name=name,
            max_calls=_int(fields.get("max_calls"), f"{where} max_calls"),
            max_cps=_float(fields.get("max_cps"), f"{where} max_cps"),
            daily_spend_cap=_decimal(fields.get("daily_spend_cap"), f"{where} daily_spend_cap"),
        )


def check_account(account: Account) -> Account:
    """Validate an account; return it as the call path reads it back from redis.

    Raises:
        DataError: bad name, ``max_calls`` < 0, ``max_cps`` <= 0, a negative or non-decimal cap.
    """
    name = check_name(account.name, "account")
    if account.max_calls is not None and (isinstance(account.max_calls, bool) or not isinstance(account.max_calls, int)):
        raise DataError(f"account {name!r} max_calls: expected an integer, got {account.max_calls!r}")
    return Account.from_redis(name, account.to_redis())


def same_account(trunk_account: str, agent_account: str) -> bool:
    """Whether an agent of ``agent_account`` may use a trunk of ``trunk_account`` without a shared
    route entry: the same account, the unnamed one ("") included."""
    return trunk_account == agent_account


def parse_account_ref(value: str | None, where: str) -> str:
    """The ``account`` field of a trunk or agent: "" (none) or an account name.

    Raises:
        DataError: not a valid name, naming ``where``.
    """
    value = (value or "").strip()
    if value:
        try:
            check_name(value, "account")
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
    return value
