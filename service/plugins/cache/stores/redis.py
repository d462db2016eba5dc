"""Entries in Redis (``store.redis_url``), shared by every replica; Redis expires them.

Keys (the prefix ``sy:cache:`` keeps them apart from the counters' ``{sy:}`` keys):

- ``sy:cache:e:<cache_id>``: the entry (``Entry.dumps``), ``SET … PX <ttl>``: Redis drops it
  when it expires, so no replica ever serves a stale one;
- ``sy:cache:p:<sha256(partition)>``: a SET of the partition's entry ids, for clearing a
  partition; its expiry is pushed out to the newest entry's, and ids of entries that
  expired are skipped when it is read.
"""

from __future__ import annotations

import hashlib
import math

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service.plugins.cache.entries import Entry
from service.plugins.cache.stores.base import CacheStoreError

_SOCKET_TIMEOUT_S = 2.0
_SCAN_BATCH = 500


class RedisStore:
    name = "redis"

    def __init__(self, url: str, prefix: str = "sy:cache:") -> None:
        self._prefix = prefix
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=_SOCKET_TIMEOUT_S, socket_connect_timeout=_SOCKET_TIMEOUT_S
        )

    def _entry_key(self, cache_id: str) -> str:
        return f"{self._prefix}e:{cache_id}"

    def _partition_key(self, partition: str) -> str:
        return f"{self._prefix}p:{hashlib.sha256(partition.encode()).hexdigest()[:32]}"

    async def open(self) -> None:
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise CacheStoreError(f"Redis is not reachable for the cache: {type(exc).__name__}") from exc

    async def get(self, cache_id: str, now: float) -> Entry | None:
        try:
            data = await self._client.get(self._entry_key(cache_id))
        except (RedisError, OSError) as exc:
            raise CacheStoreError(type(exc).__name__) from exc
        if not isinstance(data, bytes):
            return None
        entry = Entry.loads(data)
        return entry if entry.expires_at > now else None

    async def put(self, entry: Entry) -> None:
        ttl_ms = max(1, math.ceil((entry.expires_at - entry.created_at) * 1000))
        partition = self._partition_key(entry.partition)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.set(self._entry_key(entry.cache_id), entry.dumps(), px=ttl_ms)
                pipe.sadd(partition, entry.cache_id)
                # GT: only ever pushed out, so a short-lived entry never shortens the set's life.
                pipe.pexpire(partition, ttl_ms, gt=True)
                pipe.pexpire(partition, ttl_ms, nx=True)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise CacheStoreError(type(exc).__name__) from exc

    async def delete(self, cache_id: str) -> bool:
        try:
            return bool(await self._client.delete(self._entry_key(cache_id)))
        except (RedisError, OSError) as exc:
            raise CacheStoreError(type(exc).__name__) from exc

    async def clear(self, partition: str, cache_key: str | None) -> list[str]:
        set_key = self._partition_key(partition)
        try:
            members = [
                m.decode() if isinstance(m, bytes) else m for m in await self._client.smembers(set_key)
            ]
            if not members:
                return []
            values = await self._client.mget([self._entry_key(m) for m in members])
            doomed = []
            for cache_id, value in zip(members, values, strict=True):
                if not isinstance(value, bytes):
                    continue
                entry = Entry.loads(value)
                if entry.partition == partition and (cache_key is None or entry.cache_key == cache_key):
                    doomed.append(cache_id)
            async with self._client.pipeline(transaction=False) as pipe:
                if doomed:
                    pipe.delete(*[self._entry_key(m) for m in doomed])
                    pipe.srem(set_key, *doomed)
                if cache_key is None:
                    pipe.delete(set_key)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise CacheStoreError(type(exc).__name__) from exc
        return doomed

    async def usage(self, now: float) -> tuple[int, int]:
        """Counted by a scan of the entry keys: O(entries), for the admin API only."""
        entries = size = 0
        try:
            async for key in self._client.scan_iter(match=f"{self._prefix}e:*", count=_SCAN_BATCH):
                length = await self._client.strlen(key)
                if length:
                    entries += 1
                    size += length
        except (RedisError, OSError) as exc:
            raise CacheStoreError(type(exc).__name__) from exc
        return entries, size

    async def aclose(self) -> None:
        await self._client.aclose()
