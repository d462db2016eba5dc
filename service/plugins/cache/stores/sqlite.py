"""Entries in one SQLite file on this machine: they survive a restart, no server needed.

Its own file (``cache.sqlite_path``), not the governance store: the cache is rebuilt at will,
its writes are bulky, and the store may be PostgreSQL. Reads go through a small in-memory
front (the most recently used entries), so a hot entry costs a dictionary lookup rather
than a trip to aiosqlite's thread; everything written goes to the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiosqlite

from service.plugins.cache.entries import Entry
from service.plugins.cache.stores.base import CacheStoreError
from service.plugins.cache.stores.memory import MemoryStore

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS cache_entries (
        cache_id TEXT NOT NULL PRIMARY KEY,
        partition TEXT NOT NULL,
        cache_key TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        answer BLOB NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS cache_entries_partition ON cache_entries (partition, cache_key)",
    "CREATE INDEX IF NOT EXISTS cache_entries_expires ON cache_entries (expires_at)",
)
_COLUMNS = "cache_id, partition, cache_key, provider, model, created_at, expires_at, answer"
# Expired rows are deleted every this many writes (reads skip them anyway).
_PURGE_EVERY = 500
FRONT_ENTRIES = 1024


class SqliteStore:
    name = "sqlite"

    def __init__(self, path: str, front_entries: int = FRONT_ENTRIES) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._front = MemoryStore(front_entries)
        self._lock = asyncio.Lock()
        self._writes = 0

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = await aiosqlite.connect(self.path, isolation_level=None)
            await conn.execute("PRAGMA busy_timeout=5000")
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                await conn.execute(statement)
        except (sqlite3.Error, OSError) as exc:
            raise CacheStoreError(f"cannot open the cache database {self.path}: {exc}") from exc
        self._conn = conn

    def _db(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise CacheStoreError("the cache database is not open")
        return self._conn

    async def get(self, cache_id: str, now: float) -> Entry | None:
        entry = await self._front.get(cache_id, now)
        if entry is not None:
            return entry
        try:
            async with self._lock:
                rows = list(
                    await self._db().execute_fetchall(
                        f"SELECT {_COLUMNS} FROM cache_entries WHERE cache_id = ? AND expires_at > ?",
                        (cache_id, now),
                    )
                )
        except sqlite3.Error as exc:
            raise CacheStoreError(str(exc)) from exc
        if not rows:
            return None
        row = rows[0]
        entry = Entry(row[0], row[1], row[2], row[3], row[4], float(row[5]), float(row[6]), bytes(row[7]))
        await self._front.put(entry)
        return entry

    async def put(self, entry: Entry) -> None:
        try:
            async with self._lock:
                db = self._db()
                await db.execute(
                    f"INSERT OR REPLACE INTO cache_entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        entry.cache_id,
                        entry.partition,
                        entry.cache_key,
                        entry.provider,
                        entry.model,
                        entry.created_at,
                        entry.expires_at,
                        entry.answer,
                    ),
                )
                self._writes += 1
                if self._writes % _PURGE_EVERY == 0:
                    await db.execute("DELETE FROM cache_entries WHERE expires_at <= ?", (entry.created_at,))
        except sqlite3.Error as exc:
            raise CacheStoreError(str(exc)) from exc
        await self._front.put(entry)

    async def delete(self, cache_id: str) -> bool:
        await self._front.delete(cache_id)
        try:
            async with self._lock:
                cursor = await self._db().execute("DELETE FROM cache_entries WHERE cache_id = ?", (cache_id,))
                return cursor.rowcount > 0
        except sqlite3.Error as exc:
            raise CacheStoreError(str(exc)) from exc

    async def clear(self, partition: str, cache_key: str | None) -> list[str]:
        where, params = "partition = ?", [partition]
        if cache_key is not None:
            where, params = "partition = ? AND cache_key = ?", [partition, cache_key]
        await self._front.clear(partition, cache_key)
        try:
            async with self._lock:
                db = self._db()
                rows = await db.execute_fetchall(f"SELECT cache_id FROM cache_entries WHERE {where}", params)
                await db.execute(f"DELETE FROM cache_entries WHERE {where}", params)
        except sqlite3.Error as exc:
            raise CacheStoreError(str(exc)) from exc
        return [row[0] for row in rows]

    async def usage(self, now: float) -> tuple[int, int]:
        try:
            async with self._lock:
                rows = list(
                    await self._db().execute_fetchall(
                        "SELECT COUNT(*), COALESCE(SUM(LENGTH(answer)), 0) FROM cache_entries "
                        "WHERE expires_at > ?",
                        (now,),
                    )
                )
        except sqlite3.Error as exc:
            raise CacheStoreError(str(exc)) from exc
        return int(rows[0][0]), int(rows[0][1])

    async def aclose(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
