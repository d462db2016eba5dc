"""The built-in vector index: exact cosine search with numpy over the vectors of one scope.

The embedded default, chosen by measurement (``semantic.py`` says why). Imported only when the
semantic cache is on, so numpy is never loaded by a process that does not use it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiosqlite
import numpy as np

from service.plugins.cache.semantic import Match, Scope


@dataclass(slots=True)
class _Group:
    """The vectors of one scope: a matrix of unit rows, their ids and expiry times."""

    ids: list[str] = field(default_factory=list)
    expires: list[float] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)
    matrix: np.ndarray | None = None  # rebuilt lazily after an add

    def search(self, query: np.ndarray, now: float) -> Match | None:
        if not self.ids:
            return None
        if self.matrix is None:
            self.matrix = np.vstack(self.rows)
        scores = self.matrix @ query
        for i in np.argsort(-scores)[:8]:  # the best few: the very best may have expired
            if self.expires[int(i)] > now:
                return Match(self.ids[int(i)], float(scores[int(i)]))
        return None

    def remove(self, doomed: set[str]) -> None:
        keep = [i for i, cache_id in enumerate(self.ids) if cache_id not in doomed]
        if len(keep) == len(self.ids):
            return
        self.ids = [self.ids[i] for i in keep]
        self.expires = [self.expires[i] for i in keep]
        self.rows = [self.rows[i] for i in keep]
        self.matrix = None


def _unit(vector: Sequence[float]) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return array / norm if norm > 0 else array


class BuiltinIndex:
    """Exact cosine search with numpy over the vectors of one scope, in this process; kept in
    a SQLite file (``path``; ``""``: memory only), reloaded at start without expired rows."""

    name = "builtin"

    def __init__(self, path: str = "") -> None:
        self._path = path
        self._groups: dict[Scope, _Group] = {}
        self._where: dict[str, Scope] = {}
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if not self._path:
            return
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(self._path, isolation_level=None)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS cache_vectors (cache_id TEXT PRIMARY KEY, namespace TEXT NOT NULL, "
            "partition TEXT NOT NULL, cache_key TEXT NOT NULL, scope TEXT NOT NULL, "
            "expires_at REAL NOT NULL, vector BLOB NOT NULL)"
        )
        await conn.execute("DELETE FROM cache_vectors WHERE expires_at <= ?", (time.time(),))
        rows = await conn.execute_fetchall(
            "SELECT cache_id, namespace, partition, cache_key, scope, expires_at, vector FROM cache_vectors"
        )
        for cache_id, namespace, partition, cache_key, scope, expires_at, blob in rows:
            self._insert(
                Scope(namespace, partition, cache_key, scope),
                cache_id,
                np.frombuffer(blob, dtype=np.float32).copy(),
                float(expires_at),
            )
        self._conn = conn

    def _insert(self, scope: Scope, cache_id: str, unit: np.ndarray, expires_at: float) -> None:
        old = self._where.get(cache_id)
        if old is not None:
            self._groups[old].remove({cache_id})
        group = self._groups.setdefault(scope, _Group())
        group.ids.append(cache_id)
        group.expires.append(expires_at)
        group.rows.append(unit)
        group.matrix = None
        self._where[cache_id] = scope

    async def nearest(self, scope: Scope, vector: Sequence[float], now: float) -> Match | None:
        group = self._groups.get(scope)
        return group.search(_unit(vector), now) if group is not None else None

    async def add(self, scope: Scope, cache_id: str, vector: Sequence[float], expires_at: float) -> None:
        unit = _unit(vector)
        self._insert(scope, cache_id, unit, expires_at)
        if self._conn is not None:
            async with self._lock:
                await self._conn.execute(
                    "INSERT OR REPLACE INTO cache_vectors VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        cache_id,
                        scope.namespace,
                        scope.partition,
                        scope.cache_key,
                        scope.scope,
                        expires_at,
                        unit.tobytes(),
                    ),
                )

    async def delete(self, cache_ids: Sequence[str]) -> None:
        doomed = set(cache_ids)
        for scope in {self._where.pop(c) for c in doomed if c in self._where}:
            self._groups[scope].remove(doomed)
        if self._conn is not None and doomed:
            async with self._lock:
                await self._conn.executemany(
                    "DELETE FROM cache_vectors WHERE cache_id = ?", [(c,) for c in doomed]
                )

    async def clear(self, partition: str, cache_key: str | None) -> None:
        doomed = [
            cache_id
            for cache_id, scope in self._where.items()
            if scope.partition == partition and (cache_key is None or scope.cache_key == cache_key)
        ]
        await self.delete(doomed)

    async def count(self) -> int:
        return len(self._where)

    async def aclose(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
