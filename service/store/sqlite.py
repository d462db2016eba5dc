"""The embedded store: one SQLite file (no server), through aiosqlite.

One long-lived connection in WAL mode. Statements from concurrent coroutines are
serialised by a lock, so an open transaction never picks up another task's writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from service.store.base import Adapter, Executor, Params, Row
from service.store.sql import DriverErrors, SqlStore

BUSY_TIMEOUT_MS = 5000

_UNIQUE_FAILURES = ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")


def _is_duplicate(exc: BaseException) -> bool:
    # IntegrityError also covers NOT NULL and CHECK failures, which are not "already exists".
    return isinstance(exc, sqlite3.IntegrityError) and exc.sqlite_errorname in _UNIQUE_FAILURES


# OSError: the database directory cannot be created or the file opened.
_ERRORS = DriverErrors(errors=(sqlite3.Error, OSError), is_duplicate=_is_duplicate)


class _Executor:
    """Statements on the connection, for a caller that already holds the lock."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        async with self._conn.execute(sql, params) as cursor:
            return cursor.rowcount

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        return list(await self._conn.execute_fetchall(sql, params))

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        await self._conn.executemany(sql, rows)


class _SqliteAdapter:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._inner = _Executor(conn)
        self._lock = asyncio.Lock()

    async def execute(self, sql: str, params: Params = ()) -> int:
        async with self._lock:
            return await self._inner.execute(sql, params)

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._lock:
            return await self._inner.fetch(sql, params)

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        async with self.transaction() as tx:
            await tx.execute_many(sql, rows)

    @asynccontextmanager
    async def transaction(self, *, exclusive: bool = False) -> AsyncIterator[Executor]:
        # IMMEDIATE takes the database's write lock up front, which already excludes every
        # other writer in any process: `exclusive` needs nothing more here.
        async with self._lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                yield self._inner
            except BaseException:
                # Unconditional, and queued behind whatever already went to the connection's
                # thread: a cancelled BEGIN still runs there. "No transaction is active" is
                # fine (BEGIN failed, or SQLite already rolled back by itself).
                with contextlib.suppress(sqlite3.OperationalError):
                    await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def close(self) -> None:
        await self._conn.close()


class SqliteStore(SqlStore):
    """A store in one SQLite file (``":memory:"``: a private in-memory database, for tests)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(_ERRORS)
        self.path = str(path)

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    async def _connect(self) -> Adapter:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; the adapter issues BEGIN/COMMIT itself.
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            # WAL: readers in other processes (a replica, the sqlite3 shell) don't block the writer.
            # synchronous=NORMAL is durable in WAL mode except for the last commits on power loss.
            await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            await _switch_to_wal(conn)
            await conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            await conn.close()
            raise
        return _SqliteAdapter(conn)


async def _switch_to_wal(conn: aiosqlite.Connection) -> None:
    """``PRAGMA journal_mode=WAL``, retried: while another connection is switching the same file,
    SQLite answers "database is locked" at once instead of honouring busy_timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.02)
