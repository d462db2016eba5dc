"""Time limits in-process (issue 8, section 2): ttft_s and stream_idle_s, per provider, per
deployment and per target; a timeout falls back without a retry unless retries.retry_timeouts.

The fake upstream is an ``httpx.MockTransport`` with async handlers that sleep: the limits are
tenths of a second, so every test ends in well under a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from service.engine import ChatEngine, ChatError
from service.providers import ProviderContext, build_provider
from switchyard.config import ConfigError, TimeoutConfig, parse_config
from switchyard.v1 import chat_pb2 as pb
from tests.inprocess import delta, request, usage

AsyncHandler = Callable[[httpx.Request], Awaitable[httpx.Response]]

# The limit a test's silent upstream overstays; anything that waits for it has failed.
LONG_S = 5.0
SHORT_S = 0.2


class Upstream:
    """Each provider ``name`` answers at ``https://{name}.example``; handlers are popped per call
    (the last repeats), and every request is noted with its timeout extension."""

    def __init__(self, **replies: list[AsyncHandler]) -> None:
        self.replies = replies
        self.seen: list[str] = []
        self.timeouts: list[dict[str, float]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host.split(".")[0]
        self.seen.append(host)
        self.timeouts.append(request.extensions["timeout"])
        handlers = self.replies[host]
        return await (handlers.pop(0) if len(handlers) > 1 else handlers[0])(request)


def ok(text: str = "hello", after_s: float = 0.0) -> AsyncHandler:
    body = {
        "id": "r",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
    }

    async def handler(_r: httpx.Request) -> httpx.Response:
        await asyncio.sleep(after_s)
        return httpx.Response(200, json=body)

    return handler


def silent() -> AsyncHandler:
    """Accepts the call and never answers (within any test's limits)."""
    return ok(after_s=LONG_S)


def stream(*events: dict[str, Any] | float) -> AsyncHandler:
    """An SSE answer: each dict is a chunk, each number a pause (seconds) before the next."""

    async def body() -> AsyncIterator[bytes]:
        for event in events:
            if isinstance(event, dict):
                yield b"data: " + orjson.dumps(event) + b"\n\n"
            else:
                await asyncio.sleep(event)
        yield b"data: [DONE]\n\n"

    async def handler(_r: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    return handler


def good_stream() -> AsyncHandler:
    return stream(delta(role="assistant"), delta("Hello"), delta(" world"), delta(finish="stop"), usage())


def build(upstream: Upstream, **sections: Any) -> ChatEngine:
    retries = {"max_retries": 1, "backoff_initial_ms": 1, "backoff_max_ms": 1, **sections.pop("retries", {})}
    providers = sections.pop("providers", {})
    raw = {
        "routing": {"default_provider": "primary"},
        "retries": retries,
        "timeouts": {"ttft_s": LONG_S * 4, "stream_idle_s": LONG_S * 4},
        "providers": {
            name: {
                "kind": "openai",
                "base_url": f"https://{name}.example/v1",
                "keys": [{"value": "k"}],
                **providers.get(name, {}),
            }
            for name in ("primary", "backup")
        },
        **sections,
    }
    config = parse_config(raw, env={})
    context = ProviderContext(config.timeouts, transport=httpx.MockTransport(upstream))
    return ChatEngine(config, {n: build_provider(p, context) for n, p in config.providers.items()})


def quick_primary() -> dict[str, Any]:
    return {"primary": {"timeouts": {"ttft_s": SHORT_S, "stream_idle_s": SHORT_S}}}


async def collect(
    engine: ChatEngine, req: pb.ChatCompletionRequest, into: list[pb.ChatCompletionChunk] | None = None
) -> list[pb.ChatCompletionChunk]:
    """The stream's chunks; ``into`` keeps those that came before an error."""
    chunks = [] if into is None else into
    async for chunk in engine.create_stream(req):
        chunks.append(chunk)
    return chunks


def text_of(chunks: list[pb.ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.text for c in chunks if c.choices)


# ---------------------------------------------------------------- time to first token


async def test_a_silent_unary_primary_falls_back_after_ttft_without_a_retry() -> None:
    upstream = Upstream(primary=[silent()], backup=[ok("rescued")])
    engine = build(upstream, providers=quick_primary())
    started = time.perf_counter()
    response = await engine.create(request(fallbacks=["backup/m"]))
    elapsed = time.perf_counter() - started
    assert response.choices[0].message.text == "rescued"
    assert upstream.seen == ["primary", "backup"]  # max_retries is 1: no retry of the timeout
    [attempt] = response.extra_fields.attempts
    assert (attempt.provider, attempt.error_type, attempt.status_code) == ("primary", "timeout", 0)
    assert "ttft_s" in attempt.message
    assert SHORT_S <= elapsed < SHORT_S + 1.0


async def test_a_stream_without_content_falls_back_after_ttft() -> None:
    # The role chunk comes at once, then nothing: a role chunk is no first token.
    upstream = Upstream(primary=[stream(delta(role="assistant"), LONG_S)], backup=[good_stream()])
    engine = build(upstream, providers=quick_primary())
    started = time.perf_counter()
    chunks = await collect(engine, request(stream=True, fallbacks=["backup/m"]))
    assert time.perf_counter() - started < SHORT_S + 1.0
    assert text_of(chunks) == "Hello world"
    assert upstream.seen == ["primary", "backup"]
    assert [a.error_type for a in chunks[0].extra_fields.attempts] == ["timeout"]
    assert {c.extra_fields.provider for c in chunks} == {"backup"}


async def test_retry_timeouts_retries_the_same_target_first() -> None:
    upstream = Upstream(primary=[silent()], backup=[ok("rescued")])
    engine = build(upstream, providers=quick_primary(), retries={"retry_timeouts": True})
    response = await engine.create(request(fallbacks=["backup/m"]))
    assert response.choices[0].message.text == "rescued"
    assert upstream.seen == ["primary", "primary", "backup"]
    assert [a.error_type for a in response.extra_fields.attempts] == ["timeout", "timeout"]


async def test_a_timeout_without_a_fallback_is_a_504() -> None:
    upstream = Upstream(primary=[silent()])
    engine = build(upstream, providers=quick_primary())
    with pytest.raises(ChatError) as caught:
        await engine.create(request())
    assert caught.value.body.status_code == 504
    assert caught.value.body.error.type == "timeout"
    assert upstream.seen == ["primary"]


async def test_an_answer_inside_ttft_is_not_cut() -> None:
    upstream = Upstream(primary=[ok("slow but fine", after_s=SHORT_S / 4)])
    engine = build(upstream, providers=quick_primary())
    response = await engine.create(request(fallbacks=["backup/m"]))
    assert response.choices[0].message.text == "slow but fine"
    assert upstream.seen == ["primary"]


# ---------------------------------------------------------------- silence mid-stream


async def test_a_stream_that_stalls_after_content_ends_with_a_timeout_error() -> None:
    upstream = Upstream(
        primary=[stream(delta(role="assistant"), delta("partial"), LONG_S)], backup=[good_stream()]
    )
    engine = build(upstream, providers=quick_primary())
    received: list[pb.ChatCompletionChunk] = []
    started = time.perf_counter()
    with pytest.raises(ChatError) as caught:
        await collect(engine, request(stream=True, fallbacks=["backup/m"]), received)
    assert time.perf_counter() - started < SHORT_S + 1.0
    assert text_of(received) == "partial"
    assert caught.value.body.status_code == 504
    assert caught.value.body.error.type == "timeout"
    assert "stream_idle_s" in caught.value.body.error.message
    assert upstream.seen == ["primary"]  # content had gone out: no fallback (yet: issue 8 §3)


async def test_pauses_shorter_than_stream_idle_are_fine() -> None:
    pause = SHORT_S / 4
    upstream = Upstream(
        primary=[stream(delta(role="assistant"), delta("a"), pause, delta("b"), pause, delta(finish="stop"))]
    )
    engine = build(upstream, providers=quick_primary())
    chunks = await collect(engine, request(stream=True))
    assert text_of(chunks) == "ab"


async def test_stream_idle_does_not_apply_before_the_first_token() -> None:
    # A reasoning model: silent longer than stream_idle_s before its first token, within ttft_s.
    thinking = 3 * SHORT_S
    providers = {"primary": {"timeouts": {"ttft_s": LONG_S, "stream_idle_s": SHORT_S}}}
    upstream = Upstream(
        primary=[stream(delta(role="assistant"), thinking, delta("answer"), delta(finish="stop"))]
    )
    engine = build(upstream, providers=providers)
    chunks = await collect(engine, request(stream=True))
    assert text_of(chunks) == "answer"


# ---------------------------------------------------------------- the caller's deadline


async def test_the_callers_deadline_still_bounds_everything() -> None:
    upstream = Upstream(primary=[silent()], backup=[silent()])
    engine = build(upstream)  # ttft_s far longer than the caller's deadline
    started = time.perf_counter()
    with pytest.raises(ChatError) as caught:
        await engine.create(request(fallbacks=["backup/m"]), timeout_s=SHORT_S)
    assert time.perf_counter() - started < SHORT_S + 1.0
    assert caught.value.body.error.type == "timeout"
    assert "deadline" in caught.value.body.error.message
    assert upstream.seen == ["primary"]


# ---------------------------------------------------------------- overrides


def _deployment(**limits: Any) -> dict[str, Any]:
    target: dict[str, Any] = {"provider": "primary", "model": "m"}
    if "target" in limits:
        target["timeouts"] = limits["target"]
    deployment: dict[str, Any] = {"targets": [target], "fallbacks": ["backup/m"]}
    if "deployment" in limits:
        deployment["timeouts"] = limits["deployment"]
    return {"dep": deployment}


async def test_a_target_override_tightens_its_providers_limit() -> None:
    upstream = Upstream(primary=[silent()], backup=[ok("rescued")])
    engine = build(upstream, deployments=_deployment(target={"ttft_s": SHORT_S}))
    started = time.perf_counter()
    response = await engine.create(request(model="dep"))
    assert time.perf_counter() - started < SHORT_S + 1.0
    assert response.choices[0].message.text == "rescued"
    assert upstream.seen == ["primary", "backup"]


async def test_a_target_override_loosens_its_providers_limit() -> None:
    # The provider's limit would cut this answer; the deployment's target gives it more time.
    upstream = Upstream(primary=[ok("thought hard", after_s=2 * SHORT_S)], backup=[ok("rescued")])
    engine = build(
        upstream, providers=quick_primary(), deployments=_deployment(target={"ttft_s": 10 * SHORT_S})
    )
    response = await engine.create(request(model="dep"))
    assert response.choices[0].message.text == "thought hard"
    assert upstream.seen == ["primary"]


async def test_a_deployment_override_applies_to_its_streams() -> None:
    primary = stream(delta(role="assistant"), delta("partial"), LONG_S)
    upstream = Upstream(primary=[primary])
    engine = build(upstream, deployments=_deployment(deployment={"stream_idle_s": SHORT_S}))
    with pytest.raises(ChatError) as caught:
        await collect(engine, request(model="dep", stream=True))
    assert "stream_idle_s" in caught.value.body.error.message


async def test_a_targets_connect_limit_reaches_the_transport() -> None:
    upstream = Upstream(primary=[ok()])
    engine = build(
        upstream,
        providers={"primary": {"timeouts": {"connect_s": 3}}},
        deployments=_deployment(target={"connect_s": 1.5}),
    )
    await engine.create(request(model="dep"))
    await engine.create(request(model="primary/m"))
    assert [t["connect"] for t in upstream.timeouts] == [1.5, 3]
    # The socket's read limit is a backstop, never shorter than the engine's own limits.
    assert upstream.timeouts[0]["read"] == LONG_S * 4


# ---------------------------------------------------------------- config


def _parse(**raw: Any) -> Any:
    providers = raw.pop("providers", {"p": {"kind": "openai", "keys": ["k"]}})
    return parse_config({"providers": providers, "routing": {"default_provider": "p"}, **raw}, env={})


def test_defaults_leave_reasoning_models_minutes() -> None:
    limits = _parse().timeouts
    assert limits == TimeoutConfig(connect_s=5.0, ttft_s=180.0, stream_idle_s=90.0, total_s=600.0)
    assert _parse().retries.retry_timeouts is False


def test_read_s_still_works_and_sets_both_silences() -> None:
    config = _parse(timeouts={"connect_s": 2, "read_s": 2, "total_s": 20})
    assert config.timeouts == TimeoutConfig(connect_s=2, ttft_s=2, stream_idle_s=2, total_s=20)
    assert config.providers["p"].timeouts == config.timeouts
    explicit = _parse(timeouts={"read_s": 2, "ttft_s": 30}).timeouts
    assert (explicit.ttft_s, explicit.stream_idle_s) == (30, 2)


def test_the_most_specific_limit_wins() -> None:
    config = _parse(
        timeouts={"ttft_s": 100, "stream_idle_s": 50, "connect_s": 4},
        providers={"p": {"kind": "openai", "keys": ["k"], "timeouts": {"ttft_s": 200}}},
        deployments={
            "d": {
                "timeouts": {"stream_idle_s": 20},
                "targets": [
                    {"provider": "p", "model": "a", "timeouts": {"stream_idle_s": 10, "connect_s": 1}},
                    {"provider": "p", "model": "b"},
                ],
            },
            "plain": {"targets": [{"provider": "p", "model": "c"}]},
        },
    )
    provider = config.providers["p"]
    assert "timeouts" not in provider.options
    assert provider.timeouts == TimeoutConfig(connect_s=4, ttft_s=200, stream_idle_s=50, total_s=600)
    first, second = config.deployments["d"].targets
    assert first.timeouts == TimeoutConfig(connect_s=1, ttft_s=200, stream_idle_s=10, total_s=600)
    assert second.timeouts == TimeoutConfig(connect_s=4, ttft_s=200, stream_idle_s=20, total_s=600)
    assert config.deployments["plain"].targets[0].timeouts is None  # the provider's, as they are


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"timeouts": {"ttft_s": 0}}, "timeouts.ttft_s"),
        ({"timeouts": {"stream_idle": 5}}, "timeouts.stream_idle"),
        ({"timeouts": {"read_s": "soon"}}, "timeouts.ttft_s"),
        ({"retries": {"retry_timeouts": "yes"}}, "retries.retry_timeouts"),
        (
            {"providers": {"p": {"kind": "openai", "timeouts": {"ttft_s": -1}}}},
            "providers.p.timeouts.ttft_s",
        ),
        (
            {"providers": {"p": {"kind": "openai", "timeouts": {"total_s": 9}}}},
            "providers.p.timeouts.total_s",
        ),
        ({"providers": {"p": {"kind": "openai", "timeouts": [1]}}}, "providers.p.timeouts"),
        (
            {"deployments": {"d": {"timeouts": {"read_s": 3}, "targets": [{"provider": "p", "model": "m"}]}}},
            "deployments.d.timeouts.read_s",
        ),
        (
            {
                "deployments": {
                    "d": {"targets": [{"provider": "p", "model": "m", "timeouts": {"ttft_s": "x"}}]}
                }
            },
            "deployments.d.targets[0].timeouts.ttft_s",
        ),
    ],
)
def test_config_errors_name_the_key(raw: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _parse(**raw)
    assert caught.value.path == path
