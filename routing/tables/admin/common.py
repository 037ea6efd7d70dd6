"""What every admin write shares: optimistic ``WATCH``/``MULTI``/``EXEC`` transactions that bump
``edge:version``, the reads done under ``WATCH`` (CIDR owners, referencing DIDs and routes), and
the small validators of the ``check_*`` functions.  See :mod:`routing.tables.admin` for the rules."""

from __future__ import annotations

import time
from enum import Enum
from typing import Callable, Iterable, Sequence, TypeVar

import redis
from redis.client import Pipeline

from routing.call.numbers import NumberFormat
from routing.tables import keys
from routing.tables.model import DataError, parse_cidr

__all__ = [
    "MAX_ATTEMPTS", "ConflictError", "Writes", "transaction", "version_seed", "read", "require", "listing",
    "cidr_owners", "check_cidrs_free", "dids_referencing", "routes_referencing", "parse_enum", "check_count",
    "canonical_cidrs", "number_format_dict",
]

#: Attempts of one write before giving up when the watched keys keep changing.
MAX_ATTEMPTS = 20

E = TypeVar("E", bound=Enum)
#: Queues the writes of a transaction on a pipeline in MULTI mode.
Writes = Callable[[Pipeline], None]


class ConflictError(DataError):
    """The keys a write depends on kept changing under concurrent writers."""


def parse_enum(kind: type[E], value: object, where: str) -> E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in kind)
        raise DataError(f"{where}: must be one of {allowed}, got {value!r}") from None


def check_count(value: int | None, where: str, minimum: int = 0) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where}: expected an integer, got {value!r}")
    if value < minimum:
        raise DataError(f"{where}: must be >= {minimum}, got {value}")


def canonical_cidrs(values: Iterable[str], where: str) -> list[str]:
    """Canonical CIDR strings (``10.0.0.1`` -> ``10.0.0.1/32``), duplicates dropped, sorted."""
    return sorted({str(parse_cidr(value, where)) for value in values})


def _check_schema(pipe: Pipeline) -> None:
    found = pipe.get(keys.SCHEMA)
    if found not in (None, keys.SCHEMA_VERSION):
        raise DataError(
            f"{keys.SCHEMA} is {found!r} but this edgectl writes schema {keys.SCHEMA_VERSION}; refusing to write"
        )


def version_seed() -> int:
    """First value of ``edge:version`` on an empty database: the time in µs, so a flushed and
    re-provisioned database never repeats a version that a worker cached before the flush
    (every worker's topology cache is keyed on it, see :mod:`routing.tables.store`)."""
    return time.time_ns() // 1000


def transaction(client: redis.Redis, watch: Sequence[str], prepare: Callable[[Pipeline], Writes]) -> None:
    """Run one optimistic transaction: WATCH, check, MULTI, write, EXEC.

    ``prepare`` runs after ``WATCH`` with the pipeline in immediate mode: it
    reads and checks (it may ``pipe.watch`` more keys), raises
    :class:`DataError` to refuse, or returns the function that queues the writes.
    ``edge:version`` is incremented and ``edge:schema`` set in the same EXEC.

    Raises:
        DataError: whatever ``prepare`` raises; :class:`ConflictError` after
            :data:`MAX_ATTEMPTS` aborted attempts.
    """
    for _ in range(MAX_ATTEMPTS):
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(keys.SCHEMA, *watch)
                _check_schema(pipe)
                writes = prepare(pipe)
                pipe.multi()
                writes(pipe)
                pipe.set(keys.VERSION, version_seed(), nx=True)
                pipe.incr(keys.VERSION)
                pipe.set(keys.SCHEMA, keys.SCHEMA_VERSION)
                pipe.execute()
                return
            except redis.WatchError:
                continue
    raise ConflictError(f"the routing tables kept changing during {MAX_ATTEMPTS} attempts; try again")


def read(client: redis.Redis, queue: Callable[[Pipeline], None]) -> list:
    """One round trip of reads (no transaction)."""
    pipe = client.pipeline(transaction=False)
    queue(pipe)
    return pipe.execute()


def _watch_members(pipe: Pipeline, index: str, key: Callable[[str], str]) -> list[str]:
    """Members of an index set, with the set and every ``key(member)`` watched."""
    pipe.watch(index)
    members = sorted(pipe.smembers(index))
    if members:
        pipe.watch(*(key(m) for m in members))
    return members


def cidr_owners(client: redis.Redis, pipe: Pipeline, skip: tuple[str, str]) -> dict[str, str]:
    """CIDR -> ``"trunk 'x'"``/``"agent 'y'"`` for every trunk and agent but ``skip`` (kind, name).

    Watches both index sets and every CIDR set it reads.
    """
    owners: dict[str, str] = {}
    for kind, index, cidr_key in (("trunk", keys.TRUNKS, keys.trunk_cidrs), ("agent", keys.AGENTS, keys.agent_cidrs)):
        names = [n for n in _watch_members(pipe, index, cidr_key) if (kind, n) != skip]
        rows = read(client, lambda p: [p.smembers(cidr_key(n)) for n in names])
        for name, cidrs in zip(names, rows):
            for cidr in cidrs:
                owners.setdefault(str(parse_cidr(cidr, cidr_key(name))), f"{kind} {name!r}")
    return owners


def check_cidrs_free(owners: dict[str, str], cidrs: Iterable[str], where: str) -> None:
    for cidr in cidrs:
        if cidr in owners:
            raise DataError(f"{where} cidr {cidr}: already belongs to {owners[cidr]}")


def dids_referencing(client: redis.Redis, pipe: Pipeline, field: str, name: str) -> list[str]:
    """DIDs whose ``field`` (``trunk`` or ``agent``) is ``name``; watches every DID read."""
    numbers = _watch_members(pipe, keys.DIDS, keys.did)
    values = read(client, lambda p: [p.hget(keys.did(n), field) for n in numbers])
    return [n for n, value in zip(numbers, values) if value == name]


def routes_referencing(client: redis.Redis, pipe: Pipeline, trunk: str) -> list[str]:
    """Route prefixes offering ``trunk``; watches every route read."""
    prefixes = _watch_members(pipe, keys.ROUTES, keys.route)
    found = read(client, lambda p: [p.hexists(keys.route(prefix), trunk) for prefix in prefixes])
    return [prefix for prefix, present in zip(prefixes, found) if present]


def listing(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def require(pipe: Pipeline, index: str, name: str, what: str) -> None:
    if not pipe.sismember(index, name):
        raise DataError(f"no {what} {name!r}")


def number_format_dict(fmt: NumberFormat) -> dict[str, object]:
    """JSON shape of a trunk's or agent's number format: country_code, national_prefix,
    international_prefix (strings of digits, may be empty), national_length (int, 0 = not fixed)."""
    return {
        "country_code": fmt.country_code,
        "national_prefix": fmt.national_prefix,
        "international_prefix": fmt.international_prefix,
        "national_length": fmt.national_length,
    }
