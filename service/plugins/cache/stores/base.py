"""What every exact-entry store offers (memory, SQLite, Redis): the seam the plugin uses."""

from __future__ import annotations

from typing import Protocol

from service.plugins.cache.entries import Entry


class CacheStoreError(Exception):
    """The store failed (Redis down, a locked database): a lookup then counts as a miss."""


class EntryStore(Protocol):
    name: str

    async def open(self) -> None: ...

    async def get(self, cache_id: str, now: float) -> Entry | None:
        """The entry, or None when absent or expired at ``now``."""
        ...

    async def put(self, entry: Entry) -> None:
        """Store (or replace) ``entry`` until its ``expires_at``."""
        ...

    async def delete(self, cache_id: str) -> bool: ...

    async def clear(self, partition: str, cache_key: str | None) -> list[str]:
        """Remove a partition's entries (only those under ``cache_key`` when given); their ids."""
        ...

    async def usage(self, now: float) -> tuple[int, int]:
        """(entries, bytes) held now."""
        ...

    async def aclose(self) -> None: ...
