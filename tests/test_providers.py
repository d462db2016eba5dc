"""A contract suite every provider adapter must pass, over httpx.MockTransport (no sockets)."""

from __future__ import annotations

import gzip
from collections.abc import Callable

import httpx
import orjson
import pytest

from service.errors import FailureClass, UpstreamError
from service.providers import Provider, UpstreamRequest, build_provider
from switchyard.config import KeyConfig, ProviderConfig, Secret, TimeoutConfig

KEY = KeyConfig(secret=Secret("k-123"))
EXPECTED = {
    "azure": (
        "https://up.example/openai/deployments/dep-1/chat/completions?api-version=2024-10-21",
        "api-key",
    ),
    "openai": ("https://up.example/v1/chat/completions", "authorization"),
}


def _provider(kind: str, handler: Callable[[httpx.Request], httpx.Response]) -> Provider:
    base = "https://up.example" + ("/v1" if kind == "openai" else "")
    config = ProviderConfig(
        name=f"{kind}-test", kind=kind, base_url=base, keys=(KEY,), api_version="2024-10-21"
    )
    return build_provider(config, TimeoutConfig(), transport=httpx.MockTransport(handler))


def _sse(*events: bytes) -> bytes:
    return b"".join(b"data: " + e + b"\n\n" for e in events)


pytestmark = pytest.mark.parametrize("kind", ["azure", "openai"])


async def test_chat_sends_url_auth_and_body(kind: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "x"})

    provider = _provider(kind, handler)
    body = {"messages": []}
    provider.prepare_body(body, "dep-1")
    assert await provider.chat(UpstreamRequest("dep-1", orjson.dumps(body), KEY)) == b'{"id":"x"}'
    (request,) = seen
    url, auth_header = EXPECTED[kind]
    assert str(request.url) == url
    assert request.headers[auth_header] in ("k-123", "Bearer k-123")
    # Azure routes by URL and does not get a `model` the caller never sent; OpenAI needs one.
    assert ("model" in orjson.loads(request.content)) is (kind == "openai")


async def test_errors_keep_the_providers_message_and_retry_after(kind: str) -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        body = {"error": {"message": "slow down", "type": "requests", "code": "429"}}
        return httpx.Response(429, json=body, headers={"retry-after-ms": "1500"})

    with pytest.raises(UpstreamError) as caught:
        await _provider(kind, handler).chat(UpstreamRequest("dep-1", b"{}", KEY))
    err = caught.value
    assert (err.status, err.failure, err.message, err.retry_after_s) == (
        429,
        FailureClass.RATE_LIMIT,
        "slow down",
        1.5,
    )


async def test_network_errors_are_transient(kind: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(UpstreamError) as caught:
        await _provider(kind, handler).chat(UpstreamRequest("dep-1", b"{}", KEY))
    assert (caught.value.type, caught.value.failure) == ("upstream_unreachable", FailureClass.TRANSIENT)


async def test_stream_parses_sse_framing_variants(kind: str) -> None:
    raw = b': keep-alive comment\n\ndata: {"a":1}\r\n\r\nevent: x\ndata: {"b":\ndata: 2}\n\ndata: [DONE]\n\n'

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=raw, headers={"content-type": "text/event-stream"})

    got = [
        d
        async for d in _provider(kind, handler).stream_chat(UpstreamRequest("dep-1", b"{}", KEY, stream=True))
    ]
    assert got == [b'{"a":1}', b'{"b":\n2}']


async def test_stream_decodes_gzip(kind: str) -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        payload = gzip.compress(_sse(b'{"a":1}', b"[DONE]"))
        return httpx.Response(200, content=payload, headers={"content-encoding": "gzip"})

    got = [
        d
        async for d in _provider(kind, handler).stream_chat(UpstreamRequest("dep-1", b"{}", KEY, stream=True))
    ]
    assert got == [b'{"a":1}']


async def test_stream_without_done_is_broken(kind: str) -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=_sse(b'{"a":1}'))

    stream = _provider(kind, handler).stream_chat(UpstreamRequest("dep-1", b"{}", KEY, stream=True))
    assert await anext(stream) == b'{"a":1}'
    with pytest.raises(UpstreamError) as caught:
        await anext(stream)
    assert caught.value.type == "upstream_stream_broken"


async def test_stream_error_status_before_any_event(kind: str) -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(
            503, content=gzip.compress(b'{"error":{"message":"busy"}}'), headers={"content-encoding": "gzip"}
        )

    with pytest.raises(UpstreamError) as caught:
        await anext(_provider(kind, handler).stream_chat(UpstreamRequest("dep-1", b"{}", KEY, stream=True)))
    assert (caught.value.status, caught.value.message, caught.value.failure) == (
        503,
        "busy",
        FailureClass.TRANSIENT,
    )
