"""The ``cdr`` section of the settings: call records in redis, and the durable store they are
drained to (docs/settings.md, docs/operations.md#call-records).

Kept apart from ``routing/ops/settings.py`` (which includes it as ``Settings.cdr``), validated the
same way (unknown keys refused, frozen).  An error names the field, e.g.
``cdr: Value error, cdr.postgres is required when cdr.store is postgres``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import redis

    from routing.ops.settings import Settings
    from routing.tables.cdrsinks import RecordSink
    from routing.tables.cdrstore import CdrStore

__all__ = ["Cdr", "CdrPostgres", "redis_records", "durable_sink"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CdrPostgres(_Model):
    """Where the monitor writes call records when ``cdr.store`` is ``postgres``."""

    dsn: str = Field(
        min_length=1,
        description="libpq connection string or URI of the database (host=db1 dbname=edge user=edge, or "
        "postgresql://edge@db1/edge); a password is better kept in the monitor user's ~/.pgpass",
    )
    table: str = Field(
        "call_records", pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="table of the records (created with its index when missing)",
    )
    connect_timeout_s: int = Field(5, ge=1, le=60, description="give up connecting after this long (s)")


class Cdr(_Model):
    """Call records (docs/operations.md#call-records)."""

    retention_days: int = Field(
        14, ge=1, le=3650,
        description="days a call record stays in redis (about 1 KB each); export older ones with edgectl cdr export",
    )
    stranger_retention_days: int = Field(
        2, ge=1, le=3650,
        description="days the record of a refusal that matched no trunk and no agent (scanners, strangers) stays; "
        "at most retention_days",
    )
    spool_dir: Path | None = Field(
        None, description="where call records wait while redis is unreachable (default <run_dir>/cdr-spool)",
    )
    redis_max_records: int = Field(
        100_000, ge=1, le=100_000_000,
        description="most call records kept in redis (the oldest go first); with a durable store, a record not yet "
        "written to it is never dropped",
    )
    store: Literal["redis", "postgres", "jsonl"] = Field(
        "redis",
        description="where every record is written once: redis only (its window is all there is), postgres, or "
        "jsonl (a file a log shipper tails); the monitor drains redis into it",
    )
    postgres: CdrPostgres | None = Field(None, description="the database, when store is postgres")
    jsonl_path: Path | None = Field(
        None, description="the JSON-lines file, when store is jsonl (default <run_dir>/cdr/records.jsonl)",
    )
    drain_interval_ms: int = Field(
        1000, ge=50, le=60_000,
        description="how often the monitor moves new records from redis to the durable store (ms); also its retry "
        "interval while the store is down (doubled up to 30 s)",
    )
    drain_batch: int = Field(500, ge=1, le=10_000, description="most records written to the durable store at once")

    @model_validator(mode="after")
    def _check(self) -> "Cdr":
        if self.stranger_retention_days > self.retention_days:
            raise ValueError("stranger_retention_days must not exceed retention_days")
        if self.store == "postgres" and self.postgres is None:
            raise ValueError("cdr.postgres is required when cdr.store is postgres (at least postgres.dsn)")
        return self

    @property
    def durable(self) -> bool:
        """True when records are drained to a store other than redis."""
        return self.store != "redis"


def redis_records(settings: "Settings", client: "redis.Redis") -> "CdrStore":
    """The node's call records in redis as ``settings`` keep them: retention, ``redis_max_records``,
    and the node's outbox when a durable store drains them."""
    from routing.tables import keys
    from routing.tables.cdrstore import CdrStore

    c = settings.cdr
    return CdrStore(client, c.retention_days * 86400, c.stranger_retention_days * 86400, c.redis_max_records,
                    keys.cdr_outbox(settings.node) if c.durable else None)


def durable_sink(settings: "Settings") -> "RecordSink | None":
    """The durable store of ``settings`` (:mod:`routing.tables.cdrsinks`), None when ``cdr.store`` is redis."""
    from routing.tables.cdrsinks import JsonlRecords, PostgresRecords

    c = settings.cdr
    if c.store == "postgres" and c.postgres is not None:
        return PostgresRecords(c.postgres.dsn, c.postgres.table, c.postgres.connect_timeout_s)
    if c.store == "jsonl":
        return JsonlRecords(settings.cdr_jsonl_path)
    return None
