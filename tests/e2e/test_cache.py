"""The response cache end to end: real Switchyard processes (one process and split), auth on,
the fake upstream counting what reaches it; the openai SDK, raw HTTP and the gRPC stub.

Each test asks its own questions (a random word in every prompt) and makes its own keys, so
entries never carry over from one test, or one mode, to the next.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import openai
import orjson
import pytest
import redis

from switchyard.v1 import admin_pb2 as apb
from switchyard.v1 import admin_pb2_grpc, chat_pb2, chat_pb2_grpc
from tests.e2e.governed import ADMIN_TOKEN, GOVERNED_ENV, admin_headers, create_key, governed_config
from tests.e2e.rpc_errors import error_body, rich_status
from tests.fakes.upstream import FakeUpstream, Reply, Usage
from tests.support import SECRETS, Stack, base_config, free_port, start_stack

CHAT = "/openai/deployments/{}/chat/completions?api-version=2024-10-21"
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module", params=["inprocess", "split"])
def cached(
    request: pytest.FixtureRequest, upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp(f"cached-{request.param}")
    config = governed_config(
        upstream_server.url, workdir, cache={"enabled": True, "store": "memory", "ttl_s": 600}
    )
    running = start_stack(request.param, config, workdir, GOVERNED_ENV)
    yield running
    running.stop()


@pytest.fixture
def http(cached: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cached.base_url, timeout=30) as client:
        yield client


def new_key(cached: Stack, **fields: Any) -> tuple[str, dict[str, Any]]:
    fields.setdefault("id", f"c-{uuid.uuid4().hex[:12]}")
    return create_key(cached.base_url, **fields)


def question(text: str = "what is the answer") -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


def ask(
    http: httpx.Client,
    secret: str,
    prompt: str,
    deployment: str = "chat",
    headers: dict[str, str] | None = None,
    **body: Any,
) -> httpx.Response:
    return http.post(
        CHAT.format(deployment),
        json={"messages": [{"role": "user", "content": prompt}], **body},
        headers={"api-key": secret, **(headers or {})},
    )


def events(response: httpx.Response) -> list[Any]:
    """The SSE payloads of a stream, the final ``[DONE]`` as the string."""
    out: list[Any] = []
    for line in response.text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else orjson.loads(data))
    return out


def debug_of(answer: dict[str, Any]) -> dict[str, Any]:
    return answer["extra_fields"].get("cache_debug", {})


def settle(seconds: float = 0.2) -> None:
    """The write happens after the answer: give it a moment."""
    time.sleep(seconds)


def test_openai_sdk_unary_miss_then_stream_hit(cached: Stack, upstream: FakeUpstream) -> None:
    secret, _ = new_key(cached)
    client = openai.AzureOpenAI(
        azure_endpoint=cached.base_url, api_key=secret, api_version="2024-10-21", max_retries=0
    )
    prompt = question()
    first = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": prompt}])
    miss = first.model_extra["extra_fields"]["cache_debug"]
    assert miss["cache_hit"] is False and len(miss["cache_id"]) == 40
    settle()
    seen = upstream.request_count
    second = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": prompt}])
    hit = second.model_extra["extra_fields"]["cache_debug"]
    assert (hit["cache_hit"], hit["hit_type"], hit["cache_id"]) == (True, "exact", miss["cache_id"])
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.usage is not None and second.usage.total_tokens == first.usage.total_tokens  # type: ignore[union-attr]
    stream = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == first.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == first.usage.total_tokens  # type: ignore[union-attr]
    assert chunks[-1].model_extra["extra_fields"]["cache_debug"]["cache_hit"] is True
    assert upstream.request_count == seen  # neither hit reached the upstream


def test_raw_http_stream_miss_then_unary_hit(
    cached: Stack, http: httpx.Client, upstream: FakeUpstream
) -> None:
    secret, _ = new_key(cached)
    prompt = question()
    streamed = ask(http, secret, prompt, stream=True)
    assert streamed.status_code == 200
    payloads = events(streamed)
    assert payloads[-1] == "[DONE]"
    assert debug_of(payloads[-2])["cache_hit"] is False  # on the final chunk
    settle()
    seen = upstream.request_count
    unary = ask(http, secret, prompt)
    assert unary.status_code == 200, unary.text
    body = unary.json()
    assert body["choices"][0]["message"]["content"] == "Hello world"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert debug_of(body)["hit_type"] == "exact"
    # And replayed as a stream: the same chunk shapes, [DONE] last, cache_debug on the last chunk.
    replay = events(ask(http, secret, prompt, stream=True))
    assert replay[-1] == "[DONE]"
    assert all(p["object"] == "chat.completion.chunk" for p in replay[:-1])
    assert debug_of(replay[-2])["cache_hit"] is True
    assert (
        "".join(c["delta"].get("content") or "" for p in replay[:-1] for c in p["choices"]) == "Hello world"
    )
    assert upstream.request_count == seen


def test_a_cut_or_failed_stream_is_never_cached(
    cached: Stack, http: httpx.Client, upstream: FakeUpstream
) -> None:
    secret, _ = new_key(cached)
    prompt = question()
    upstream.script(Reply.stream(["a", "b", "c"], break_after=2), match="chat-prod")
    upstream.script(Reply.status(500), Reply.status(500), Reply.status(500), match="gpt-fb-config")
    broken = ask(http, secret, prompt, stream=True)
    assert "error" in broken.text  # the stream ended with an error event
    settle()
    upstream.script(Reply.status(400), match="chat-prod")
    assert ask(http, secret, prompt).status_code == 400  # a failure is never stored either
    settle()
    seen = upstream.request_count
    again = ask(http, secret, prompt)
    assert again.status_code == 200
    assert debug_of(again.json())["cache_hit"] is False
    assert upstream.request_count == seen + 1


def test_two_keys_never_share_entries(cached: Stack, http: httpx.Client, upstream: FakeUpstream) -> None:
    alice, _ = new_key(cached)
    bob, _ = new_key(cached)
    prompt = question()
    upstream.script(Reply.ok("alice's private answer"), match="chat-prod")
    assert ask(http, alice, prompt).json()["choices"][0]["message"]["content"] == "alice's private answer"
    settle()
    seen = upstream.request_count
    # Bob stores nothing here, so any hit could only be Alice's entry.
    for headers in ({}, {"x-bf-cache-key": ""}, {"x-bf-cache-type": "direct"}):
        theirs = ask(http, bob, prompt, headers={"x-bf-cache-no-store": "true", **headers}).json()
        assert theirs["choices"][0]["message"]["content"] != "alice's private answer"
        assert debug_of(theirs)["cache_hit"] is False
    assert upstream.request_count == seen + 3
    assert debug_of(ask(http, alice, prompt).json())["cache_hit"] is True


def test_each_header(cached: Stack, http: httpx.Client, upstream: FakeUpstream) -> None:
    secret, _ = new_key(cached)
    prompt = question()
    # x-bf-cache-key narrows: stored under k1, found only under k1.
    ask(http, secret, prompt, headers={"x-bf-cache-key": "k1"})
    settle()
    assert (
        debug_of(ask(http, secret, prompt, headers={"x-bf-cache-no-store": "true"}).json())["cache_hit"]
        is False
    )
    assert debug_of(ask(http, secret, prompt, headers={"x-bf-cache-key": "k1"}).json())["cache_hit"] is True
    # x-bf-cache-no-store: the answer above (no key) was not stored.
    settle()
    assert (
        debug_of(ask(http, secret, prompt, headers={"x-bf-cache-type": "direct"}).json())["cache_hit"]
        is False
    )
    # x-bf-cache-type: semantic only: there is no semantic index here, so no hit.
    settle()
    assert (
        debug_of(ask(http, secret, prompt, headers={"x-bf-cache-type": "semantic"}).json())["cache_hit"]
        is False
    )
    # x-bf-cache-bypass: not seen at all.
    bypassed = ask(http, secret, prompt, headers={"x-bf-cache-bypass": "true"}).json()
    assert "cache_debug" not in bypassed["extra_fields"]
    # cache-control: no-cache: a fresh answer, stored in place of the old one.
    upstream.script(Reply.ok("fresh"), match="chat-prod")
    fresh = ask(http, secret, prompt, headers={"cache-control": "no-cache"}).json()
    assert fresh["choices"][0]["message"]["content"] == "fresh"
    settle()
    assert ask(http, secret, prompt).json()["choices"][0]["message"]["content"] == "fresh"
    # x-bf-cache-ttl: gone after it.
    short = question()
    ask(http, secret, short, headers={"x-bf-cache-ttl": "0.3"})
    settle(0.5)
    assert (
        debug_of(ask(http, secret, short, headers={"x-bf-cache-no-store": "true"}).json())["cache_hit"]
        is False
    )
    # x-bf-cache-threshold: accepted (0..1) and reported when a semantic lookup runs.
    assert ask(http, secret, question(), headers={"x-bf-cache-threshold": "0.5"}).status_code == 200


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-bf-cache-ttl", "tomorrow"),
        ("x-bf-cache-threshold", "2"),
        ("x-bf-cache-type", "fuzzy"),
        ("x-bf-cache-no-store", "maybe"),
        ("x-bf-cache-bypass", "yes"),
    ],
)
def test_bad_header_values_are_400(
    cached: Stack, http: httpx.Client, upstream: FakeUpstream, header: str, value: str
) -> None:
    secret, _ = new_key(cached)
    response = ask(http, secret, question(), headers={header: value})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "invalid_request_error"
    assert body["status_code"] == 400
    assert body["error"]["param"] == header
    assert header in body["error"]["message"]
    assert upstream.request_count == 0


def test_grpc_field_and_metadata(cached: Stack, upstream: FakeUpstream) -> None:
    secret, _ = new_key(cached)
    prompt = question()
    auth = (("api-key", secret),)
    request = chat_pb2.ChatCompletionRequest(
        deployment_id="chat",
        messages=[chat_pb2.ChatMessage(role="user", text=prompt)],
        cache=chat_pb2.CacheOptions(key="grpc-narrow"),
    )
    with grpc.insecure_channel(cached.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatCompletionsStub(channel)
        first = stub.Create(request, metadata=auth, timeout=10)
        assert first.extra_fields.cache_debug.cache_hit is False
        settle()
        seen = upstream.request_count
        # The same narrowing named by metadata finds it; the field's streaming twin too.
        plain = chat_pb2.ChatCompletionRequest()
        plain.CopyFrom(request)
        plain.ClearField("cache")
        hit = stub.Create(plain, metadata=(*auth, ("x-bf-cache-key", "grpc-narrow")), timeout=10)
        assert hit.extra_fields.cache_debug.hit_type == "exact"
        chunks = list(stub.CreateStream(request, metadata=auth, timeout=10))
        assert chunks[-1].extra_fields.cache_debug.cache_hit
        assert upstream.request_count == seen
        bad = chat_pb2.ChatCompletionRequest()
        bad.CopyFrom(request)
        bad.cache.threshold = 3
        with pytest.raises(grpc.RpcError) as caught:
            stub.Create(bad, metadata=auth, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert error_body(rich_status(caught.value)[1]).error.param == "cache.threshold"


def test_a_hit_is_a_request_for_rate_limits_and_costs_nothing(
    cached: Stack, http: httpx.Client, upstream: FakeUpstream
) -> None:
    secret, record = new_key(
        cached, rate_limit={"requests_per_minute": 3}, budget={"max_usd": 10, "reset": "1d"}
    )
    prompt = question()
    upstream.script(Reply.ok(usage=Usage(100, 50)), match="priced-dep")
    first = ask(http, secret, prompt, deployment="priced").json()
    paid = first["usage"]["cost"]["total_cost"]
    assert paid == pytest.approx(100 * 0.001 + 50 * 0.002)
    settle()
    hit = ask(http, secret, prompt, deployment="priced").json()
    assert debug_of(hit)["cache_hit"] is True
    assert hit["usage"]["total_tokens"] == 150
    assert hit["usage"]["cost"]["total_cost"] == 0
    assert ask(http, secret, prompt, deployment="priced").status_code == 200
    limited = ask(http, secret, prompt, deployment="priced")  # the fourth request in the minute
    assert limited.status_code == 429, limited.text
    usage = http.get(f"/api/keys/{record['id']}", headers=admin_headers()).json()["budget_usage"]
    assert usage["spent_usd"] == pytest.approx(paid)  # the two hits cost nothing
    assert usage.get("reserved_usd", 0) == 0


def test_the_request_log_and_metrics_record_hits(cached: Stack, http: httpx.Client) -> None:
    secret, record = new_key(cached)
    prompt = question()
    ask(http, secret, prompt)
    settle()
    ask(http, secret, prompt)
    deadline = time.monotonic() + 5
    entries: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        entries = http.get("/api/logs", params={"key_id": record["id"]}, headers=admin_headers()).json()[
            "entries"
        ]
        if len(entries) == 2:
            break
        time.sleep(0.05)
    hit, miss = entries  # newest first
    assert (hit["cache_hit_type"], miss["cache_hit_type"]) == ("exact", "miss")
    assert hit["cache_id"] == miss["cache_id"]
    assert hit["provider"] == "azure" and hit["model_served"] == "chat-prod"
    assert hit["cost"] == 0
    if cached.mode == "split":
        return  # the service's own series are on its telemetry.metrics_port, not the gateway's
    metrics = http.get("/metrics").text
    assert 'switchyard_cache_requests_total{outcome="hit",type="exact"}' in metrics


def test_admin_clears_and_counts(cached: Stack, http: httpx.Client) -> None:
    secret, record = new_key(cached)
    prompts = [question() for _ in range(3)]
    ids = [debug_of(ask(http, secret, p).json())["cache_id"] for p in prompts]
    settle()
    stats = http.get("/api/cache/stats", headers=admin_headers()).json()
    assert stats["enabled"] is True and stats["store"] == "memory"
    assert stats["entries"] >= 3 and stats["bytes"] > 0 and stats["misses"] >= 3
    # One entry by id (REST), then the rest of the partition (gRPC).
    cleared = http.delete(f"/api/cache/entries/{ids[0]}", headers=admin_headers())
    assert cleared.status_code == 200 and cleared.json()["deleted"] == 1
    assert (
        debug_of(ask(http, secret, prompts[0], headers={"x-bf-cache-no-store": "true"}).json())["cache_hit"]
        is False
    )
    assert debug_of(ask(http, secret, prompts[1]).json())["cache_hit"] is True
    with grpc.insecure_channel(cached.grpc_target) as channel:
        admin = admin_pb2_grpc.AdminStub(channel)
        done = admin.ClearCachePartition(
            apb.ClearCachePartitionRequest(partition=f"key:{record['id']}"),
            metadata=[("authorization", f"Bearer {ADMIN_TOKEN}")],
            timeout=10,
        )
        assert done.deleted == 2
        with pytest.raises(grpc.RpcError) as caught:
            admin.GetCacheStats(apb.GetCacheStatsRequest(), metadata=[("api-key", secret)], timeout=10)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    assert debug_of(ask(http, secret, prompts[1]).json())["cache_hit"] is False
    assert http.post("/api/cache/clear", json={}, headers=admin_headers()).status_code == 400
    assert http.get("/api/cache/stats", headers={"api-key": secret}).status_code == 403


def test_no_secret_in_logs(cached: Stack) -> None:
    logs = cached.logs()
    for secret in (*SECRETS, ADMIN_TOKEN):
        assert secret not in logs


# ---------------------------------------------------------------- two replicas, one Redis


@pytest.fixture(scope="module")
def redis_replicas(
    upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Stack]]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except (redis.exceptions.RedisError, OSError) as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    finally:
        client.close()
    stacks: list[Stack] = []
    try:
        for name in ("a", "b"):
            workdir = tmp_path_factory.mktemp(f"cache-replica-{name}")
            config = base_config(upstream_server.url, free_port(), free_port())
            config["store"] = {"url": f"sqlite:///{workdir / 'switchyard.db'}", "redis_url": REDIS_URL}
            config["cache"] = {"enabled": True, "store": "redis"}
            stacks.append(start_stack("inprocess", config, workdir))
        yield stacks
    finally:
        for stack in stacks:
            stack.stop()


def test_replica_b_serves_what_replica_a_stored(redis_replicas: list[Stack], upstream: FakeUpstream) -> None:
    a, b = redis_replicas
    prompt = question()
    body = {"messages": [{"role": "user", "content": prompt}]}
    first = httpx.post(a.base_url + CHAT.format("chat"), json=body, timeout=10).json()
    assert debug_of(first)["cache_hit"] is False
    settle()
    seen = upstream.request_count
    second = httpx.post(b.base_url + CHAT.format("chat"), json=body, timeout=10).json()
    assert debug_of(second)["cache_hit"] is True
    assert debug_of(second)["cache_id"] == debug_of(first)["cache_id"]
    assert second["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]
    assert upstream.request_count == seen


# ---------------------------------------------------------------- semantic, through the embeddings engine


@pytest.fixture(scope="module", params=["inprocess", "split"])
def semantic(
    request: pytest.FixtureRequest, upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The semantic cache on the embedded store (SQLite entries, the built-in vector index),
    embedding with OpenAI's text-embedding-3-small at the fake upstream (hashed bag-of-words)."""
    workdir = tmp_path_factory.mktemp(f"semantic-{request.param}")
    cache = {
        "enabled": True,
        "store": "sqlite",
        "sqlite_path": str(workdir / "cache.db"),
        "semantic": {
            "enabled": True,
            "embedding_model": "openai/text-embedding-3-small",
            "threshold": 0.75,
            "path": str(workdir / "vectors"),
        },
    }
    running = start_stack(
        request.param, governed_config(upstream_server.url, workdir, cache=cache), workdir, GOVERNED_ENV
    )
    yield running
    running.stop()


def chat_calls(upstream: FakeUpstream) -> int:
    return sum(1 for r in upstream.requests if r.path.endswith("/chat/completions"))


def test_a_paraphrase_is_served_from_the_semantic_cache(semantic: Stack, upstream: FakeUpstream) -> None:
    secret, _ = new_key(semantic)
    other, _ = new_key(semantic)
    topic = uuid.uuid4().hex[:8]  # a word no other test uses, so no other entry is near
    with httpx.Client(base_url=semantic.base_url, timeout=30) as http:
        upstream.script(Reply.ok(f"the capital of {topic} is paris"), match="chat-prod")
        first = ask(http, secret, f"what is the capital of {topic}").json()
        assert debug_of(first)["cache_hit"] is False
        settle(0.3)
        before = chat_calls(upstream)
        hit = ask(http, secret, f"please tell me the capital of {topic}").json()
        debug = debug_of(hit)
        assert (debug["cache_hit"], debug["hit_type"]) == (True, "semantic"), debug
        assert debug["similarity"] >= 0.75 and debug["threshold"] == pytest.approx(0.75)
        assert debug["provider_used"] == "openai" and debug["model_used"] == "text-embedding-3-small"
        assert debug["input_tokens"] > 0
        assert hit["choices"][0]["message"]["content"] == f"the capital of {topic} is paris"
        assert 0 < hit["usage"]["cost"]["total_cost"] < 1e-5  # the embedding's cost, nothing upstream
        # A streaming paraphrase is replayed as a stream.
        replay = events(ask(http, secret, f"capital of {topic}, please", stream=True))
        assert replay[-1] == "[DONE]" and debug_of(replay[-2])["hit_type"] == "semantic"
        assert chat_calls(upstream) == before
        # Unrelated: a miss; another key: never this entry; a stricter threshold: a miss.
        assert debug_of(ask(http, secret, f"how do I bake bread in {topic}").json())["cache_hit"] is False
        theirs = ask(
            http, other, f"please tell me the capital of {topic}", headers={"x-bf-cache-no-store": "true"}
        )
        assert debug_of(theirs.json())["cache_hit"] is False
        strict = ask(
            http, secret, f"tell me the capital of {topic} now", headers={"x-bf-cache-threshold": "0.99"}
        )
        assert debug_of(strict.json())["cache_hit"] is False
        assert chat_calls(upstream) == before + 3
