"""The engine in-process, over httpx.MockTransport: streams that end imperfectly, streams ended
at shutdown, request bodies that cannot be serialised, and request ids. Milliseconds, no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from service.engine import ChatEngine, ChatError
from service.plugins import GovernancePlugin
from service.providers import ProviderContext, build_provider
from service.records import LogEntry
from service.server import start_governance
from service.stats import ServiceStats
from switchyard.config import Config, parse_config
from switchyard.v1 import chat_pb2 as pb

Handler = Callable[[httpx.Request], httpx.Response]


class Upstream:
    """A MockTransport whose answers the test scripts, one handler per call (the last repeats)."""

    def __init__(self) -> None:
        self.handlers: list[Handler] = []
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        handler = self.handlers[min(self.calls, len(self.handlers) - 1)]
        self.calls += 1
        return handler(request)


class Engine:
    """A ChatEngine on SQLite and in-process counters, with the request log captured."""

    def __init__(self, engine: ChatEngine, upstream: Upstream, logged: list[LogEntry]) -> None:
        self.engine, self.upstream, self.logged = engine, upstream, logged

    async def stream(self, request: pb.ChatCompletionRequest, **kw: Any) -> list[pb.ChatCompletionChunk]:
        return [chunk async for chunk in self.engine.create_stream(request, **kw)]


def _config(tmp: Path) -> Config:
    return parse_config(
        {
            "auth": {"required": False},
            "routing": {"default_provider": "up"},
            "retries": {"max_retries": 0, "backoff_initial_ms": 1, "backoff_max_ms": 1},
            "store": {"url": f"sqlite:///{tmp / 'sy.db'}"},
            "providers": {
                "up": {"kind": "openai", "base_url": "https://up.example/v1", "keys": [{"value": "k-1"}]},
                "fb": {"kind": "openai", "base_url": "https://fb.example/v1", "keys": [{"value": "k-2"}]},
            },
        },
        env={},
    )


@pytest.fixture
async def sy(tmp_path: Path) -> AsyncIterator[Engine]:
    config = _config(tmp_path)
    upstream = Upstream()
    stats = ServiceStats()
    context = ProviderContext(config.timeouts, stats, transport=httpx.MockTransport(upstream))
    providers = {name: build_provider(p, context) for name, p in config.providers.items()}
    governance = await start_governance(config)
    logged: list[LogEntry] = []
    governance.record = logged.append  # type: ignore[method-assign]
    engine = ChatEngine(config, providers, [GovernancePlugin(governance)], stats=stats)
    yield Engine(engine, upstream, logged)
    await governance.aclose()


def request(model: str = "m", **fields: Any) -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(model=model, messages=[pb.ChatMessage(role="user", text="hi")], **fields)


def chunk(text: str | None = None, finish: str | None = None, usage: bool = False) -> bytes:
    body: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "model": "m", "created": 1}
    if usage:
        body["choices"] = []
        body["usage"] = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    else:
        delta = {"content": text} if text is not None else {}
        body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return orjson.dumps(body)


def sse(*payloads: bytes) -> Handler:
    raw = b"".join(b"data: " + p + b"\n\n" for p in payloads)
    return lambda _request: httpx.Response(200, content=raw, headers={"content-type": "text/event-stream"})


DONE = b"[DONE]"
WHOLE = (chunk("Hel"), chunk("lo"), chunk(finish="stop"), chunk(usage=True))


def texts(chunks: list[pb.ChatCompletionChunk]) -> str:
    return "".join(c.delta.text for chunk in chunks for c in chunk.choices)


# ---------------------------------------------------------------- no [DONE]


async def test_a_stream_whose_final_chunk_and_usage_arrived_is_complete_without_done(sy: Engine) -> None:
    sy.upstream.handlers = [sse(*WHOLE)]  # closes cleanly, no [DONE]
    wanted = request(stream_options=pb.StreamOptions(include_usage=True))
    chunks = await sy.stream(wanted)
    assert texts(chunks) == "Hello"
    assert chunks[-1].usage.total_tokens == 5
    (entry,) = sy.logged
    assert (entry.status, entry.total_tokens) == (200, 5)


async def test_search_results_on_the_usage_chunk_reach_a_caller_who_did_not_ask_for_usage(
    sy: Engine,
) -> None:
    results = orjson.loads(chunk(usage=True)) | {"citations": ["https://a.example"]}
    sy.upstream.handlers = [sse(*WHOLE[:3], orjson.dumps(results), DONE)]
    chunks = await sy.stream(request())
    assert list(chunks[-1].citations) == ["https://a.example"]
    assert not any(c.HasField("usage") for c in chunks)  # not asked for: it stays out
    (entry,) = sy.logged
    assert entry.total_tokens == 5  # still accounted
    sy.upstream.handlers = [sse(*WHOLE, DONE)]
    plain = await sy.stream(request())
    assert plain[-1].choices and not plain[-1].HasField("usage")  # no results: the chunk goes


async def test_a_stream_cut_before_its_usage_is_still_broken(sy: Engine) -> None:
    sy.upstream.handlers = [sse(chunk("Hel"), chunk("lo"), chunk(finish="stop"))]
    with pytest.raises(ChatError) as caught:
        await sy.stream(request())
    assert caught.value.body.type == "upstream_stream_broken"
    assert sy.logged[0].status == 502


async def test_a_stream_cut_before_its_final_chunk_is_broken(sy: Engine) -> None:
    sy.upstream.handlers = [sse(chunk("Hel"), chunk("lo"))]
    with pytest.raises(ChatError) as caught:
        await sy.stream(request())
    assert caught.value.body.type == "upstream_stream_broken"


# ---------------------------------------------------------------- malformed chunks


async def test_one_malformed_chunk_is_skipped_and_counted(sy: Engine) -> None:
    sy.upstream.handlers = [sse(chunk("Hel"), b"{not json", chunk("lo"), *WHOLE[2:], DONE)]
    chunks = await sy.stream(request())
    assert texts(chunks) == "Hello"
    assert sy.engine.stats.malformed_stream_chunks == 1
    assert sy.logged[0].status == 200


async def test_a_chunk_of_the_wrong_shape_is_skipped_too(sy: Engine) -> None:
    wrong = orjson.dumps({"choices": "not a list"})
    sy.upstream.handlers = [sse(chunk("Hel"), wrong, b"[1,2]", chunk("lo"), *WHOLE[2:], DONE)]
    assert texts(await sy.stream(request())) == "Hello"
    assert sy.engine.stats.malformed_stream_chunks == 2


async def test_a_run_of_malformed_chunks_fails_the_stream(sy: Engine) -> None:
    sy.upstream.handlers = [sse(chunk("Hel"), b"x", b"y", b"z", chunk("lo"), *WHOLE[2:], DONE)]
    with pytest.raises(ChatError) as caught:
        await sy.stream(request())
    assert (caught.value.body.status_code, caught.value.body.type) == (502, "upstream_bad_response")


async def test_a_stream_with_nothing_valid_falls_back(sy: Engine) -> None:
    sy.upstream.handlers = [sse(b"garbage", DONE), sse(*WHOLE, DONE)]
    chunks = await sy.stream(request(fallbacks=["fb/m2"]))
    assert texts(chunks) == "Hello"
    assert chunks[0].extra_fields.provider == "fb"
    assert [a.error_type for a in chunks[0].extra_fields.attempts] == ["upstream_bad_response"]


# ---------------------------------------------------------------- shutdown


def _hanging_after(first: bytes, release: asyncio.Event) -> Handler:
    async def body() -> AsyncIterator[bytes]:
        yield b"data: " + first + b"\n\n"
        await release.wait()
        yield b"data: [DONE]\n\n"

    return lambda _request: httpx.Response(200, content=body())


async def test_streams_still_open_at_shutdown_end_with_a_503(sy: Engine) -> None:
    release = asyncio.Event()
    sy.upstream.handlers = [_hanging_after(chunk("partial"), release)]
    got: list[pb.ChatCompletionChunk] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for c in sy.engine.create_stream(request()):
            got.append(c)
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    assert len(sy.engine.streams) == 1
    assert sy.engine.streams.end_all() == 1
    with pytest.raises(ChatError) as caught:
        await task
    body = caught.value.body
    assert (body.status_code, body.type) == (503, "server_shutting_down")
    assert len(sy.engine.streams) == 0
    assert sy.engine.stats.streams_ended_at_shutdown == 1
    (entry,) = sy.logged
    assert (entry.status, entry.error_type) == (503, "server_shutting_down")
    assert not task.cancelled()


async def test_a_shutdown_cancel_that_reaches_the_consumer_is_logged_as_a_503(sy: Engine) -> None:
    """The cancel lands wherever the reading task waits: here in the consumer (as in the
    servicer writing a chunk), so the engine only sees its generator closed."""
    sy.upstream.handlers = [_hanging_after(chunk("partial"), asyncio.Event())]
    first, never = asyncio.Event(), asyncio.Event()

    async def consume() -> None:
        stream = sy.engine.create_stream(request())
        try:
            async for _ in stream:
                first.set()
                await never.wait()
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    task = asyncio.create_task(consume())
    await first.wait()
    assert sy.engine.streams.end_all() == 1
    with pytest.raises(asyncio.CancelledError):
        await task
    (entry,) = sy.logged
    assert (entry.status, entry.error_type) == (503, "server_shutting_down")
    assert sy.engine.stats.streams_ended_at_shutdown == 1


async def test_a_client_cancel_is_still_a_cancel(sy: Engine) -> None:
    release = asyncio.Event()
    sy.upstream.handlers = [_hanging_after(chunk("partial"), release)]
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in sy.engine.create_stream(request()):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sy.logged[0].status == 499


# ---------------------------------------------------------------- bodies that cannot be serialised


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"extra_json": '{"metadata":' + "[" * 300 + "]" * 300 + "}"}, "body"),
        (
            {
                "tools": [
                    pb.Tool(
                        type="function",
                        function=pb.FunctionDefinition(name="f", parameters_json="[" * 80 + "]" * 80),
                    )
                ]
            },
            "tools[0].function.parameters",
        ),
        ({"tool_choice_json": "{" * 70 + "}" * 70}, "tool_choice"),
    ],
)
async def test_json_too_deep_for_the_upstream_body_is_a_400(
    sy: Engine, fields: dict[str, Any], param: str
) -> None:
    sy.upstream.handlers = [sse(*WHOLE, DONE)]
    with pytest.raises(ChatError) as caught:
        await sy.engine.create(request(**fields))
    body = caught.value.body
    assert (body.status_code, body.type, body.error.param) == (400, "invalid_request_error", param)
    assert sy.upstream.calls == 0


async def test_a_message_with_unserialisable_extra_json_is_a_400(sy: Engine) -> None:
    bad = pb.ChatCompletionRequest(
        model="m",
        messages=[pb.ChatMessage(role="user", text="hi", extra_json='{"x":' + "[" * 70 + "]" * 70 + "}")],
    )
    with pytest.raises(ChatError) as caught:
        await sy.engine.create(bad)
    assert (caught.value.body.status_code, caught.value.body.error.param) == (400, "messages[0]")


# ---------------------------------------------------------------- request ids


def _json_ok(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "r",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            ],
        },
    )


async def test_the_callers_request_id_reaches_the_log_and_error_bodies(sy: Engine) -> None:
    sy.upstream.handlers = [_json_ok]
    await sy.engine.create(request(), metadata=[("x-request-id", "caller-id-1")])
    sy.upstream.handlers = [lambda _r: httpx.Response(400, json={"error": {"message": "no"}})]
    with pytest.raises(ChatError) as caught:
        await sy.engine.create(request(), metadata=[("x-request-id", "caller-id-2")])
    assert caught.value.body.event_id == caught.value.body.error.event_id == "caller-id-2"
    assert [e.request_id for e in sy.logged] == ["caller-id-1", "caller-id-2"]


@pytest.mark.parametrize("sent", [None, "", "has space", "x" * 200, "bad\x01char"])
async def test_a_missing_or_unusable_request_id_is_replaced(sy: Engine, sent: str | None) -> None:
    sy.upstream.handlers = [_json_ok]
    metadata = [] if sent is None else [("x-request-id", sent)]
    await sy.engine.create(request(), metadata=metadata)
    made = sy.logged[0].request_id
    assert made and made != sent and len(made) == 32
