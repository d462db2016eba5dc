"""The Qdrant vector index through qdrant-client: a server (a fleet shares it), or its local mode.

Imported only when ``cache.semantic.index: qdrant``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.plugins.cache.semantic import Match, Scope


def _point_id(cache_id: str) -> str:
    """Qdrant ids are UUIDs or integers: a UUID made from the entry id (stable everywhere)."""
    return str(uuid.UUID(bytes=hashlib.sha256(cache_id.encode()).digest()[:16]))


def _collection(namespace: str) -> str:
    return "switchyard_cache_" + re.sub(r"[^A-Za-z0-9_-]", "_", namespace)


class QdrantIndex:
    """qdrant-client's ``AsyncQdrantClient``: a server at ``url`` (a fleet shares it), else its
    local mode at ``path``. One collection per namespace, with keyword payload indexes on
    what every query filters by."""

    name = "qdrant"

    def __init__(self, url: str = "", path: str = "") -> None:
        self._url, self._path = url, path
        self._client: Any = None
        self._collections: set[str] = set()

    async def open(self) -> None:
        from qdrant_client import AsyncQdrantClient  # imported only when this index is chosen

        if self._url:
            self._client = AsyncQdrantClient(url=self._url, timeout=5)
            existing = await self._client.get_collections()
        else:
            await asyncio.to_thread(Path(self._path).mkdir, parents=True, exist_ok=True)
            self._client = AsyncQdrantClient(path=self._path)
            existing = await self._client.get_collections()
        self._collections = {c.name for c in existing.collections}

    async def _ensure(self, name: str, dimension: int) -> None:
        from qdrant_client import models

        if name in self._collections:
            return
        if not await self._client.collection_exists(name):
            await self._client.create_collection(
                name, vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE)
            )
            if self._url:  # payload indexes exist on a server only
                for key in ("partition", "cache_key", "scope", "cache_id"):
                    await self._client.create_payload_index(name, key, models.PayloadSchemaType.KEYWORD)
                await self._client.create_payload_index(name, "expires_at", models.PayloadSchemaType.FLOAT)
        self._collections.add(name)

    def _filter(self, partition: str, cache_key: str | None, scope: str | None = None, now: float = 0) -> Any:
        from qdrant_client import models

        must: list[Any] = [models.FieldCondition(key="partition", match=models.MatchValue(value=partition))]
        if cache_key is not None:
            must.append(models.FieldCondition(key="cache_key", match=models.MatchValue(value=cache_key)))
        if scope is not None:
            must.append(models.FieldCondition(key="scope", match=models.MatchValue(value=scope)))
        if now:
            must.append(models.FieldCondition(key="expires_at", range=models.Range(gt=now)))
        return models.Filter(must=must)

    async def nearest(self, scope: Scope, vector: Sequence[float], now: float) -> Match | None:
        name = _collection(scope.namespace)
        if name not in self._collections:
            return None
        result = await self._client.query_points(
            name,
            query=list(vector),
            query_filter=self._filter(scope.partition, scope.cache_key, scope.scope, now),
            limit=1,
            with_payload=["cache_id"],
        )
        if not result.points:
            return None
        point = result.points[0]
        return Match(str(point.payload["cache_id"]), float(point.score))

    async def add(self, scope: Scope, cache_id: str, vector: Sequence[float], expires_at: float) -> None:
        from qdrant_client import models

        name = _collection(scope.namespace)
        await self._ensure(name, len(vector))
        payload = {
            "cache_id": cache_id,
            "partition": scope.partition,
            "cache_key": scope.cache_key,
            "scope": scope.scope,
            "expires_at": expires_at,
        }
        await self._client.upsert(
            name, points=[models.PointStruct(id=_point_id(cache_id), vector=list(vector), payload=payload)]
        )

    async def delete(self, cache_ids: Sequence[str]) -> None:
        from qdrant_client import models

        ids: list[Any] = [_point_id(c) for c in cache_ids]
        for name in list(self._collections):
            await self._client.delete(name, points_selector=models.PointIdsList(points=ids))

    async def clear(self, partition: str, cache_key: str | None) -> None:
        from qdrant_client import models

        for name in list(self._collections):
            await self._client.delete(
                name, points_selector=models.FilterSelector(filter=self._filter(partition, cache_key))
            )

    async def count(self) -> int:
        total = 0
        for name in self._collections:
            total += (await self._client.count(name, exact=True)).count
        return total

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
