"""The response cache (issue 10): exact and semantic, partitioned by caller, as a plugin.

- ``keys``: the canonical request hash (which fields are in the key, which are not, and why);
- ``controls``: the per-request ``x-bf-cache-*`` headers and the gRPC ``cache`` field;
- ``entries``: what an entry holds, and a completed stream folded into one answer;
- ``stores``: where exact entries live (memory, SQLite, Redis);
- ``semantic``: the embedder and vector-index seams, and what gets embedded;
- ``cache``: lookups, background writes, clearing and stats;
- ``plugin``: when in a call the cache is consulted.
"""

from __future__ import annotations

from service.plugins.cache.cache import CacheCounts, ResponseCache
from service.plugins.cache.plugin import CachePlugin
from service.plugins.cache.semantic import Embedder, EmbedResult, HashedEmbedder, VectorIndex, open_index
from service.plugins.cache.stores import open_entry_store
from switchyard.config import CacheConfig
from switchyard.metrics import ProcessMetrics

__all__ = [
    "CacheCounts",
    "CachePlugin",
    "EmbedResult",
    "Embedder",
    "HashedEmbedder",
    "ResponseCache",
    "VectorIndex",
    "build_cache",
]


def build_cache(
    config: CacheConfig,
    redis_url: str,
    metrics: ProcessMetrics | None = None,
    embedder: Embedder | None = None,
) -> ResponseCache:
    """The configured cache, not yet opened. The semantic path is on only with an embedder."""
    index = open_index(config.semantic) if config.semantic.enabled and embedder is not None else None
    return ResponseCache(
        config, open_entry_store(config, redis_url), index, embedder if index else None, metrics
    )
