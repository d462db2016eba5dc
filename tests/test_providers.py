"""The OpenAI-wire providers (azure, openai) over httpx.MockTransport: URL, auth, body, SSE framing
and error mapping. The scenarios every provider shares are in ``tests/test_provider_contract.py``."""

from __future__ import annotations

import gzip
from collections.abc import Callable

import httpx
import orjson
import pytest

from service.errors import FailureClass, UpstreamError
from service.providers import Prepared, Provider, ProviderContext, build_provider
from service.routing import Target
from switchyard.config import KeyConfig, ProviderConfig, Secret
from switchyard.v1 import chat_pb2 as pb

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
    options = {"api_version": "2024-10-21"} if kind == "azure" else {}
    config = ProviderConfig(name=f"{kind}-test", kind=kind, base_url=base, keys=(KEY,), options=options)
    return build_provider(config, ProviderContext(transport=httpx.MockTransport(handler)))


REQUEST = pb.ChatCompletionRequest(deployment_id="dep-1", messages=[pb.ChatMessage(role="user", text="hi")])


def _prepared(provider: Provider, *, stream: bool = False) -> Prepared:
    return provider.prepare(REQUEST, Target(provider.name, "dep-1"), stream=stream)


async def _chunks(provider: Provider) -> list[pb.ChatCompletionChunk]:
    return [c async for c in provider.stream(_prepared(provider, stream=True), KEY)]


def _chunk(text: str, finish: str | None = None) -> bytes:
    return orjson.dumps({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]})


def _sse(*events: bytes) -> bytes:
    return b"".join(b"data: " + e + b"\n\n" for e in events)


pytestmark = pytest.mark.parametrize("kind", ["azure", "openai"])


async def test_chat_sends_url_auth_and_body(kind: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "x"})

    provider = _provider(kind, handler)
    assert (await provider.send(_prepared(provider), KEY)).id == "x"
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

    provider = _provider(kind, handler)
    with pytest.raises(UpstreamError) as caught:
        await provider.send(_prepared(provider), KEY)
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

    provider = _provider(kind, handler)
    with pytest.raises(UpstreamError) as caught:
        await provider.send(_prepared(provider), KEY)
    assert (caught.value.type, caught.value.failure) == ("upstream_unreachable", FailureClass.TRANSIENT)


async def test_stream_parses_sse_framing_variants(kind: str) -> None:
    raw = (
        b": keep-alive comment\n\ndata: "
        + _chunk("a")
        + b"\r\n\r\nevent: x\ndata: "
        + _chunk("b")[:10]
        + b"\ndata: "
        + _chunk("b")[10:]
        + b"\n\ndata: [DONE]\n\n"
    )

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=raw, headers={"content-type": "text/event-stream"})

    got = await _chunks(_provider(kind, handler))
    assert [c.choices[0].delta.text for c in got] == ["a", "b"]


async def test_stream_decodes_gzip(kind: str) -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        payload = gzip.compress(_sse(_chunk("a"), b"[DONE]"))
        return httpx.Response(200, content=payload, headers={"content-encoding": "gzip"})

    assert [c.choices[0].delta.text for c in await _chunks(_provider(kind, handler))] == ["a"]


async def test_stream_without_done_is_broken(kind: str) -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=_sse(_chunk("a")))

    provider = _provider(kind, handler)
    stream = provider.stream(_prepared(provider, stream=True), KEY)
    assert (await anext(stream)).choices[0].delta.text == "a"
    with pytest.raises(UpstreamError) as caught:
        await anext(stream)
    assert caught.value.type == "upstream_stream_broken"


async def test_stream_error_status_before_any_event(kind: str) -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(
            503, content=gzip.compress(b'{"error":{"message":"busy"}}'), headers={"content-encoding": "gzip"}
        )

    provider = _provider(kind, handler)
    with pytest.raises(UpstreamError) as caught:
        await anext(provider.stream(_prepared(provider, stream=True), KEY))
    assert (caught.value.status, caught.value.message, caught.value.failure) == (
        503,
        "busy",
        FailureClass.TRANSIENT,
    )


async def test_the_url_follows_what_decides_it(kind: str) -> None:
    """The parsed-URL cache must never hand back a URL built for another key or api-version."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"id": "x"})

    provider = _provider(kind, handler)
    other_key = KeyConfig(secret=Secret("k-456"), api_version="2025-01-01-preview")
    caller = pb.ChatCompletionRequest(
        deployment_id="dep-1", api_version="2024-06-01", messages=[pb.ChatMessage(role="user", text="hi")]
    )
    for key, request in ((KEY, REQUEST), (other_key, REQUEST), (KEY, caller), (other_key, caller)):
        await provider.send(provider.prepare(request, Target(provider.name, "dep-1"), stream=False), key)
    if kind == "azure":
        assert [u.rsplit("=", 1)[1] for u in seen] == ["2024-10-21", "2025-01-01-preview"] * 2
    else:
        assert len(set(seen)) == 1
