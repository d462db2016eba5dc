"""Entries in this process: a bounded LRU dictionary (``cache.max_entries``)."""

from __future__ import annotations

from collections import OrderedDict

from service.plugins.cache.entries import Entry


class MemoryStore:
    name = "memory"

    def __init__(self, max_entries: int) -> None:
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._max = max_entries
        self._bytes = 0

    async def open(self) -> None:
        return None

    async def get(self, cache_id: str, now: float) -> Entry | None:
        entry = self._entries.get(cache_id)
        if entry is None:
            return None
        if entry.expires_at <= now:
            self._drop(cache_id)
            return None
        self._entries.move_to_end(cache_id)
        return entry

    async def put(self, entry: Entry) -> None:
        self._drop(entry.cache_id)
        self._entries[entry.cache_id] = entry
        self._bytes += entry.size
        while len(self._entries) > self._max:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    async def delete(self, cache_id: str) -> bool:
        return self._drop(cache_id)

    async def clear(self, partition: str, cache_key: str | None) -> list[str]:
        ids = [
            e.cache_id
            for e in self._entries.values()
            if e.partition == partition and (cache_key is None or e.cache_key == cache_key)
        ]
        for cache_id in ids:
            self._drop(cache_id)
        return ids

    async def usage(self, now: float) -> tuple[int, int]:
        for cache_id in [e.cache_id for e in self._entries.values() if e.expires_at <= now]:
            self._drop(cache_id)
        return len(self._entries), self._bytes

    async def aclose(self) -> None:
        return None

    def _drop(self, cache_id: str) -> bool:
        entry = self._entries.pop(cache_id, None)
        if entry is None:
            return False
        self._bytes -= entry.size
        return True
