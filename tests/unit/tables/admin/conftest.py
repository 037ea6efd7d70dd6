"""Fixtures of the admin layer's tests."""

from __future__ import annotations

import pytest
import redis

from routing.tables import admin
from tests.unit.tables.samples import make_agent, make_trunk


@pytest.fixture
def peers(redis_client: redis.Redis) -> redis.Redis:
    """A trunk (telnyx) and an agent (bot) for DIDs and routes to name."""
    admin.put_trunk(redis_client, make_trunk())
    admin.put_agent(redis_client, make_agent())
    return redis_client
