"""The response cache itself: lookups, background writes, clearing and stats.

The plugin (``plugin.py``) decides *when* in a call it is consulted; the Admin API clears
and counts through it. A store that fails never fails a call: a lookup that errors is a
miss (logged), a write that errors is counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from service.plugins.cache.entries import Entry
from service.plugins.cache.semantic import (
    Embedder,
    EmbedResult,
    Match,
    Probe,
    Scope,
    VectorIndex,
    namespace_of,
)
from service.plugins.cache.stores import CacheStoreError, EntryStore
from switchyard.config import CacheConfig
from switchyard.metrics import CounterVec, ProcessMetrics

log = logging.getLogger("switchyard.service")
DRAIN_S = 5.0


@dataclass(slots=True)
class CacheCounts:
    exact_hits: int = 0
    semantic_hits: int = 0
    misses: int = 0
    writes: int = 0
    write_failures: int = 0
    writes_dropped: int = 0
    lookup_errors: int = 0


@dataclass(frozen=True, slots=True)
class SemanticResult:
    entry: Entry | None
    similarity: float | None
    embedding: EmbedResult
    scope: Scope
    vector: list[float]


class ResponseCache:
    def __init__(
        self,
        config: CacheConfig,
        store: EntryStore,
        index: VectorIndex | None = None,
        embedder: Embedder | None = None,
        metrics: ProcessMetrics | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.index = index
        self.embedder = embedder
        self.counts = CacheCounts()
        self._pending: set[asyncio.Task[None]] = set()
        self._lookups: CounterVec | None = None
        self._writes: CounterVec | None = None
        if metrics is not None:
            registry = metrics.registry
            self._lookups = CounterVec(
                "switchyard_cache_requests",
                "Response-cache lookups by type (exact, semantic) and outcome (hit, miss, error).",
                ("type", "outcome"),
                registry=registry,
            )
            self._writes = CounterVec(
                "switchyard_cache_writes",
                "Response-cache writes by outcome (stored, failed, dropped).",
                ("outcome",),
                registry=registry,
            )

    @property
    def semantic(self) -> bool:
        return self.index is not None and self.embedder is not None

    async def open(self) -> None:
        await self.store.open()
        if self.index is not None:
            await self.index.open()

    async def aclose(self) -> None:
        """Let pending writes finish (for a while), then close the store and the index."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=DRAIN_S)
        await self.store.aclose()
        if self.index is not None:
            await self.index.aclose()

    def _count(self, kind: str, outcome: str) -> None:
        if self._lookups is not None:
            self._lookups.child(kind, outcome).inc()

    # ---------------------------------------------------------------- lookups

    async def exact(self, cache_id: str, partition: str, cache_key: str) -> Entry | None:
        try:
            entry = await self.store.get(cache_id, time.time())
        except CacheStoreError as exc:
            self.counts.lookup_errors += 1
            self._count("exact", "error")
            log.warning("cache lookup failed (served as a miss): %s", exc)
            return None
        # The id already hashes the partition in; checked again so a collision can never cross it.
        if entry is not None and (entry.partition != partition or entry.cache_key != cache_key):
            entry = None
        self._count("exact", "hit" if entry is not None else "miss")
        return entry

    async def nearest(
        self,
        found: Probe,
        scope_hash: str,
        partition: str,
        cache_key: str,
        threshold: float,
        metadata: Sequence[tuple[str, str | bytes]],
    ) -> SemanticResult | None:
        """Embed the probe and look for the nearest entry at least ``threshold`` close.
        None when the embedding failed (logged): the call goes on as a miss."""
        assert self.index is not None and self.embedder is not None
        try:
            embedding = await self.embedder.embed([found.text], metadata)
            vector = embedding.vectors[0]
        except Exception as exc:  # the embedder is another call: its failure is not this call's
            self.counts.lookup_errors += 1
            self._count("semantic", "error")
            log.warning("cache embedding failed (served as a miss): %s", exc)
            return None
        # The model that answered (a deployment may fall back to another): its own namespace.
        model = embedding.model or self.embedder.model
        scope = Scope(namespace_of(model, len(vector)), partition, cache_key, scope_hash)
        now = time.time()
        match: Match | None = None
        entry: Entry | None = None
        try:
            match = await self.index.nearest(scope, vector, now)
            if match is not None and match.similarity >= threshold:
                entry = await self.store.get(match.cache_id, now)
        except Exception as exc:
            self.counts.lookup_errors += 1
            self._count("semantic", "error")
            log.warning("semantic cache lookup failed (served as a miss): %s", exc)
            return SemanticResult(None, None, embedding, scope, vector)
        if entry is not None and (entry.partition != partition or entry.cache_key != cache_key):
            entry = None
        self._count("semantic", "hit" if entry is not None else "miss")
        return SemanticResult(entry, match.similarity if match else None, embedding, scope, vector)

    # ---------------------------------------------------------------- writes

    def write_later(
        self, make: Coroutine[Any, Any, Entry | None], vector: tuple[Scope, list[float]] | None
    ) -> None:
        """Run ``make`` (which builds the entry) and store its result in the background: the
        answer never waits for it. Beyond ``max_pending_writes`` the write is dropped."""
        if len(self._pending) >= self.config.max_pending_writes:
            make.close()
            self._dropped()
            return
        task = asyncio.get_running_loop().create_task(self._write(make, vector))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _dropped(self) -> None:
        self.counts.writes_dropped += 1
        if self._writes is not None:
            self._writes.child("dropped").inc()

    async def _write(
        self, make: Coroutine[Any, Any, Entry | None], vector: tuple[Scope, list[float]] | None
    ) -> None:
        try:
            entry = await make
            if entry is None:
                return
            if entry.size > self.config.max_entry_bytes:
                self._dropped()
                return
            await self.store.put(entry)
            if vector is not None and self.index is not None:
                await self.index.add(vector[0], entry.cache_id, vector[1], entry.expires_at)
        except Exception as exc:  # never raised to anyone: the answer has gone already
            self.counts.write_failures += 1
            if self._writes is not None:
                self._writes.child("failed").inc()
            log.warning("cache write failed: %s", exc)
            return
        self.counts.writes += 1
        if self._writes is not None:
            self._writes.child("stored").inc()

    async def flush(self) -> None:
        """Wait for the writes in flight (tests, benchmarks, shutdown)."""
        while self._pending:
            await asyncio.wait(set(self._pending))

    # ---------------------------------------------------------------- admin

    async def delete(self, cache_id: str) -> bool:
        deleted = await self.store.delete(cache_id)
        if self.index is not None:
            await self.index.delete([cache_id])
        return deleted

    async def clear(self, partition: str, cache_key: str | None) -> int:
        ids = await self.store.clear(partition, cache_key)
        if self.index is not None:
            await self.index.clear(partition, cache_key)
        return len(ids)

    async def usage(self) -> tuple[int, int, int]:
        entries, size = await self.store.usage(time.time())
        vectors = await self.index.count() if self.index is not None else 0
        return entries, size, vectors
