"""The ``redis`` section of the settings: where the routing store is (one redis server, or the
master of a Sentinel set) and how strictly admissions are kept across a failover
(docs/settings.md, docs/operations.md#redis-with-sentinel)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from routing.tables.connection import parse_address

__all__ = ["Redis"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _sentinel(value: str) -> str:
    parse_address(value)
    return value


class Redis(_Model):
    """The routing store.  ``manage: true`` makes ``edgectl up`` start a local redis-server.

    With ``sentinels`` the store is the master of a redis Sentinel set (``host``/``port`` are then
    not used): every client of the edge asks the Sentinels for ``master_name`` and follows a
    failover (docs/operations.md#redis-with-sentinel)."""

    host: str = "127.0.0.1"
    port: int = Field(6380, ge=1, le=65535)
    db: int = Field(0, ge=0, le=15)
    password: str | None = None
    manage: bool = True
    timeout_ms: int = Field(200, ge=10, le=5000, description="per-command timeout; redis slower than this -> 503")
    connect_timeout_ms: int = Field(200, ge=10, le=5000)
    sentinels: list[Annotated[str, AfterValidator(_sentinel)]] = Field(
        default_factory=list,
        description="host:port of each redis Sentinel watching the routing store's master; empty = no Sentinel",
    )
    master_name: str = Field(
        "byoc-edge", pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="the master's name in the Sentinels' configuration (sentinel monitor <name> ...)",
    )
    sentinel_password: str | None = Field(None, description="the Sentinels' own password (requirepass), if any")
    strict_admission: bool = Field(
        False,
        description="wait for one replica to acknowledge each admission and each answer's lease extension "
        "(WAIT 1): limits hold across a failover; an admission no replica acknowledged in replica_wait_ms is "
        "refused 503 Routing Store Unavailable",
    )
    replica_wait_ms: int = Field(
        100, ge=1, le=5000, description="with strict_admission: how long an admission waits for a replica (ms)",
    )

    @model_validator(mode="after")
    def _check_sentinels(self) -> "Redis":
        if self.sentinels and self.manage:
            raise ValueError("sentinels: edgectl does not start a Sentinel set; set manage: false")
        if len(set(self.sentinels)) != len(self.sentinels):
            raise ValueError("sentinels: a Sentinel is listed twice")
        return self

    @property
    def sentinel_addresses(self) -> tuple[tuple[str, int], ...]:
        """``(host, port)`` of each Sentinel."""
        return tuple(parse_address(s) for s in self.sentinels)

    def client_args(self) -> dict[str, object]:
        """Where the store is, as keyword arguments of :func:`routing.tables.connection.connect`
        (the timeouts are the caller's)."""
        return dict(host=self.host, port=self.port, db=self.db, password=self.password,
                    sentinels=self.sentinel_addresses, master_name=self.master_name,
                    sentinel_password=self.sentinel_password)
