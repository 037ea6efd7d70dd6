"""routing.tables.admin.accounts against a real redis: the account round trip, the references every trunk,
agent and DID write checks (an account must exist, a DID binds only within one account, a move that
would split a DID is refused), removal refused while in use; nothing half-written on a refusal."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
import redis

from routing.tables import admin, keys
from routing.tables.model import Account, DataError, Did
from routing.tables.store import RedisStore
from tests.unit.tables.samples import make_agent, make_trunk, version


def test_account_round_trip_and_topology(redis_client: redis.Redis) -> None:
    written = admin.put_account(redis_client, Account("acme", 5, 2.5, Decimal("12.50")))
    assert redis_client.hgetall(keys.account("acme")) == {"max_calls": "5", "max_cps": "2.5", "daily_spend_cap": "12.50"}
    assert admin.get_account(redis_client, "acme") == written == admin.list_accounts(redis_client)[0]
    assert RedisStore(redis_client, "n1").topology().accounts == {"acme": written}
    with pytest.raises(DataError, match="already exists"):
        admin.put_account(redis_client, Account("acme"))
    assert admin.put_account(redis_client, Account("acme", 1), replace=True).max_calls == 1
    with pytest.raises(DataError, match="account name 'bad name'"):
        admin.put_account(redis_client, Account("bad name"))


def test_a_trunk_or_agent_names_only_an_existing_account(redis_client: redis.Redis) -> None:
    before = version(redis_client)
    with pytest.raises(DataError, match=r"^trunk 'telnyx' account: no account 'acme' \(edgectl account add acme\)$"):
        admin.put_trunk(redis_client, replace(make_trunk(), account="acme"))
    with pytest.raises(DataError, match=r"^agent 'bot' account: no account 'acme'"):
        admin.put_agent(redis_client, replace(make_agent(), account="acme"))
    assert not redis_client.exists(keys.TRUNKS, keys.AGENTS) and version(redis_client) == before
    admin.put_account(redis_client, Account("acme"))
    assert admin.put_trunk(redis_client, replace(make_trunk(), account="acme")).account == "acme"
    assert redis_client.hget(keys.trunk("telnyx"), "account") == "acme"


def test_a_did_binds_only_an_agent_of_its_trunks_account(redis_client: redis.Redis) -> None:
    admin.put_account(redis_client, Account("acme"))
    admin.put_trunk(redis_client, replace(make_trunk(), account="acme"))
    admin.put_agent(redis_client, make_agent())  # no account
    with pytest.raises(DataError, match=r"agent 'bot' is of account \(none\), trunk 'telnyx' of account acme"):
        admin.put_did(redis_client, Did("+14155550100", "telnyx", "bot"))
    assert not redis_client.exists(keys.did("+14155550100"))
    admin.put_agent(redis_client, replace(make_agent(), account="acme"), replace=True)
    admin.put_did(redis_client, Did("+14155550100", "telnyx", "bot"))


def test_a_move_that_would_split_a_did_and_removing_an_account_in_use_are_refused(redis_client: redis.Redis) -> None:
    admin.put_account(redis_client, Account("acme"))
    admin.put_account(redis_client, Account("globex"))
    admin.put_trunk(redis_client, replace(make_trunk(), account="acme"))
    admin.put_agent(redis_client, replace(make_agent(), account="acme"))
    admin.put_did(redis_client, Did("+14155550100", "telnyx", "bot"))
    with pytest.raises(DataError, match=r"DIDs \+14155550100 of the trunk are bound to agents of another account"):
        admin.put_trunk(redis_client, replace(make_trunk(), account="globex"), replace=True)
    with pytest.raises(DataError, match=r"DIDs \+14155550100 bound to the agent are of trunks of another account"):
        admin.put_agent(redis_client, replace(make_agent(), account="globex"), replace=True)
    assert redis_client.hget(keys.trunk("telnyx"), "account") == "acme"
    with pytest.raises(DataError, match=r"^account 'acme' is still used by trunks telnyx; agents bot; move or remove"):
        admin.remove_account(redis_client, "acme")
    redis_client.zadd(keys.account_lease("globex"), {"n1:c": 1e12})
    admin.remove_account(redis_client, "globex")
    assert not redis_client.exists(keys.account("globex"), keys.account_lease("globex"))
    assert redis_client.smembers(keys.ACCOUNTS) == {"acme"}
    with pytest.raises(DataError, match=r"^no account 'globex'$"):
        admin.remove_account(redis_client, "globex")


def test_a_dids_fallback_agent_is_of_its_trunks_account_too(redis_client: redis.Redis) -> None:
    from routing.tables.model.did import parse_fallback

    admin.put_account(redis_client, Account("acme"))
    admin.put_trunk(redis_client, replace(make_trunk(), account="acme"))
    admin.put_agent(redis_client, replace(make_agent(), account="acme"))
    admin.put_agent(redis_client, make_agent("humans", cidrs=()))  # no account
    fallback = parse_fallback("agent:humans", "test")
    with pytest.raises(DataError, match=r"did \+14155550100: fallback agent 'humans' is of account \(none\)"):
        admin.put_did(redis_client, Did("+14155550100", "telnyx", "bot", fallback))
    assert not redis_client.exists(keys.did("+14155550100"))
