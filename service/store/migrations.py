"""Versioned schema migrations, shared by the SQLite and PostgreSQL backends.

``MIGRATIONS`` is append-only: never edit a released entry, add a new version.
The SQL is the subset both databases accept (TEXT, INTEGER, BIGINT, DOUBLE
PRECISION, ``IF NOT EXISTS``). Booleans are INTEGER 0/1; tuples and nested
configs (allowed models, budget, rate limit) are TEXT holding JSON. Times are
unix seconds as DOUBLE PRECISION, so they compare and round-trip identically in
both databases.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from service.store.base import Adapter, StoreError


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: its statements and its row in ``schema_migrations`` commit together."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "virtual keys, teams and the request log",
        (
            """
            CREATE TABLE IF NOT EXISTS virtual_keys (
                id TEXT NOT NULL PRIMARY KEY,
                name TEXT NOT NULL,
                key_hash TEXT NOT NULL,
                key_prefix TEXT NOT NULL,
                description TEXT NOT NULL,
                active INTEGER NOT NULL,
                expires_at DOUBLE PRECISION,
                allowed_models TEXT NOT NULL,
                allowed_providers TEXT NOT NULL,
                budget TEXT,
                rate_limit TEXT,
                team_id TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                revoked_at DOUBLE PRECISION
            )
            """,
            "CREATE UNIQUE INDEX IF NOT EXISTS virtual_keys_key_hash ON virtual_keys (key_hash)",
            "CREATE INDEX IF NOT EXISTS virtual_keys_updated_at ON virtual_keys (updated_at)",
            """
            CREATE TABLE IF NOT EXISTS teams (
                id TEXT NOT NULL PRIMARY KEY,
                name TEXT NOT NULL,
                budget TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS request_logs (
                id TEXT NOT NULL PRIMARY KEY,
                ts DOUBLE PRECISION NOT NULL,
                day TEXT NOT NULL,
                request_type TEXT NOT NULL,
                model_requested TEXT NOT NULL,
                status INTEGER NOT NULL,
                latency_ms BIGINT NOT NULL,
                key_id TEXT,
                team_id TEXT,
                provider TEXT NOT NULL,
                model_served TEXT NOT NULL,
                error_type TEXT,
                attempts_json TEXT NOT NULL,
                prompt_tokens BIGINT NOT NULL,
                completion_tokens BIGINT NOT NULL,
                total_tokens BIGINT NOT NULL,
                cost DOUBLE PRECISION,
                content_json TEXT
            )
            """,
            # The log is paged newest first by (ts, id); budgets sum spend per key and team since a time.
            "CREATE INDEX IF NOT EXISTS request_logs_ts_id ON request_logs (ts, id)",
            "CREATE INDEX IF NOT EXISTS request_logs_key_ts ON request_logs (key_id, ts)",
            "CREATE INDEX IF NOT EXISTS request_logs_team_ts ON request_logs (team_id, ts)",
        ),
    ),
    Migration(
        2,
        "request ids in the request log",
        (
            # Not unique: a caller may reuse its x-request-id (a retry sends the same one).
            "ALTER TABLE request_logs ADD COLUMN request_id TEXT",
            "CREATE INDEX IF NOT EXISTS request_logs_request_id ON request_logs (request_id)",
        ),
    ),
    Migration(
        3,
        "the response cache's hit type and entry id in the request log",
        (
            "ALTER TABLE request_logs ADD COLUMN cache_hit_type TEXT",
            "ALTER TABLE request_logs ADD COLUMN cache_id TEXT",
        ),
    ),
    Migration(
        4,
        "a covering index for the console's usage overview",
        (
            # Every column the overview's two GROUP BYs read, after ts: the range is then an
            # index-only scan, never a visit to the wide rows (prompts, attempts). 30 days of a
            # 100,000-entry SQLite log: ~0.65 s without it, ~0.35 s with it (bench/console_overview.py).
            "CREATE INDEX IF NOT EXISTS request_logs_overview ON request_logs (ts, status, cost, "
            "total_tokens, prompt_tokens, completion_tokens, key_id, team_id, provider, model_served, "
            "model_requested)",
        ),
    ),
)

LATEST_VERSION = max(m.version for m in MIGRATIONS)

_CREATE_VERSIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER NOT NULL PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
)
"""


async def migrate(db: Adapter, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply the pending migrations, each in its own transaction; return the versions applied.

    Every transaction is ``exclusive`` (serialised across processes by the backend)
    and re-reads ``schema_migrations`` under that lock, so replicas starting at the
    same time apply each version exactly once.
    """
    async with db.transaction(exclusive=True) as tx:
        await tx.execute(_CREATE_VERSIONS)
        applied = {int(row[0]) for row in await tx.fetch("SELECT version FROM schema_migrations")}
    known = max((m.version for m in migrations), default=0)
    if applied and max(applied) > known:
        raise StoreError(
            f"the database schema is at version {max(applied)}, newer than this Switchyard knows "
            f"({known}): upgrade Switchyard"
        )
    done: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in applied:
            continue
        async with db.transaction(exclusive=True) as tx:
            rows = await tx.fetch("SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,))
            if rows:  # another process applied it while we waited for the lock
                continue
            for statement in migration.statements:
                await tx.execute(statement)
            await tx.execute(
                "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.description, time.time()),
            )
        done.append(migration.version)
    return done
