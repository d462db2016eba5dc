"""The response cache as a plugin: when in a call it is consulted, and what a hit looks like.

It sits after governance in the pipeline (``service/server.py``), so a caller is admitted,
rate limited and refused exactly as without it: a hit is still a request. Then:

- ``on_request``: read the per-request controls; look the request up (exact, then
  semantic); a hit short-circuits the call with the cached answer, its ``usage`` the cached
  tokens and ``usage.cost`` 0 (or the embedding's cost), no upstream call and no budget
  reservation (governance reserves only before a target is tried);
- ``on_response`` / ``on_chunk``: on a miss, ``extra_fields.cache_debug`` (the final chunk of
  a stream) and the answer kept for storing;
- ``on_finish``: a call that succeeded and completed (every choice finished; a stream that
  failed or was cut never is) is stored in the background, after the answer has gone.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass

from service.pipeline import CacheNote, CallContext, Plugin
from service.plugins.cache.cache import ResponseCache
from service.plugins.cache.controls import Controls, read_controls
from service.plugins.cache.entries import Entry, complete, fold_stream, storable
from service.plugins.cache.keys import exact_key, semantic_scope, target_of
from service.plugins.cache.semantic import Probe, Scope, probe
from service.routing import Target
from switchyard.v1 import chat_pb2 as pb

EXACT = "exact"
SEMANTIC = "semantic"
MISS = "miss"
SHARED = "shared"


@dataclass(slots=True)
class _Miss:
    """A call the cache saw and could not answer: what it needs to store the answer."""

    controls: Controls
    partition: str
    cache_id: str
    debug: pb.CacheDebug
    vector: tuple[Scope, list[float]] | None = None
    embedding_cost: float = 0.0  # the semantic lookup's, added to the call's cost
    response: pb.ChatCompletionResponse | None = None
    chunks: list[pb.ChatCompletionChunk] | None = None
    size: int = 0


class CachePlugin(Plugin):
    name = "cache"

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache
        config = cache.config
        self._config = config
        self._by_team = config.partition == "team"
        self._only = config.deployments
        self._semantic = config.semantic
        self._max_bytes = config.max_entry_bytes

    def partition(self, ctx: CallContext) -> str:
        """Whose entries a call may see: its virtual key's (or team's), else the shared one."""
        if self._by_team and ctx.team_id:
            return f"team:{ctx.team_id}"
        if ctx.key_id:
            return f"key:{ctx.key_id}"
        return SHARED

    def _applies(self, target: str) -> bool:
        return not self._only or any(fnmatch.fnmatchcase(target, pattern) for pattern in self._only)

    async def on_request(self, ctx: CallContext) -> pb.ChatCompletionResponse | None:
        request = ctx.request
        controls = read_controls(request, ctx.metadata)  # a bad value: 400 before anything else
        if controls.bypass or not self._applies(target_of(request)):
            return None
        cache = self.cache
        partition = self.partition(ctx)
        cache_key = controls.cache_key
        cache_id = exact_key(request, partition, cache_key)
        debug = pb.CacheDebug(cache_hit=False, cache_id=cache_id, requested_model=ctx.model_requested)
        vector: tuple[Scope, list[float]] | None = None
        embedding_cost = 0.0
        if not controls.refresh and controls.exact:
            entry = await cache.exact(cache_id, partition, cache_key)
            if entry is not None:
                cache.counts.exact_hits += 1
                return self._hit(ctx, entry, EXACT, debug)
        found: Probe | None = None
        if cache.semantic and self._semantic.enabled and controls.semantic:
            found = probe(request, self._semantic)
        if found is not None:
            threshold = controls.threshold if controls.threshold is not None else self._semantic.threshold
            debug.threshold = threshold
            scope_hash = semantic_scope(request, found.embedded)
            result = await cache.nearest(
                found, scope_hash, partition, cache_key, threshold, tuple(ctx.metadata)
            )
            if result is not None:
                embedding = result.embedding
                debug.provider_used, debug.model_used = embedding.provider, embedding.model
                debug.input_tokens = embedding.prompt_tokens
                if result.similarity is not None:
                    debug.similarity = result.similarity
                if not controls.refresh and result.entry is not None:
                    cache.counts.semantic_hits += 1
                    debug.cache_id = result.entry.cache_id
                    return self._hit(ctx, result.entry, SEMANTIC, debug, embedding.cost)
                vector = (result.scope, result.vector)
                embedding_cost = embedding.cost or 0.0
        cache.counts.misses += 1
        ctx.slots[self.slot] = _Miss(controls, partition, cache_id, debug, vector, embedding_cost)
        ctx.cache = CacheNote(MISS, cache_id)
        return None

    def _hit(
        self,
        ctx: CallContext,
        entry: Entry,
        hit_type: str,
        debug: pb.CacheDebug,
        embedding_cost: float | None = None,
    ) -> pb.ChatCompletionResponse:
        response = entry.response()
        cost = embedding_cost or 0.0
        if response.HasField("usage"):
            # The cached answer's tokens; nothing was paid upstream for them.
            response.usage.cost.CopyFrom(
                pb.Cost(input_tokens_cost=0.0, output_tokens_cost=0.0, request_cost=cost, total_cost=cost)
            )
        extra = response.extra_fields
        extra.request_type = ctx.request_type
        extra.provider = entry.provider
        extra.model_requested = ctx.model_requested
        extra.model_deployment = entry.model
        extra.latency = ctx.latency_ms()
        debug.cache_hit = True
        debug.hit_type = hit_type
        debug.requested_provider = entry.provider
        extra.cache_debug.CopyFrom(debug)
        ctx.cache = CacheNote(hit_type, entry.cache_id, entry.provider, entry.model)
        ctx.cost = cost
        return response

    def on_response(self, ctx: CallContext, response: pb.ChatCompletionResponse) -> None:
        miss = ctx.slots[self.slot]
        if miss is None:
            return  # a hit (its answer carries its debug) or bypassed
        _requested(miss.debug, ctx.target)
        response.extra_fields.cache_debug.CopyFrom(miss.debug)
        miss.response = response

    def on_chunk(self, ctx: CallContext, chunk: pb.ChatCompletionChunk) -> None:
        miss = ctx.slots[self.slot]
        if miss is None:
            return
        if miss.size <= self._max_bytes:
            if miss.chunks is None:
                miss.chunks = []
            miss.chunks.append(chunk)
            miss.size += chunk.ByteSize()
        # The last chunk the caller gets is the finish chunk or the usage chunk: both carry it.
        if chunk.HasField("usage") or any(c.finish_reason for c in chunk.choices):
            _requested(miss.debug, ctx.target)
            chunk.extra_fields.cache_debug.CopyFrom(miss.debug)

    async def on_finish(self, ctx: CallContext) -> None:
        miss = ctx.slots[self.slot]
        if miss is None:
            return
        if miss.embedding_cost and ctx.cost is not None:
            # Runs before governance's on_finish (post hooks run in reverse), which settles the
            # budget reservation and logs ctx.cost: the lookup's embedding is part of the call.
            ctx.cost += miss.embedding_cost
        if miss.controls.no_store or ctx.status != 200 or ctx.target is None:
            return
        if ctx.stream and (miss.chunks is None or miss.size > self._max_bytes):
            self.cache.counts.writes_dropped += 1
            return
        ttl_s = miss.controls.ttl_s or self._config.ttl_s
        self.cache.write_later(_entry(ctx, miss, ctx.target, ttl_s), miss.vector)


def _requested(debug: pb.CacheDebug, target: Target | None) -> None:
    if target is not None and not debug.HasField("requested_provider"):
        debug.requested_provider = target.provider


async def _entry(ctx: CallContext, miss: _Miss, target: Target, ttl_s: float) -> Entry | None:
    """The entry to store (run in the background task, after the answer has gone)."""
    if ctx.stream:
        assert miss.chunks is not None
        response = fold_stream(miss.chunks)
        if response is not None and not response.HasField("usage") and ctx.usage is not None:
            response.usage.CopyFrom(ctx.usage)
    else:
        response = miss.response
    if response is None or not complete(response):
        return None
    now = time.time()
    return Entry(
        miss.cache_id,
        miss.partition,
        miss.controls.cache_key,
        target.provider,
        target.model,
        now,
        now + ttl_s,
        storable(response),
    )
