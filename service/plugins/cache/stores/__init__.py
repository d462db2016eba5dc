"""Where exact entries live: ``memory``, ``sqlite`` (the embedded default) or ``redis`` (shared)."""

from __future__ import annotations

from service.plugins.cache.stores.base import CacheStoreError, EntryStore
from service.plugins.cache.stores.memory import MemoryStore
from service.plugins.cache.stores.redis import RedisStore
from service.plugins.cache.stores.sqlite import SqliteStore
from switchyard.config import CacheConfig

__all__ = ["CacheStoreError", "EntryStore", "MemoryStore", "RedisStore", "SqliteStore", "open_entry_store"]


def open_entry_store(config: CacheConfig, redis_url: str) -> EntryStore:
    """The configured store, not yet opened (``await store.open()``)."""
    if config.store == "memory":
        return MemoryStore(config.max_entries)
    if config.store == "redis":
        return RedisStore(redis_url)
    return SqliteStore(config.sqlite_path)
