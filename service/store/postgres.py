"""The shared store: PostgreSQL through an asyncpg pool, for several replicas.

Statements arrive with ``?`` placeholders (see ``sql.py``) and are rewritten to
asyncpg's ``$1..$n`` here. Exclusive transactions (migrations) take a
transaction-scoped advisory lock, so replicas starting together migrate one at a time.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from service.store.base import Adapter, Executor, Params, Row
from service.store.sql import DriverErrors, SqlStore

POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 5
CONNECT_TIMEOUT_S = 10.0
# Any fixed 64-bit number, the same in every process: the advisory lock guarding migrations.
MIGRATION_LOCK_ID = 0x5357_5943_4844  # "SWYCHD"

# OSError: connection refused, DNS failure, timeouts (TimeoutError is an OSError).
_ERRORS = DriverErrors(
    errors=(asyncpg.PostgresError, asyncpg.InterfaceError, OSError),
    is_duplicate=lambda exc: isinstance(exc, asyncpg.UniqueViolationError),
)


@functools.lru_cache(maxsize=256)
def to_numbered(sql: str) -> str:
    """``?`` placeholders -> ``$1..$n``, leaving quoted literals and identifiers alone."""
    out: list[str] = []
    quote: str | None = None
    n = 0
    for char in sql:
        if quote is not None:
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
        elif char == "?":
            n += 1
            out.append(f"${n}")
            continue
        out.append(char)
    return "".join(out)


def _rowcount(status: str) -> int:
    # asyncpg returns the command tag, e.g. "UPDATE 1" or "INSERT 0 3".
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _Executor:
    """Statements on a pool (each on any free connection) or on one pinned connection."""

    def __init__(self, target: Any) -> None:
        self._target: Any = target  # asyncpg.Pool or asyncpg.Connection: the same query methods

    async def execute(self, sql: str, params: Params = ()) -> int:
        return _rowcount(await self._target.execute(to_numbered(sql), *params))

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        return list(await self._target.fetch(to_numbered(sql), *params))

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        await self._target.executemany(to_numbered(sql), rows)


class _PostgresAdapter(_Executor):
    def __init__(self, pool: Any) -> None:
        super().__init__(pool)
        self._pool: Any = pool

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        async with self.transaction() as tx:
            await tx.execute_many(sql, rows)

    @asynccontextmanager
    async def transaction(self, *, exclusive: bool = False) -> AsyncIterator[Executor]:
        async with self._pool.acquire() as conn, conn.transaction():
            if exclusive:
                # Released at commit or rollback: no way to leak it on a failed migration.
                await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
            yield _Executor(conn)

    async def close(self) -> None:
        await self._pool.close()


class PostgresStore(SqlStore):
    """A store in a PostgreSQL database; ``dsn`` is a ``postgresql://`` (or ``postgres://``) URL."""

    FLOOR_SQL = "FLOOR({})"  # CAST would round

    def __init__(self, dsn: str) -> None:
        super().__init__(_ERRORS)
        self._dsn = dsn

    def __repr__(self) -> str:
        return "PostgresStore(...)"  # the DSN may hold a password

    async def _connect(self) -> Adapter:
        pool = await asyncpg.create_pool(
            self._dsn, min_size=POOL_MIN_SIZE, max_size=POOL_MAX_SIZE, timeout=CONNECT_TIMEOUT_S
        )
        return _PostgresAdapter(pool)
