"""The cache plugin in-process: hits and misses, unary and streams both ways, the per-request
controls, partitions, what is never stored, background writes, and the semantic path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from service.pipeline import CallContext, ChatError, Plugin
from service.plugins.cache import CachePlugin, HashedEmbedder, ResponseCache, build_cache
from service.plugins.cache.entries import Entry
from service.plugins.cache.semantic import EmbedResult
from service.plugins.cache.stores import MemoryStore
from switchyard.config import parse_config
from switchyard.v1 import chat_pb2 as pb
from tests.inprocess import Upstream, delta, engine, ok, request, sse, status, usage


class Caller(Plugin):
    """Stands in for governance: the caller's key id comes from the ``x-test-key`` metadata."""

    name = "caller"

    async def on_request(self, ctx: CallContext) -> pb.ChatCompletionResponse | None:
        ctx.key_id = dict(ctx.metadata).get("x-test-key")  # type: ignore[arg-type]
        ctx.team_id = dict(ctx.metadata).get("x-test-team")  # type: ignore[arg-type]
        return None


def cache_config(**overrides: Any) -> Any:
    semantic = overrides.pop("semantic", {})
    raw = {"enabled": True, "store": "memory", **overrides}
    if semantic:
        raw["semantic"] = {"enabled": True, "embedding_model": "hashed", "path": "", **semantic}
    return parse_config({"cache": raw}, env={}).cache


async def make(upstream: Upstream, embedder: Any = None, **overrides: Any) -> tuple[Any, ResponseCache]:
    cache = build_cache(cache_config(**overrides), "", embedder=embedder)
    await cache.open()
    return engine(upstream, [Caller(), CachePlugin(cache)]), cache


@pytest.fixture
def upstream() -> Upstream:
    up = Upstream()
    up.replies["primary"] = [ok("the answer")]
    return up


async def drain(chunks: AsyncIterator[pb.ChatCompletionChunk]) -> list[pb.ChatCompletionChunk]:
    return [c async for c in chunks]


def text_of(chunks: list[pb.ChatCompletionChunk]) -> str:
    return "".join(c.delta.text for chunk in chunks for c in chunk.choices)


def ask(text: str, *earlier: pb.ChatMessage, **fields: Any) -> pb.ChatCompletionRequest:
    fields.setdefault("model", "m")
    return pb.ChatCompletionRequest(messages=[*earlier, pb.ChatMessage(role="user", text=text)], **fields)


async def test_an_exact_hit_never_reaches_the_upstream(upstream: Upstream) -> None:
    chat, cache = await make(upstream)
    first = await chat.create(request())
    debug = first.extra_fields.cache_debug
    assert debug.cache_hit is False
    assert len(debug.cache_id) == 40
    await cache.flush()
    second = await chat.create(request())
    assert upstream.seen == ["primary"]
    assert second.choices[0].message.text == "the answer"
    hit = second.extra_fields.cache_debug
    assert (hit.cache_hit, hit.hit_type, hit.cache_id) == (True, "exact", debug.cache_id)
    assert second.extra_fields.provider == "primary"
    assert second.usage.total_tokens == 3
    assert second.usage.cost.total_cost == 0
    assert cache.counts.exact_hits == 1
    assert cache.counts.misses == 1


async def test_a_unary_answer_serves_a_stream_and_back(upstream: Upstream) -> None:
    chat, cache = await make(upstream)
    await chat.create(request())
    await cache.flush()
    chunks = await drain(chat.create_stream(request(stream_options=pb.StreamOptions(include_usage=True))))
    assert upstream.seen == ["primary"]
    assert text_of(chunks) == "the answer"
    assert chunks[-1].usage.total_tokens == 3
    assert chunks[-1].extra_fields.cache_debug.cache_hit
    assert not chunks[0].extra_fields.HasField("cache_debug")
    assert [c.extra_fields.chunk_index for c in chunks] == [0, 1]
    # Without include_usage the usage chunk is not sent: the content chunk is last and carries it.
    plain = await drain(chat.create_stream(request()))
    assert len(plain) == 1
    assert plain[0].extra_fields.cache_debug.hit_type == "exact"

    upstream.replies["primary"] = [
        sse(delta("str", role="assistant"), delta("eamed"), delta(finish="stop"), usage())
    ]
    streamed = ask("stream me")
    chunks = await drain(chat.create_stream(streamed))
    assert text_of(chunks) == "streamed"
    assert chunks[-1].extra_fields.cache_debug.cache_hit is False  # the finish chunk
    await cache.flush()
    answer = await chat.create(streamed)
    assert answer.choices[0].message.text == "streamed"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.extra_fields.cache_debug.cache_hit
    assert upstream.seen == ["primary", "primary"]


async def test_a_failed_or_cut_stream_is_never_stored(upstream: Upstream) -> None:
    chat, cache = await make(upstream)
    # No finish reason: the upstream closed the stream early.
    upstream.replies["primary"] = [sse(delta("half", role="assistant"))]
    cut = ask("cut")
    await drain(chat.create_stream(cut))
    # The caller leaves mid-stream.
    upstream.replies["primary"] = [
        sse(delta("a", role="assistant"), delta("b"), delta(finish="stop"), usage())
    ]
    left = ask("left")
    stream = chat.create_stream(left)
    await anext(stream)
    await stream.aclose()
    # A failed call.
    upstream.replies["primary"] = [status(500)]
    upstream.replies["backup"] = [status(500)]
    with pytest.raises(ChatError):
        await chat.create(ask("fails"))
    await cache.flush()
    assert cache.counts.writes == 0
    assert (await cache.usage())[0] == 0


async def test_partitions_keep_callers_apart(upstream: Upstream) -> None:
    chat, cache = await make(upstream)
    await chat.create(request(), metadata=[("x-test-key", "vk_a")])
    await cache.flush()
    other = await chat.create(request(), metadata=[("x-test-key", "vk_b")])
    assert other.extra_fields.cache_debug.cache_hit is False
    anonymous = await chat.create(request())
    assert anonymous.extra_fields.cache_debug.cache_hit is False
    assert len(upstream.seen) == 3
    again = await chat.create(request(), metadata=[("x-test-key", "vk_a")])
    assert again.extra_fields.cache_debug.cache_hit


async def test_team_partitions(upstream: Upstream) -> None:
    chat, cache = await make(upstream, partition="team")
    await chat.create(request(), metadata=[("x-test-key", "vk_a"), ("x-test-team", "t1")])
    await cache.flush()
    mate = await chat.create(request(), metadata=[("x-test-key", "vk_b"), ("x-test-team", "t1")])
    assert mate.extra_fields.cache_debug.cache_hit
    loner = await chat.create(request(), metadata=[("x-test-key", "vk_c")])
    assert loner.extra_fields.cache_debug.cache_hit is False


async def test_the_cache_key_header_narrows_the_partition(upstream: Upstream) -> None:
    chat, cache = await make(upstream)
    await chat.create(request(), metadata=[("x-bf-cache-key", "session-1")])
    await cache.flush()
    assert not (await chat.create(request())).extra_fields.cache_debug.cache_hit
    assert not (
        await chat.create(request(), metadata=[("x-bf-cache-key", "session-2")])
    ).extra_fields.cache_debug.cache_hit
    assert (
        await chat.create(request(), metadata=[("x-bf-cache-key", "session-1")])
    ).extra_fields.cache_debug.cache_hit


async def test_no_store_bypass_and_refresh(upstream: Upstream) -> None:
    chat, cache = await make(upstream)
    await chat.create(request(), metadata=[("x-bf-cache-no-store", "true")])
    await chat.create(request(), metadata=[("x-bf-cache-bypass", "TRUE")])
    bypassed = await chat.create(request(), metadata=[("x-bf-cache-bypass", "true")])
    assert not bypassed.extra_fields.HasField("cache_debug")  # the cache did not see it
    await cache.flush()
    assert cache.counts.writes == 0
    await chat.create(request())
    await cache.flush()
    assert cache.counts.writes == 1
    upstream.replies["primary"] = [ok("fresher")]
    fresh = await chat.create(request(), metadata=[("cache-control", "no-cache")])
    assert fresh.choices[0].message.text == "fresher"
    assert not fresh.extra_fields.cache_debug.cache_hit
    await cache.flush()
    assert (await chat.create(request())).choices[0].message.text == "fresher"
    # cache-control: no-store stores nothing.
    await chat.create(request(temperature=0.3), metadata=[("cache-control", "no-store")])
    await cache.flush()
    assert cache.counts.writes == 2


async def test_the_grpc_field_wins_over_metadata(upstream: Upstream) -> None:
    chat, cache = await make(upstream)
    fielded = request(cache=pb.CacheOptions(no_store=True))
    await chat.create(fielded, metadata=[("x-bf-cache-no-store", "false")])
    await cache.flush()
    assert cache.counts.writes == 0
    await chat.create(request(cache=pb.CacheOptions(key="k1")))
    await cache.flush()
    hit = await chat.create(request(), metadata=[("x-bf-cache-key", "k1")])
    assert hit.extra_fields.cache_debug.cache_hit  # the same partition however it was named


async def test_ttl_per_request(upstream: Upstream) -> None:
    chat, cache = await make(upstream)
    await chat.create(request(), metadata=[("x-bf-cache-ttl", "0.05")])
    await cache.flush()
    await asyncio.sleep(0.1)
    assert not (await chat.create(request())).extra_fields.cache_debug.cache_hit
    await chat.create(request(seed=1), metadata=[("x-bf-cache-ttl", "5m")])
    await cache.flush()
    lifetimes = [e.expires_at - time.time() for e in cache.store._entries.values()]  # type: ignore[attr-defined]
    assert any(290 < lifetime <= 300 for lifetime in lifetimes), lifetimes


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-bf-cache-ttl", "soon"),
        ("x-bf-cache-ttl", "-5"),
        ("x-bf-cache-ttl", "0"),
        ("x-bf-cache-threshold", "1.5"),
        ("x-bf-cache-threshold", "nan"),
        ("x-bf-cache-threshold", "high"),
        ("x-bf-cache-type", "fuzzy"),
        ("x-bf-cache-no-store", "yes"),
        ("x-bf-cache-bypass", "1"),
        ("x-bf-cache-key", "k" * 300),
    ],
)
async def test_bad_controls_are_400_naming_the_header(upstream: Upstream, name: str, value: str) -> None:
    chat, _ = await make(upstream)
    with pytest.raises(ChatError) as caught:
        await chat.create(request(), metadata=[(name, value)])
    body = caught.value.body
    assert body.status_code == 400
    assert body.type == "invalid_request_error"
    assert body.error.param == name
    assert upstream.seen == []


async def test_bad_field_values_are_400_naming_the_field(upstream: Upstream) -> None:
    chat, _ = await make(upstream)
    with pytest.raises(ChatError) as caught:
        await chat.create(request(cache=pb.CacheOptions(threshold=2)))
    assert caught.value.body.error.param == "cache.threshold"


async def test_only_listed_deployments_are_cached(upstream: Upstream) -> None:
    chat, cache = await make(upstream, deployments=["gpt-*"])
    await chat.create(request(model="m"))
    await chat.create(request(model="gpt-4o"))
    await cache.flush()
    assert cache.counts.writes == 1


async def test_writes_never_slow_the_answer_and_failures_stay_inside(upstream: Upstream) -> None:
    class Slow(MemoryStore):
        async def put(self, entry: Entry) -> None:
            await asyncio.sleep(5)

    class Broken(MemoryStore):
        async def put(self, entry: Entry) -> None:
            raise RuntimeError("disk full")

    config = cache_config()
    slow = ResponseCache(config, Slow(10))
    chat = engine(upstream, [CachePlugin(slow)])
    started = time.perf_counter()
    await chat.create(request())
    assert time.perf_counter() - started < 1
    assert len(slow._pending) == 1
    await asyncio.sleep(0.01)  # the write has started (and waits on the slow store)
    for task in list(slow._pending):
        task.cancel()

    broken = ResponseCache(config, Broken(10))
    chat = engine(upstream, [CachePlugin(broken)])
    await chat.create(request())
    await broken.flush()
    assert broken.counts.write_failures == 1


async def test_a_store_that_fails_is_a_miss(upstream: Upstream) -> None:
    class Down(MemoryStore):
        async def get(self, cache_id: str, now: float) -> Entry | None:
            from service.plugins.cache.stores import CacheStoreError

            raise CacheStoreError("ConnectionError")

    chat = engine(upstream, [CachePlugin(ResponseCache(cache_config(), Down(10)))])
    answer = await chat.create(request())
    assert answer.choices[0].message.text == "the answer"


# ---------------------------------------------------------------- semantic


async def test_a_paraphrase_is_a_semantic_hit(upstream: Upstream) -> None:
    chat, cache = await make(upstream, HashedEmbedder(), semantic={"threshold": 0.8})
    await chat.create(ask("what is the capital of france"))
    await cache.flush()
    hit = await chat.create(ask("what is the capital city of france"))
    debug = hit.extra_fields.cache_debug
    assert (debug.cache_hit, debug.hit_type) == (True, "semantic")
    assert 0.8 <= debug.similarity < 1
    assert debug.threshold == pytest.approx(0.8)
    assert debug.model_used == "hashed-bow"
    assert debug.input_tokens > 0
    assert upstream.seen == ["primary"]
    unrelated = await chat.create(ask("how do i bake a chocolate cake"))
    assert unrelated.extra_fields.cache_debug.cache_hit is False
    assert unrelated.extra_fields.cache_debug.similarity < 0.8
    # The threshold per request: 0.99 turns the paraphrase away.
    strict = await chat.create(
        ask("what is the capital city of france"), metadata=[("x-bf-cache-threshold", "0.99")]
    )
    assert strict.extra_fields.cache_debug.cache_hit is False
    # direct only: no semantic lookup at all.
    direct = await chat.create(
        ask("what is the capital city of france"), metadata=[("x-bf-cache-type", "direct")]
    )
    assert not direct.extra_fields.cache_debug.HasField("similarity")


async def test_semantic_hits_stay_in_their_partition_and_scope(upstream: Upstream) -> None:
    chat, cache = await make(upstream, HashedEmbedder(), semantic={"threshold": 0.8})
    system = pb.ChatMessage(role="system", text="answer in french")
    await chat.create(ask("what is the capital of france", system), metadata=[("x-test-key", "vk_a")])
    await cache.flush()
    other_key = await chat.create(
        ask("what is the capital city of france", system), metadata=[("x-test-key", "vk_b")]
    )
    assert not other_key.extra_fields.cache_debug.cache_hit
    other_system = pb.ChatMessage(role="system", text="answer in german")
    other_prompt = await chat.create(
        ask("what is the capital city of france", other_system), metadata=[("x-test-key", "vk_a")]
    )
    assert not other_prompt.extra_fields.cache_debug.cache_hit
    other_model = await chat.create(
        ask("what is the capital city of france", system, model="other"), metadata=[("x-test-key", "vk_a")]
    )
    assert not other_model.extra_fields.cache_debug.cache_hit
    same = await chat.create(
        ask("what is the capital city of france", system), metadata=[("x-test-key", "vk_a")]
    )
    assert same.extra_fields.cache_debug.hit_type == "semantic"


async def test_what_skips_the_semantic_path(upstream: Upstream) -> None:
    chat, cache = await make(upstream, HashedEmbedder(), semantic={"threshold": 0.5, "max_messages": 3})
    tool = pb.Tool(type="function", function=pb.FunctionDefinition(name="f"))
    long = [pb.ChatMessage(role="user", text=f"turn {i}") for i in range(3)]
    for skipped in (ask("what is the capital of france", tools=[tool]), ask("what is the capital", *long)):
        answer = await chat.create(skipped)
        assert not answer.extra_fields.cache_debug.HasField("similarity")
    await chat.create(ask("semantic is on"))
    await cache.flush()
    assert (await chat.create(ask("semantic is on now"))).extra_fields.cache_debug.HasField("similarity")


async def test_an_embedding_failure_is_a_miss(upstream: Upstream) -> None:
    class Failing:
        model = "failing"

        async def embed(self, texts: Any, metadata: Any) -> EmbedResult:
            raise httpx.ConnectError("embeddings down")

    chat, cache = await make(upstream, Failing(), semantic={"threshold": 0.9})
    answer = await chat.create(ask("anything"))
    assert answer.choices[0].message.text == "the answer"
    assert cache.counts.lookup_errors == 1


async def test_the_embedding_cost_is_the_hits_cost(upstream: Upstream) -> None:
    class Priced(HashedEmbedder):
        async def embed(self, texts: Any, metadata: Any = ()) -> EmbedResult:
            result = await super().embed(texts, metadata)
            return EmbedResult(
                result.vectors, result.prompt_tokens, 0.0001, "azure", "text-embedding-3-small"
            )

    chat, cache = await make(upstream, Priced(), semantic={"threshold": 0.8})
    await chat.create(ask("what is the capital of france"))
    await cache.flush()
    hit = await chat.create(ask("what is the capital city of france"))
    assert hit.usage.cost.total_cost == pytest.approx(0.0001)
    assert hit.extra_fields.cache_debug.provider_used == "azure"


async def test_a_misses_embedding_cost_joins_the_calls_cost(upstream: Upstream) -> None:
    class Priced(HashedEmbedder):
        async def embed(self, texts: Any, metadata: Any = ()) -> EmbedResult:
            result = await super().embed(texts, metadata)
            return EmbedResult(
                result.vectors, result.prompt_tokens, 0.0001, "azure", "text-embedding-3-small"
            )

    class Pricing(Plugin):
        """Stands in for governance's pricing: the upstream answer costs 0.01."""

        name = "pricing"
        seen: float | None = None

        def on_response(self, ctx: CallContext, response: pb.ChatCompletionResponse) -> None:
            ctx.cost = 0.01

        async def on_finish(self, ctx: CallContext) -> None:
            Pricing.seen = ctx.cost

    cache = build_cache(cache_config(semantic={"threshold": 0.8}), "", embedder=Priced())
    await cache.open()
    chat = engine(upstream, [Pricing(), CachePlugin(cache)])
    await chat.create(ask("what is the capital of france"))
    assert Pricing.seen == pytest.approx(0.0101)
