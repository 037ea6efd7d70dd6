"""Config as code: the whole routing data set as one YAML document (``edgectl export`` / ``apply``).

Document shape (every section optional)::

    version: 1
    accounts: [{name, max_calls, max_cps, daily_spend_cap}]   (exported only when there are accounts)
    trunks:  [{name, direction, max_calls, cidrs, gateways: [{host, port, ...}], ..., username}]
    agents:  [{name, uris, cidrs, max_calls, ...}]
    dids:    [{number, trunk, agent}]
    routes:  [{prefix, trunk, rate: "0.0045", priority}]

Entries carry every field of the dataclasses in :mod:`routing.tables.model`
(converted by :mod:`routing.tables.plain`, so new fields flow through).  Secrets are
write-only: a trunk's ``username`` is exported, its password never is; a
trunk entry may set ``password`` (or ``password_env``: the name of an
environment variable holding it) to change it, otherwise the stored password is
kept.

``apply`` reads the file, validates every entry and the references of the
resulting tables (DID -> trunk/agent of one account, route -> trunk, trunk/agent -> account, one
owner per CIDR and per digest username) before writing anything, computes the differences with
redis, and writes them in one ``MULTI``/``EXEC`` guarded by ``WATCH``
(:func:`routing.tables.admin.transaction`, which also increments ``edge:version``).
Entities absent from the file are kept, unless ``prune`` is set: then every
trunk, agent, DID and route entry of a section present in the file, but
absent from it, is removed.  A section missing from the file is never pruned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import redis
import yaml
from redis.client import Pipeline

from routing.tables import admin, keys
from routing.tables.model import Account, Agent, DataError, Did, RouteEntry, Trunk, check_account, parse_cidr
from routing.tables.model.trunk import upgrade_plain
from routing.tables.plain import from_plain, to_plain
from routing.ops.secrets import SecretBox, SecretError

__all__ = [
    "DOCUMENT_VERSION",
    "SECTIONS",
    "Tables",
    "Desired",
    "Change",
    "Plan",
    "read_tables",
    "export_document",
    "dump_document",
    "parse_document",
    "load_document",
    "plan_changes",
    "apply_document",
]

DOCUMENT_VERSION = 1
SECTIONS = ("trunks", "agents", "dids", "routes", "accounts")
#: write-only trunk fields of the document (never exported)
PASSWORD_FIELDS = ("password", "password_env")
USERNAME_FIELD = "username"


@dataclass
class Tables:
    """The routing tables as stored: entities by key, and each trunk's digest username (no password).

    Attributes:
        trunks: name -> trunk.
        agents: name -> agent.
        dids: E.164 number -> DID.
        routes: (prefix, trunk) -> route entry.
        usernames: trunk name -> digest username, for trunks with credentials.
        tokens: trunk name -> encrypted password token (compared, never printed).
        accounts: name -> account.
    """

    trunks: dict[str, Trunk] = field(default_factory=dict)
    agents: dict[str, Agent] = field(default_factory=dict)
    dids: dict[str, Did] = field(default_factory=dict)
    routes: dict[tuple[str, str], RouteEntry] = field(default_factory=dict)
    usernames: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)


@dataclass
class Desired:
    """A parsed, validated document.

    Attributes:
        tables: the entities of the file (``tokens`` unused).
        sections: the sections present in the file (only these are pruned).
        passwords: trunk name -> plain password set by the file.
        where: entity key (``("trunk", name)``...) -> ``"FILE: trunks[0]"``, for error messages.
    """

    tables: Tables
    sections: frozenset[str]
    passwords: dict[str, str] = field(default_factory=dict)
    where: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """One entity added, changed or removed.

    Attributes:
        action: ``add``, ``change`` or ``remove``.
        kind: ``account``, ``trunk``, ``agent``, ``did`` or ``route``.
        key: the entity's name, number or ``"prefix via trunk"``.
        fields: for a change, (field, old, new) per differing field (dotted for nested
            values: ``number_format.country_code``); a password shows as ``(set)``/``(new)``.
    """

    action: str
    kind: str
    key: str
    fields: tuple[tuple[str, Any, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON shape: action, kind, key, fields [{field, old, new}]."""
        return {
            "action": self.action,
            "kind": self.kind,
            "key": self.key,
            "fields": [{"field": f, "old": o, "new": n} for f, o, n in self.fields],
        }


@dataclass
class Plan:
    """What an apply does: the changes, how many entities stay as they are, and the final tables."""

    changes: list[Change]
    unchanged: int
    final: Tables
    current: Tables

    @property
    def counts(self) -> dict[str, int]:
        """``{"add": n, "change": n, "remove": n, "unchanged": n}``."""
        out = {"add": 0, "change": 0, "remove": 0, "unchanged": self.unchanged}
        for change in self.changes:
            out[change.action] += 1
        return out


# --------------------------------------------------------------------------- reading and exporting


def read_tables(client: redis.Redis) -> Tables:
    """Every trunk, agent, DID and route as the call path sees them, plus digest usernames.

    Raises:
        DataError: a stored entry is malformed (names the key).
    """
    trunks = {t.name: t for t in admin.list_trunks(client)}
    pipe = client.pipeline(transaction=False)
    for name in trunks:
        pipe.hgetall(keys.trunk_auth(name))
    auth = dict(zip(trunks, pipe.execute()))
    return Tables(
        trunks=trunks,
        agents={a.name: a for a in admin.list_agents(client)},
        dids={d.number: d for d in admin.list_dids(client)},
        routes={(r.prefix, r.trunk): r for r in admin.list_routes(client)},
        usernames={n: f["username"] for n, f in auth.items() if f.get("username")},
        tokens={n: f["password"] for n, f in auth.items() if f.get("password")},
        accounts={a.name: a for a in admin.list_accounts(client)},
    )


def _trunk_entry(trunk: Trunk, username: str | None) -> dict[str, Any]:
    entry = to_plain(trunk)
    if username:
        entry[USERNAME_FIELD] = username
    return entry


def export_document(tables: Tables) -> dict[str, Any]:
    """The tables as a document (plain values, sorted by key; passwords never included)."""
    return {
        "version": DOCUMENT_VERSION,
        **({"accounts": [to_plain(a) for _, a in sorted(tables.accounts.items())]} if tables.accounts else {}),
        "trunks": [_trunk_entry(t, tables.usernames.get(n)) for n, t in sorted(tables.trunks.items())],
        "agents": [to_plain(a) for _, a in sorted(tables.agents.items())],
        "dids": [to_plain(d) for _, d in sorted(tables.dids.items())],
        "routes": [to_plain(r) for _, r in sorted(tables.routes.items())],
    }


HEADER = (
    "# byoc-edge routing tables (edgectl export).  Apply with: edgectl apply FILE [--dry-run] [--prune]\n"
    "# Trunk passwords are write-only and never exported: add `password:` (or `password_env: VAR`)\n"
    "# to a trunk to set one; without it the stored password is kept.\n"
)


def dump_document(document: dict[str, Any]) -> str:
    """YAML text of a document, with a header comment; field order kept."""
    return HEADER + yaml.safe_dump(document, sort_keys=False, default_flow_style=False, allow_unicode=True)


# --------------------------------------------------------------------------- parsing and validation


def _checked(where: str, check: Callable[[], Any]) -> Any:
    try:
        return check()
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None


def parse_document(data: Any, path: str, environ: dict[str, str] | None = None) -> Desired:
    """Parse and validate a document (already read from YAML) entry by entry.

    Args:
        data: the YAML document.
        path: file name for the messages.
        environ: where ``password_env`` variables are looked up (default ``os.environ``).

    Raises:
        DataError: the first problem, one line starting with ``path`` and naming the
            entry and field (``routes.yaml: trunks[1] (carrier-b).max_calls: expected an integer``).
    """
    environ = os.environ if environ is None else environ
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping with {', '.join(SECTIONS)}")
    unknown = sorted(set(map(str, data)) - {*SECTIONS, "version"})
    if unknown:
        raise DataError(f"{path}: unknown section {unknown[0]!r} (known: version, {', '.join(SECTIONS)})")
    if data.get("version", DOCUMENT_VERSION) != DOCUMENT_VERSION:
        raise DataError(f"{path}: version must be {DOCUMENT_VERSION}, got {data.get('version')!r}")
    for section in SECTIONS:
        if section in data and not isinstance(data[section] or [], list):
            raise DataError(f"{path}: {section}: expected a list")
    desired = Desired(tables=Tables(), sections=frozenset(s for s in SECTIONS if s in data))
    tables = desired.tables

    def remember(kind: str, key: str, where: str) -> None:
        if (kind, key) in desired.where:
            raise DataError(f"{where}: {kind} {key} listed twice (also {desired.where[(kind, key)]})")
        desired.where[(kind, key)] = where

    for i, raw in enumerate(data.get("trunks") or []):
        where = f"{path}: trunks[{i}]"
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            where += f" ({raw['name']})"
        entry = dict(raw) if isinstance(raw, dict) else raw
        secrets = {k: entry.pop(k) for k in (USERNAME_FIELD, *PASSWORD_FIELDS) if isinstance(entry, dict) and k in entry}
        entry = upgrade_plain(entry, where) if isinstance(entry, dict) else entry  # deprecated keys
        trunk = _checked(where, lambda: admin.check_trunk(from_plain(Trunk, entry, "trunk")))
        ca = getattr(trunk, "tls_ca", "")
        if ca and not os.path.isfile(ca):
            raise DataError(f"{where}.tls_ca: {ca} is not a file")  # as edgectl trunk add --tls-ca
        remember("trunk", trunk.name, where)
        tables.trunks[trunk.name] = trunk
        username = secrets.get(USERNAME_FIELD)
        if username is not None:
            if not isinstance(username, str) or not admin.USERNAME_PATTERN.fullmatch(username):
                raise DataError(f"{where}.username: use 1-64 letters, digits or -_.!~*'()&=+$,;?/")
            tables.usernames[trunk.name] = username
        if "password" in secrets and "password_env" in secrets:
            raise DataError(f"{where}: set password or password_env, not both")
        password = secrets.get("password")
        if "password_env" in secrets:
            var = secrets["password_env"]
            if not isinstance(var, str) or var not in environ:
                raise DataError(f"{where}.password_env: environment variable {var!r} is not set")
            password = environ[var]
        if password is not None:
            if not isinstance(password, str) or not password:
                raise DataError(f"{where}.password: must be a non-empty string")
            if username is None:
                raise DataError(f"{where}.password: needs a username")
            desired.passwords[trunk.name] = password

    for i, raw in enumerate(data.get("agents") or []):
        where = f"{path}: agents[{i}]"
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            where += f" ({raw['name']})"
        agent = _checked(where, lambda: admin.check_agent(from_plain(Agent, raw, "agent")))
        remember("agent", agent.name, where)
        tables.agents[agent.name] = agent

    for i, raw in enumerate(data.get("dids") or []):
        where = f"{path}: dids[{i}]"
        if isinstance(raw, dict) and "number" in raw:
            where += f" ({raw['number']})"
        did = _checked(where, lambda: admin.check_did(from_plain(Did, raw, "did")))
        remember("did", did.number, where)
        tables.dids[did.number] = did

    for i, raw in enumerate(data.get("accounts") or []):
        where = f"{path}: accounts[{i}]" + (f" ({raw['name']})" if isinstance(raw, dict) and isinstance(raw.get("name"), str) else "")
        account = _checked(where, lambda: check_account(from_plain(Account, raw, "account")))
        remember("account", account.name, where)
        tables.accounts[account.name] = account

    for i, raw in enumerate(data.get("routes") or []):
        where = f"{path}: routes[{i}]"
        if isinstance(raw, dict) and "prefix" in raw:
            where += f" ({raw['prefix']} via {raw.get('trunk')})"
        entry = _checked(where, lambda: admin.check_route(from_plain(RouteEntry, raw, "route")))
        remember("route", f"{entry.prefix} via {entry.trunk}", where)
        tables.routes[(entry.prefix, entry.trunk)] = entry
    return desired


def load_document(path: str, environ: dict[str, str] | None = None) -> Desired:
    """Read and parse a YAML file (see :func:`parse_document`).

    Raises:
        DataError: unreadable file, YAML syntax error (with line), or invalid content.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise DataError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DataError(f"{path}:{line}: YAML error: {problem}") from None
    return parse_document(data, path, environ)


# --------------------------------------------------------------------------- diff


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys; lists and scalars as leaves."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: value}


def _field_diff(old: Any, new: Any) -> tuple[tuple[str, Any, Any], ...]:
    a, b = _flat(to_plain(old)), _flat(to_plain(new))
    return tuple((k, a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k))


def _same_password(box: SecretBox | None, token: str | None, password: str) -> bool:
    if box is None or token is None:
        return False
    try:
        return box.decrypt(token) == password
    except SecretError:
        return False


def plan_changes(current: Tables, desired: Desired, prune: bool = False, box: SecretBox | None = None) -> Plan:
    """Compare the stored tables with a document and check the resulting tables.

    Args:
        current: what redis holds (:func:`read_tables`).
        desired: the parsed document.
        prune: remove entities of the document's sections that it does not list.
        box: decrypts stored passwords to tell whether a password in the file is new
            (None: a password in the file always counts as a change).

    Raises:
        DataError: the resulting tables would be inconsistent (a DID or route naming a
            trunk or agent that does not exist, a CIDR or a digest username claimed twice,
            a password with no username); the message names the file entry.
    """
    want = desired.tables
    changes: list[Change] = []
    unchanged = 0
    final = Tables(
        trunks=dict(current.trunks), agents=dict(current.agents), dids=dict(current.dids),
        routes=dict(current.routes), usernames=dict(current.usernames), accounts=dict(current.accounts),
    )
    specs = (
        ("accounts", "account", current.accounts, want.accounts, final.accounts, str),
        ("trunks", "trunk", current.trunks, want.trunks, final.trunks, str),
        ("agents", "agent", current.agents, want.agents, final.agents, str),
        ("dids", "did", current.dids, want.dids, final.dids, str),
        ("routes", "route", current.routes, want.routes, final.routes, lambda k: f"{k[0]} via {k[1]}"),
    )
    for section, kind, have, wanted, result, label in specs:
        for key, value in wanted.items():
            fields: tuple[tuple[str, Any, Any], ...] = ()
            if kind == "trunk":
                old_user, new_user = current.usernames.get(key), want.usernames.get(key, current.usernames.get(key))
                if old_user != new_user:
                    fields += (("username", old_user, new_user),)
                password = desired.passwords.get(key)
                if password is not None and not _same_password(box, current.tokens.get(key), password):
                    fields += (("password", "(set)" if key in current.tokens else None, "(new)"),)
                if new_user:
                    final.usernames[key] = new_user
            if key not in have:
                changes.append(Change("add", kind, label(key), fields))
            else:
                fields = _field_diff(have[key], value) + fields
                if fields:
                    changes.append(Change("change", kind, label(key), fields))
                else:
                    unchanged += 1
            result[key] = value
        for key in have:
            if key in wanted:
                continue
            if prune and section in desired.sections:
                changes.append(Change("remove", kind, label(key)))
                del result[key]
                if kind == "trunk":
                    final.usernames.pop(key, None)
            else:
                unchanged += 1
    _check_final(final, desired, current)
    return Plan(changes=changes, unchanged=unchanged, final=final, current=current)


def _check_final(final: Tables, desired: Desired, current: Tables) -> None:
    def where(kind: str, key: str) -> str:
        return desired.where.get((kind, key)) or f"{kind} {key} (in redis, not in the file)"

    for number, did in sorted(final.dids.items()):
        if did.trunk not in final.trunks:
            raise DataError(f"{where('did', number)}: no trunk {did.trunk!r} in the file or in redis")
        if did.agent not in final.agents:
            raise DataError(f"{where('did', number)}: no agent {did.agent!r} in the file or in redis")
    for kind, entities in (("trunk", final.trunks), ("agent", final.agents)):
        for name, entity in sorted(entities.items()):
            if entity.account and entity.account not in final.accounts:
                raise DataError(f"{where(kind, name)}: no account {entity.account!r} in the file or in redis")
    for number, did in sorted(final.dids.items()):
        for name in (did.agent, *(s.value for s in did.fallback if s.kind.value == "agent" and s.value in final.agents)):
            trunk_account, agent_account = final.trunks[did.trunk].account, final.agents[name].account
            if trunk_account != agent_account:
                raise DataError(f"{where('did', number)}: agent {name!r} is of account {agent_account or '(none)'}, "
                                f"trunk {did.trunk!r} of account {trunk_account or '(none)'}")
    for (prefix, trunk), _ in sorted(final.routes.items()):
        if trunk not in final.trunks:
            raise DataError(f"{where('route', f'{prefix} via {trunk}')}: no trunk {trunk!r} in the file or in redis")
    owners: dict[str, str] = {}
    for kind, entities in (("trunk", final.trunks), ("agent", final.agents)):
        for name, entity in sorted(entities.items()):
            for cidr in entity.cidrs:
                canonical = str(parse_cidr(cidr))
                if canonical in owners:
                    raise DataError(f"{where(kind, name)}: cidr {canonical} already belongs to {owners[canonical]}")
                owners[canonical] = f"{kind} {name!r}"
    contacts: dict[str, str] = {}
    for name, trunk in sorted(final.trunks.items()):
        contact = trunk.register.contact_user if trunk.register is not None else None
        if contact in contacts:
            raise DataError(f"{where('trunk', name)}: register contact {contact!r} already used by trunk {contacts[contact]!r}")
        if contact:
            contacts[contact] = name
    users: dict[str, str] = {}
    for name, username in sorted(final.usernames.items()):
        if username in users:
            raise DataError(f"{where('trunk', name)}: username {username!r} already used by trunk {users[username]!r}")
        users[username] = name
    for name, username in desired.tables.usernames.items():
        if name not in desired.passwords and name not in current.tokens:
            raise DataError(f"{where('trunk', name)}: username {username!r} needs a password (none stored yet)")


# --------------------------------------------------------------------------- apply


def _watched(client: redis.Redis, desired: Desired) -> list[str]:
    names = desired.tables
    trunks = set(client.smembers(keys.TRUNKS)) | set(names.trunks)
    agents = set(client.smembers(keys.AGENTS)) | set(names.agents)
    dids = set(client.smembers(keys.DIDS)) | set(names.dids)
    prefixes = set(client.smembers(keys.ROUTES)) | {p for p, _ in names.routes}
    out = [keys.VERSION, keys.TRUNKS, keys.AGENTS, keys.DIDS, keys.ROUTES, keys.AUTH_USERS, keys.ACCOUNTS]
    out += [keys.account(n) for n in sorted(set(client.smembers(keys.ACCOUNTS)) | set(names.accounts))]
    for name in sorted(trunks):
        out += [*keys.trunk_keys(name), *keys.trunk_secret_keys(name)]
    for name in sorted(agents):
        out += keys.agent_keys(name)
    out += [keys.did(n) for n in sorted(dids)]
    out += [keys.route(p) for p in sorted(prefixes)]
    return out


def _queue(p: Pipeline, plan: Plan, desired: Desired, box: SecretBox | None) -> None:
    want, current, final = desired.tables, plan.current, plan.final
    for change in plan.changes:  # accounts first: trunks and agents may name them
        if change.kind == "account" and change.action != "remove":
            admin.queue_put_account(p, want.accounts[change.key])
    for change in plan.changes:
        if change.kind == "trunk":
            name = change.key
            if change.action == "remove":
                admin.queue_remove_trunk(p, name, current.usernames.get(name))
                continue
            if change.action == "add" or any(f not in ("username", "password") for f, _, _ in change.fields):
                admin.queue_put_trunk(p, want.trunks[name])
            username = final.usernames.get(name)
            if username and any(f in ("username", "password") for f, _, _ in change.fields):
                if name in desired.passwords:
                    assert box is not None
                    token = box.encrypt(desired.passwords[name])
                else:
                    token = current.tokens[name]
                admin.queue_credentials(p, name, current.usernames.get(name), username, token)
        elif change.kind == "agent":
            if change.action == "remove":
                admin.queue_remove_agent(p, change.key)
            else:
                admin.queue_put_agent(p, want.agents[change.key])
        elif change.kind == "did":
            if change.action == "remove":
                admin.queue_remove_did(p, change.key)
            else:
                admin.queue_put_did(p, want.dids[change.key])
        elif change.kind == "account" and change.action == "remove":
            admin.queue_remove_account(p, change.key)
    for change in plan.changes:
        if change.kind != "route":
            continue
        prefix, _, trunk = change.key.partition(" via ")
        if change.action == "remove":
            last = not any(p_ == prefix for p_, _ in final.routes)
            admin.queue_remove_route(p, prefix, None if last else trunk)
        else:
            admin.queue_put_route(p, want.routes[(prefix, trunk)])


def apply_document(
    client: redis.Redis,
    desired: Desired,
    prune: bool = False,
    dry_run: bool = False,
    box_factory: Callable[[], SecretBox] | None = None,
) -> Plan:
    """Validate a document against redis and write the differences atomically.

    Args:
        client: redis client (``decode_responses=True``).
        desired: from :func:`load_document`.
        prune: also remove entities the document's sections do not list.
        dry_run: compute and return the plan; write nothing.
        box_factory: returns the :class:`SecretBox` for trunk passwords (needed only
            when the document sets or compares a password).

    Returns:
        The plan: the changes made (or that would be made), the unchanged count.

    Raises:
        DataError: invalid document or resulting tables (nothing written);
            :class:`routing.tables.admin.ConflictError` when the tables kept changing meanwhile.
    """
    box = box_factory() if (box_factory is not None and desired.passwords) else None
    if dry_run:
        return plan_changes(read_tables(client), desired, prune, box)
    result: list[Plan] = []

    def prepare(pipe: Pipeline) -> admin.Writes:
        pipe.watch(*_watched(client, desired))
        plan = plan_changes(read_tables(client), desired, prune, box)
        result[:] = [plan]
        if not plan.changes:
            raise _NothingToDo()
        return lambda p: _queue(p, plan, desired, box)

    try:
        admin.transaction(client, [], prepare)
    except _NothingToDo:
        pass
    return result[0]


class _NothingToDo(DataError):
    """No change: the transaction is abandoned (edge:version stays)."""
