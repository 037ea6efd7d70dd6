"""Sample trunks and agents, and redis helpers, shared by the tables' tests."""

from __future__ import annotations

import redis

from routing.tables import keys
from routing.tables.model import Agent, Direction, Gateway, Transport, Trunk
from routing.call.numbers import NumberFormat


def make_trunk(name: str = "telnyx", **overrides: object) -> Trunk:
    values: dict[str, object] = dict(
        name=name,
        direction=Direction.BOTH,
        max_calls=20,
        cidrs=("192.0.2.0/24", "198.51.100.7"),
        gateways=(
            Gateway("192.0.2.10", 5060, Transport.UDP, 10, 100),
            Gateway("sip.example.net", 5061, Transport.TCP, 20, 50),
        ),
        number_format=NumberFormat(country_code="1", national_length=10, international_prefix="011"),
    )
    values.update(overrides)
    return Trunk(**values)  # type: ignore[arg-type]


def make_agent(name: str = "bot", **overrides: object) -> Agent:
    values: dict[str, object] = dict(
        name=name,
        uris=("sip:bot@203.0.113.20:5070", "sip:203.0.113.5;transport=tcp"),
        cidrs=("203.0.113.0/28",),
        max_calls=4,
    )
    values.update(overrides)
    return Agent(**values)  # type: ignore[arg-type]


def version(client: redis.Redis) -> int:
    return int(client.get(keys.VERSION) or 0)


def all_keys(client: redis.Redis) -> set[str]:
    return set(client.keys("*"))
