"""edgectl export/apply (routing.tables.tableset, routing.tables.plain) against a real redis: validation, diff, atomic apply."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import redis
import yaml
from click.testing import CliRunner, Result

from routing.tables import admin, keys, tableset
from routing.cli import main
from routing.tables.model import Agent, DataError, Direction, Trunk
from routing.call.numbers import NumberFormat
from routing.tables.plain import from_plain, to_plain
from routing.ops.secrets import SecretBox, create_key

from .samples import make_agent, make_trunk


def document(**sections: object) -> dict:
    trunk = to_plain(make_trunk())
    agent = to_plain(make_agent())
    base = {
        "version": 1,
        "trunks": [trunk],
        "agents": [agent],
        "dids": [{"number": "+14155550100", "trunk": "telnyx", "agent": "bot"}],
        "routes": [{"prefix": "+1", "trunk": "telnyx", "rate": "0.0045", "priority": 10}],
    }
    base.update(sections)
    return base


def write(tmp_path: Path, data: object, name: str = "tables.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def settings_file(tmp_path: Path, redis_server: tuple[str, int], redis_client: redis.Redis) -> Path:
    host, port = redis_server
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "redis": {"host": host, "port": port}}))
    return path


@pytest.fixture
def edgectl(settings_file: Path):
    runner = CliRunner()

    def run(*args: str, env: dict | None = None) -> Result:
        return runner.invoke(main, ["--settings", str(settings_file), *args], catch_exceptions=False, env=env)

    return run


def snapshot(client: redis.Redis) -> dict:
    """Every key with its content (to prove that nothing was written)."""
    out = {}
    for key in client.keys("*"):
        kind = client.type(key)
        out[key] = {
            "string": client.get, "hash": client.hgetall, "set": client.smembers,
            "list": lambda k: client.lrange(k, 0, -1), "zset": lambda k: client.zrange(k, 0, -1),
        }[kind](key)
    return out


# --------------------------------------------------------------------------- plain values


def test_plain_round_trip_of_every_model_field() -> None:
    trunk = admin.check_trunk(make_trunk(max_cps=2.5, deny_prefixes=("+1900",), trust_identity=False))
    assert from_plain(Trunk, to_plain(trunk), "trunk") == trunk
    plain = to_plain(trunk)
    assert {f.name for f in dataclasses.fields(Trunk)} == set(plain)  # every field, so new fields flow through
    assert plain["gateways"][0] == {"host": "192.0.2.10", "port": 5060, "transport": "udp", "priority": 10,
                                    "weight": 100}
    assert plain["number_format"]["country_code"] == "1"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_calls", "ten", "trunk.max_calls: expected an integer, got 'ten'"),
        ("direction", "sideways", "trunk.direction: must be one of inbound, outbound, both, got 'sideways'"),
        ("cidrs", "192.0.2.0/24", "trunk.cidrs: expected a list"),
        ("trust_identity", "maybe", "trunk.trust_identity: expected true or false"),
        ("colour", "red", "trunk: unknown field 'colour'"),
    ],
)
def test_plain_errors_name_the_field(field: str, value: object, message: str) -> None:
    data = to_plain(make_trunk())
    data[field] = value
    with pytest.raises(DataError) as err:
        from_plain(Trunk, data, "trunk")
    assert str(err.value).startswith(message)


# --------------------------------------------------------------------------- parse and validate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["trunks"][0].update(max_calls=-1), "f.yaml: trunks[0] (telnyx): trunk 'telnyx' max_calls: must be >= 0"),
        (lambda d: d["trunks"][0].update(session_timer_s=60),
         "f.yaml: trunks[0] (telnyx): edge:trunk:telnyx session_timer_s: must be between 90 and 86400 s, got 60"),
        (lambda d: d["trunks"][0]["gateways"][0].update(port="x"), "f.yaml: trunks[0] (telnyx): trunk.gateways[0].port: expected an integer"),
        (lambda d: d["agents"][0].update(uris=["http://x"]), "f.yaml: agents[0] (bot): agent 'bot' uri: not a SIP URI"),
        (lambda d: d["agents"][0].update(number_format={"international_prefix": "+011"}),
         "f.yaml: agents[0] (bot): agent.number_format: international_prefix must be digits, got '+011'"),
        (lambda d: d["agents"][0].update(number_format={"national_length": 15}),
         "f.yaml: agents[0] (bot): agent.number_format: national_length must be between 0 and 14"),
        (lambda d: d["dids"][0].update(number="4155550100"), "f.yaml: dids[0] (4155550100): did '4155550100': not an E.164 number"),
        (lambda d: d["routes"][0].update(rate="cheap"), "f.yaml: routes[0] (+1 via telnyx): route.rate: expected a decimal"),
        (lambda d: d["dids"].append(dict(d["dids"][0])), "f.yaml: dids[1] (+14155550100): did +14155550100 listed twice (also f.yaml: dids[0]"),
        (lambda d: d.update(gateways=[]), "f.yaml: unknown section 'gateways'"),
        (lambda d: d.update(version=2), "f.yaml: version must be 1"),
        (lambda d: d["trunks"][0].update(password="x"), "f.yaml: trunks[0] (telnyx).password: needs a username"),
        (lambda d: d["trunks"][0].update(tls_ca="/nonexistent/ca.pem"), "f.yaml: trunks[0] (telnyx).tls_ca: /nonexistent/ca.pem is not a file"),
    ],
)
def test_invalid_entries_are_named(mutate, message: str) -> None:
    data = document()
    mutate(data)
    with pytest.raises(DataError) as err:
        tableset.parse_document(data, "f.yaml")
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_references_are_checked_against_the_resulting_tables() -> None:
    current = tableset.Tables()
    data = document(dids=[{"number": "+14155550100", "trunk": "telnyx", "agent": "nobody"}])
    with pytest.raises(DataError, match=r"^f.yaml: dids\[0\] \(\+14155550100\): no agent 'nobody' in the file or in redis$"):
        tableset.plan_changes(current, tableset.parse_document(data, "f.yaml"))
    clash = to_plain(make_trunk("other", gateways=()))
    with pytest.raises(DataError, match=r"^f.yaml: trunks\[0\] \(telnyx\): cidr 192.0.2.0/24 already belongs to trunk 'other'$"):
        tableset.plan_changes(current, tableset.parse_document(document(trunks=[to_plain(make_trunk()), clash]), "f.yaml"))


def test_registration_contact_is_unique_and_round_trips() -> None:
    reg = {"registrar": "sip.example.com:5060", "contact_user": "edge0123456789abcdef", "transport": "tcp"}
    one = dict(to_plain(make_trunk("a", cidrs=(), gateways=())), register=reg)
    two = dict(to_plain(make_trunk("b", cidrs=(), gateways=())), register=dict(reg))
    desired = tableset.parse_document({"trunks": [one]}, "f.yaml")
    assert desired.tables.trunks["a"].register.contact_user == "edge0123456789abcdef"
    assert tableset.export_document(desired.tables)["trunks"][0]["register"]["transport"] == "tcp"
    with pytest.raises(DataError, match=r"^f.yaml: trunks\[1\] \(b\): register contact 'edge0123456789abcdef' already used"):
        tableset.plan_changes(tableset.Tables(), tableset.parse_document({"trunks": [one, two]}, "f.yaml"))


def test_a_document_exported_before_forwarded_caller_id_still_applies() -> None:
    """Trunk entries with the deprecated ``diversion``/``transfer_caller_id`` keys (documents exported
    before ``forwarded_caller_id``): read as it; the new key wins; a wrong type names the key."""
    def forwarded(**old: object) -> str:
        entry = {k: v for k, v in to_plain(make_trunk()).items() if k != "forwarded_caller_id"}
        desired = tableset.parse_document(document(trunks=[{**entry, **old}]), "f.yaml")
        return desired.tables.trunks["telnyx"].forwarded_caller_id.value

    assert forwarded(diversion=True, transfer_caller_id="transferee") == "diversion"
    assert forwarded(diversion=False, transfer_caller_id="transferee") == "caller"
    assert forwarded(diversion=True, transfer_caller_id="trunk") == "did"
    assert forwarded(diversion=False, forwarded_caller_id="did") == "did"
    with pytest.raises(DataError, match=r"^f.yaml: trunks\[0\] \(telnyx\).diversion: expected true or false, got 'no'$"):
        forwarded(diversion="no")
    with pytest.raises(DataError, match=r"transfer_caller_id: must be one of transferee, trunk, got 'x'$"):
        forwarded(transfer_caller_id="x")
    assert "diversion" not in tableset.export_document(tableset.parse_document(document(), "f.yaml").tables)["trunks"][0]


# --------------------------------------------------------------------------- diff


def test_diff_lists_added_changed_removed_per_field(redis_client: redis.Redis) -> None:
    admin.put_trunk(redis_client, make_trunk())
    admin.put_trunk(redis_client, make_trunk("old", cidrs=("198.18.0.0/24",), gateways=()))
    admin.put_agent(redis_client, make_agent())
    data = document(routes=[])
    data["trunks"][0]["max_calls"] = 40
    data["trunks"][0]["number_format"]["country_code"] = "44"
    plan = tableset.plan_changes(tableset.read_tables(redis_client), tableset.parse_document(data, "f.yaml"), prune=True)
    got = {(c.action, c.kind, c.key): c.fields for c in plan.changes}
    assert got == {
        ("change", "trunk", "telnyx"): (("max_calls", 20, 40), ("number_format.country_code", "1", "44")),
        ("remove", "trunk", "old"): (),
        ("add", "did", "+14155550100"): (),
    }
    assert plan.counts == {"add": 1, "change": 1, "remove": 1, "unchanged": 1}
    # without --prune the trunk missing from the file is kept
    plan = tableset.plan_changes(tableset.read_tables(redis_client), tableset.parse_document(data, "f.yaml"))
    assert not [c for c in plan.changes if c.action == "remove"]


def test_agent_number_format_is_applied_diffed_and_exported(redis_client: redis.Redis) -> None:
    data = document()
    data["agents"][0]["number_format"] = {"country_code": "1", "international_prefix": "011", "national_length": 10}
    tableset.apply_document(redis_client, tableset.parse_document(data, "f.yaml"))
    nanp = NumberFormat(country_code="1", international_prefix="011", national_length=10)
    assert admin.get_agent(redis_client, "bot").number_format == nanp  # type: ignore[union-attr]
    exported = tableset.export_document(tableset.read_tables(redis_client))
    assert exported["agents"][0]["number_format"] == {"country_code": "1", "national_prefix": "",
                                                      "international_prefix": "011", "national_length": 10}
    data["agents"][0]["number_format"]["international_prefix"] = "00"
    plan = tableset.plan_changes(tableset.read_tables(redis_client), tableset.parse_document(data, "f.yaml"))
    assert [(c.action, c.kind, c.key, c.fields) for c in plan.changes] == [
        ("change", "agent", "bot", (("number_format.international_prefix", "011", "00"),))]


def test_section_missing_from_the_file_is_never_pruned(redis_client: redis.Redis) -> None:
    admin.put_trunk(redis_client, make_trunk())
    admin.put_agent(redis_client, make_agent())
    data = {"agents": [to_plain(make_agent())]}
    plan = tableset.plan_changes(tableset.read_tables(redis_client), tableset.parse_document(data, "f.yaml"), prune=True)
    assert plan.changes == []


# --------------------------------------------------------------------------- apply


def test_apply_writes_everything_in_one_version_bump(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin.common, "version_seed", lambda: 0)  # an empty database starts from the clock; here from 0
    plan = tableset.apply_document(redis_client, tableset.parse_document(document(), "f.yaml"))
    assert plan.counts["add"] == 4
    assert redis_client.get(keys.VERSION) == "1"
    assert admin.get_trunk(redis_client, "telnyx") == admin.check_trunk(make_trunk())
    assert [r.trunk for r in admin.list_routes(redis_client)] == ["telnyx"]
    # the same file again changes nothing and does not bump the version
    plan = tableset.apply_document(redis_client, tableset.parse_document(document(), "f.yaml"))
    assert plan.changes == [] and redis_client.get(keys.VERSION) == "1"


def test_prune_removes_route_entries_and_empty_prefixes(redis_client: redis.Redis) -> None:
    tableset.apply_document(redis_client, tableset.parse_document(document(), "f.yaml"))
    data = document(routes=[])
    tableset.apply_document(redis_client, tableset.parse_document(data, "f.yaml"), prune=True)
    assert not redis_client.exists(keys.route("+1"))
    assert redis_client.smembers(keys.ROUTES) == set()


def test_export_apply_round_trip_is_a_no_op(redis_client: redis.Redis, tmp_path: Path) -> None:
    tableset.apply_document(redis_client, tableset.parse_document(document(), "f.yaml"))
    admin.put_agent(redis_client, make_agent("b2", cidrs=(), max_calls=None, deny_prefixes=("+1900",)))
    text = tableset.dump_document(tableset.export_document(tableset.read_tables(redis_client)))
    (tmp_path / "x.yaml").write_text(text)
    before = snapshot(redis_client)
    plan = tableset.apply_document(redis_client, tableset.load_document(str(tmp_path / "x.yaml")), prune=True)
    assert plan.changes == []
    assert snapshot(redis_client) == before


def test_passwords_are_write_only(redis_client: redis.Redis, tmp_path: Path) -> None:
    create_key(tmp_path / "k")
    box = SecretBox(tmp_path / "k")
    data = document()
    data["trunks"][0].update(username="pbx", password="s3cret")
    tableset.apply_document(redis_client, tableset.parse_document(data, "f.yaml"), box_factory=lambda: box)
    token = redis_client.hget(keys.trunk_auth("telnyx"), "password")
    assert box.decrypt(token) == "s3cret"
    assert redis_client.hget(keys.AUTH_USERS, "pbx") == "telnyx"
    text = tableset.dump_document(tableset.export_document(tableset.read_tables(redis_client)))
    assert "s3cret" not in text and token not in text and "username: pbx" in text
    # the export applied back keeps the stored password; the same password again is no change
    exported = tableset.parse_document(yaml.safe_load(text), "x.yaml")
    assert tableset.apply_document(redis_client, exported).changes == []
    assert tableset.apply_document(redis_client, tableset.parse_document(data, "f.yaml"),
                                   box_factory=lambda: box).changes == []
    assert redis_client.hget(keys.trunk_auth("telnyx"), "password") == token
    # a new password (from the environment) is a change
    data["trunks"][0].pop("password")
    data["trunks"][0]["password_env"] = "TRUNK_PW"
    plan = tableset.apply_document(redis_client, tableset.parse_document(data, "f.yaml", {"TRUNK_PW": "n3w"}),
                                   box_factory=lambda: box)
    assert [f[0] for f in plan.changes[0].fields] == ["password"]
    assert box.decrypt(redis_client.hget(keys.trunk_auth("telnyx"), "password")) == "n3w"


def test_username_without_any_password_is_refused(redis_client: redis.Redis) -> None:
    data = document()
    data["trunks"][0]["username"] = "pbx"
    with pytest.raises(DataError, match=r"needs a password \(none stored yet\)"):
        tableset.apply_document(redis_client, tableset.parse_document(data, "f.yaml"))


def test_concurrent_change_aborts_and_retries(redis_client: redis.Redis, monkeypatch) -> None:
    """WATCH guards the apply: a write between the read and EXEC makes it start again."""
    desired = tableset.parse_document(document(), "f.yaml")
    calls = []
    real = tableset.read_tables

    def racing(client):
        calls.append(1)
        if len(calls) == 1:  # someone else writes after our WATCH, before our EXEC
            admin.put_agent(redis_client, Agent(name="intruder", uris=("sip:198.18.0.1",)))
        return real(client)

    monkeypatch.setattr(tableset, "read_tables", racing)
    tableset.apply_document(redis_client, desired)
    assert len(calls) == 2
    assert admin.get_agent(redis_client, "intruder") is not None  # not lost: apply re-read the tables


# --------------------------------------------------------------------------- CLI


def test_cli_dry_run_prints_the_diff_and_writes_nothing(edgectl, redis_client: redis.Redis, tmp_path: Path) -> None:
    before = snapshot(redis_client)
    result = edgectl("apply", str(write(tmp_path, document())), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "+ trunk telnyx" in result.stdout and "+ route +1 via telnyx" in result.stdout
    assert "4 to add, 0 to change, 0 to remove, 0 unchanged" in result.stdout
    assert "dry run: nothing written" in result.stdout
    assert snapshot(redis_client) == before


def test_cli_invalid_file_is_one_line_and_writes_nothing(edgectl, redis_client: redis.Redis, tmp_path: Path) -> None:
    data = document()
    data["routes"][0]["trunk"] = "ghost"
    before = snapshot(redis_client)
    result = edgectl("apply", str(write(tmp_path, data)))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'tables.yaml'}: routes[0] (+1 via ghost): no trunk 'ghost' in the file or in redis"
    ]
    assert snapshot(redis_client) == before
    bad = tmp_path / "bad.yaml"
    bad.write_text("trunks: [\n  - name: x\n")
    result = edgectl("apply", str(bad))
    assert result.exit_code == 1 and "YAML error" in result.stderr and len(result.stderr.splitlines()) == 1


def test_cli_export_then_apply(edgectl, redis_client: redis.Redis, tmp_path: Path) -> None:
    assert edgectl("apply", str(write(tmp_path, document()))).exit_code == 0
    out = tmp_path / "exported.yaml"
    assert edgectl("export", "-o", str(out)).exit_code == 0
    assert yaml.safe_load(out.read_text())["dids"] == [{"number": "+14155550100", "trunk": "telnyx", "agent": "bot", "fallback": []}]
    result = edgectl("apply", str(out), "--prune")
    assert result.exit_code == 0, result.output
    assert "nothing to change" in result.stdout
    data = yaml.safe_load(out.read_text())
    data["trunks"][0]["direction"] = "inbound"
    result = edgectl("apply", str(write(tmp_path, data)), "--json")
    assert result.exit_code == 0, result.output
    assert '"field": "direction"' in result.stdout
    assert admin.get_trunk(redis_client, "telnyx").direction is Direction.INBOUND


# --------------------------------------------------------------------------- accounts


def test_accounts_apply_export_and_are_checked_before_any_write(redis_client: redis.Redis) -> None:
    acme = [{"name": "acme", "max_calls": 4, "max_cps": None, "daily_spend_cap": "10"}]
    owned = document(accounts=acme, trunks=[{**to_plain(make_trunk()), "account": "acme"}],
                     agents=[{**to_plain(make_agent()), "account": "acme"}])
    assert "accounts" not in tableset.export_document(tableset.read_tables(redis_client))  # none: section left out
    split = dict(owned, agents=[to_plain(make_agent())])  # the DID's agent in no account, its trunk in acme
    with pytest.raises(DataError, match=r"dids\[0\] \(\+14155550100\): agent 'bot' is of account \(none\), trunk 'telnyx'"):
        tableset.apply_document(redis_client, tableset.parse_document(split, "f.yaml"))
    with pytest.raises(DataError, match=r"trunks\[0\] \(telnyx\): no account 'acme' in the file or in redis"):
        tableset.apply_document(redis_client, tableset.parse_document(dict(owned, accounts=[]), "f.yaml"))
    assert redis_client.keys("edge:*") == []  # nothing half-applied

    plan = tableset.apply_document(redis_client, tableset.parse_document(owned, "f.yaml"))
    assert plan.counts["add"] == 5
    assert admin.get_account(redis_client, "acme").max_calls == 4  # type: ignore[union-attr]
    assert admin.get_trunk(redis_client, "telnyx").account == "acme"  # type: ignore[union-attr]
    exported = tableset.export_document(tableset.read_tables(redis_client))
    assert exported["accounts"] == [{"name": "acme", "max_calls": 4, "max_cps": None, "daily_spend_cap": "10"}]
    assert tableset.apply_document(redis_client, tableset.parse_document(exported, "f.yaml"), prune=True).changes == []
    with pytest.raises(DataError, match=r"trunk telnyx \(in redis, not in the file\): no account 'acme'"):
        tableset.apply_document(redis_client, tableset.parse_document({"accounts": []}, "f.yaml"), prune=True)
