"""The exact-entry stores (memory, SQLite, Redis) and the vector indexes (built-in, Qdrant local),
through the same protocol; SQLite and the built-in index survive a restart."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from service.plugins.cache.entries import Entry, fold_stream
from service.plugins.cache.semantic import BuiltinIndex, HashedEmbedder, QdrantIndex, Scope, VectorIndex
from service.plugins.cache.stores import EntryStore, MemoryStore, RedisStore, SqliteStore
from switchyard.v1 import chat_pb2 as pb

REDIS_URL = os.environ.get("SY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_reachable() -> str | None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except (redis.exceptions.RedisError, OSError) as exc:
        return f"Redis is not reachable at {REDIS_URL} (set SY_TEST_REDIS_URL): {exc}"
    finally:
        client.close()
    return None


def entry(cache_id: str, partition: str = "key:a", cache_key: str = "", ttl_s: float = 60) -> Entry:
    answer = pb.ChatCompletionResponse(id="r", model="m", choices=[pb.Choice(index=0, finish_reason="stop")])
    now = time.time()
    return Entry(cache_id, partition, cache_key, "azure", "m", now, now + ttl_s, answer.SerializeToString())


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EntryStore]:
    made: EntryStore
    if request.param == "memory":
        made = MemoryStore(100)
    elif request.param == "sqlite":
        made = SqliteStore(str(tmp_path / "cache.db"))
    else:
        reason = redis_reachable()
        if reason:
            pytest.skip(reason)
        made = RedisStore(REDIS_URL, prefix=f"sy:cachetest:{uuid.uuid4().hex[:8]}:")
    await made.open()
    yield made
    await made.aclose()


async def test_put_get_delete(store: EntryStore) -> None:
    now = time.time()
    assert await store.get("a1", now) is None
    await store.put(entry("a1"))
    got = await store.get("a1", now)
    assert got is not None
    assert got.response().id == "r"
    assert got.partition == "key:a"
    entries, size = await store.usage(now)
    assert entries == 1
    assert size >= got.size  # Redis counts its whole value (a small header, then the answer)
    assert await store.delete("a1")
    assert not await store.delete("a1")
    assert await store.get("a1", now) is None


async def test_expired_entries_are_not_served(store: EntryStore) -> None:
    await store.put(entry("short", ttl_s=0.05))
    assert await store.get("short", time.time()) is not None
    await asyncio.sleep(0.1)
    assert await store.get("short", time.time()) is None


async def test_clear_a_partition_or_one_cache_key(store: EntryStore) -> None:
    await store.put(entry("x1", "key:a"))
    await store.put(entry("x2", "key:a", "narrow"))
    await store.put(entry("x3", "key:b"))
    assert sorted(await store.clear("key:a", "narrow")) == ["x2"]
    assert await store.get("x1", time.time()) is not None
    assert sorted(await store.clear("key:a", None)) == ["x1"]
    assert await store.get("x1", time.time()) is None
    assert await store.get("x3", time.time()) is not None


async def test_redis_expires_the_entries_itself() -> None:
    reason = redis_reachable()
    if reason:
        pytest.skip(reason)
    prefix = f"sy:cachetest:{uuid.uuid4().hex[:8]}:"
    store = RedisStore(REDIS_URL, prefix=prefix)
    await store.open()
    try:
        await store.put(entry("ttl", ttl_s=30))
        client = redis.Redis.from_url(REDIS_URL)
        ttl_ms = client.pttl(f"{prefix}e:ttl")
        client.close()
        assert 29_000 < ttl_ms <= 30_000
    finally:
        await store.aclose()


async def test_memory_store_is_bounded() -> None:
    store = MemoryStore(2)
    for name in ("a", "b", "c"):
        await store.put(entry(name))
    assert await store.get("a", time.time()) is None
    assert (await store.usage(time.time()))[0] == 2


async def test_sqlite_entries_survive_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "cache.db")
    first = SqliteStore(path)
    await first.open()
    await first.put(entry("kept"))
    await first.aclose()
    second = SqliteStore(path)
    await second.open()
    try:
        got = await second.get("kept", time.time())
        assert got is not None
        assert got.response().choices[0].finish_reason == "stop"
    finally:
        await second.aclose()


def test_an_entry_round_trips_as_bytes() -> None:
    original = entry("id", "team:t", "k")
    assert Entry.loads(original.dumps()) == original


# ---------------------------------------------------------------- streams folded


def test_a_stream_folds_into_one_answer() -> None:
    chunks = [
        pb.ChatCompletionChunk(id="c", model="m", created=5, extra_json='{"prompt_filter_results":[]}'),
        pb.ChatCompletionChunk(
            choices=[pb.Choice(index=0, delta=pb.ChatMessage(role="assistant", text="Hel"))]
        ),
        pb.ChatCompletionChunk(choices=[pb.Choice(index=0, delta=pb.ChatMessage(text="lo"))]),
        pb.ChatCompletionChunk(
            choices=[
                pb.Choice(
                    index=0,
                    delta=pb.ChatMessage(
                        tool_calls=[
                            pb.ToolCall(
                                index=0,
                                id="t",
                                type="function",
                                function=pb.FunctionCall(name="f", arguments='{"a"'),
                            )
                        ]
                    ),
                )
            ]
        ),
        pb.ChatCompletionChunk(
            choices=[
                pb.Choice(
                    index=0,
                    delta=pb.ChatMessage(
                        tool_calls=[pb.ToolCall(index=0, function=pb.FunctionCall(arguments=":1}"))]
                    ),
                    finish_reason="tool_calls",
                )
            ]
        ),
        pb.ChatCompletionChunk(usage=pb.Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)),
    ]
    folded = fold_stream(chunks)
    assert folded is not None
    message = folded.choices[0].message
    assert (folded.id, folded.model, folded.created) == ("c", "m", 5)
    assert message.role == "assistant"
    assert message.text == "Hello"
    assert message.tool_calls[0].function.name == "f"
    assert message.tool_calls[0].function.arguments == '{"a":1}'
    assert folded.choices[0].finish_reason == "tool_calls"
    assert folded.usage.total_tokens == 5
    assert folded.extra_json == '{"prompt_filter_results":[]}'


def test_a_stream_with_audio_is_not_folded() -> None:
    chunks = [
        pb.ChatCompletionChunk(choices=[pb.Choice(index=0, delta=pb.ChatMessage(audio=pb.Audio(data="x")))])
    ]
    assert fold_stream(chunks) is None


# ---------------------------------------------------------------- vector indexes


QDRANT_URL = os.environ.get("SY_TEST_QDRANT_URL", "")


@pytest.fixture(params=["builtin", "qdrant-local", "qdrant-server"])
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorIndex]:
    made: VectorIndex
    if request.param == "builtin":
        made = BuiltinIndex(str(tmp_path / "vectors.db"))
    elif request.param == "qdrant-local":
        made = QdrantIndex(path=str(tmp_path / "q"))
    else:
        if not QDRANT_URL:
            pytest.skip("no Qdrant server on this machine: set SY_TEST_QDRANT_URL to test the server mode")
        made = QdrantIndex(url=QDRANT_URL)
    await made.open()
    yield made
    await made.aclose()


async def test_the_index_finds_the_nearest_in_its_scope_only(index: VectorIndex) -> None:
    embed = HashedEmbedder(dimension=64)
    here = Scope("hashed:64", "key:a", "", "s1")
    await index.add(here, "paris", embed.vector("what is the capital of france"), time.time() + 60)
    await index.add(here, "cake", embed.vector("how do i bake a chocolate cake"), time.time() + 60)
    other_tenant = Scope("hashed:64", "key:b", "", "s1")
    await index.add(
        other_tenant, "theirs", embed.vector("what is the capital of france please"), time.time() + 60
    )
    match = await index.nearest(here, embed.vector("what is the capital city of france"), time.time())
    assert match is not None
    assert match.cache_id == "paris"
    assert match.similarity > 0.8
    assert (
        await index.nearest(Scope("hashed:64", "key:a", "", "other-scope"), embed.vector("x"), time.time())
        is None
    )
    assert await index.nearest(Scope("other:64", "key:a", "", "s1"), embed.vector("x"), time.time()) is None
    await index.clear("key:a", None)
    assert await index.nearest(here, embed.vector("what is the capital of france"), time.time()) is None
    assert await index.nearest(other_tenant, embed.vector("capital of france"), time.time()) is not None
    await index.delete(["theirs"])
    assert await index.nearest(other_tenant, embed.vector("capital of france"), time.time()) is None


async def test_expired_vectors_are_not_matched(index: VectorIndex) -> None:
    embed = HashedEmbedder(dimension=64)
    scope = Scope("hashed:64", "key:a", "", "s")
    await index.add(scope, "old", embed.vector("hello world"), time.time() - 1)
    assert await index.nearest(scope, embed.vector("hello world"), time.time()) is None


async def test_builtin_vectors_survive_a_restart(tmp_path: Path) -> None:
    embed = HashedEmbedder(dimension=64)
    scope = Scope("hashed:64", "key:a", "", "s")
    first = BuiltinIndex(str(tmp_path / "v.db"))
    await first.open()
    await first.add(scope, "kept", embed.vector("hello world"), time.time() + 60)
    await first.aclose()
    second = BuiltinIndex(str(tmp_path / "v.db"))
    await second.open()
    try:
        match = await second.nearest(scope, embed.vector("hello world"), time.time())
        assert match is not None
        assert match.cache_id == "kept"
    finally:
        await second.aclose()
