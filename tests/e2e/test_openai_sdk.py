"""End to end with the official ``openai`` SDK (``AzureOpenAI``) against real Switchyard processes.

Every test runs against both stack modes (``inprocess`` and ``split``) through the ``stack``
fixture, and uses its own deployment id so that scripted upstream replies never leak between
tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import openai
import orjson
import pytest
from openai import AzureOpenAI
from openai.types.chat import ChatCompletionChunk

from tests.fakes.upstream import FakeUpstream, Reply
from tests.support import AZURE_KEY, ENTRA_TOKEN, Stack

API_VERSION = "2024-10-21"
CALLER_KEY = "caller-key-must-not-reach-upstream"

# The tool schema, with keys deliberately not in sorted order: the upstream must get it byte-exact.
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["city"],
    "properties": {
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "city": {"type": "string", "description": "City name"},
    },
    "additionalProperties": False,
}
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Current weather", "parameters": WEATHER_SCHEMA},
}


def make_client(stack: Stack, *, suffix: str = "/openai", **kwargs: Any) -> AzureOpenAI:
    """An SDK client on the gateway; ``suffix`` is appended to the base URL for ``azure_endpoint``."""
    if "azure_ad_token" not in kwargs:
        kwargs.setdefault("api_key", CALLER_KEY)
    kwargs.setdefault("api_version", API_VERSION)
    return AzureOpenAI(azure_endpoint=stack.base_url + suffix, max_retries=0, timeout=20, **kwargs)


@pytest.fixture
def sdk(stack: Stack) -> Iterator[AzureOpenAI]:
    with make_client(stack) as client:
        yield client


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def collect_text(chunks: Iterable[ChatCompletionChunk], into: list[str]) -> None:
    """Append each non-empty content delta to ``into`` as it arrives (so it survives an error)."""
    for chunk in chunks:
        into.extend(c.delta.content for c in chunk.choices if c.delta.content)


# --------------------------------------------------------------------------- unary


@pytest.mark.parametrize(
    ("suffix", "gateway_path"),
    [
        ("/openai", "/openai/openai/deployments/"),
        ("", "/openai/deployments/"),
    ],
    ids=["endpoint-with-openai", "endpoint-bare"],
)
def test_unary_both_endpoint_forms(
    stack: Stack, upstream: FakeUpstream, suffix: str, gateway_path: str
) -> None:
    deployment = f"sdk-unary-{'a' if suffix else 'b'}"
    with make_client(stack, suffix=suffix) as client:
        raw = client.chat.completions.with_raw_response.create(model=deployment, messages=user("hi there"))
        resp = raw.parse()

    # The SDK really called the path form this test is about.
    assert raw.http_request.url.path == f"{gateway_path}{deployment}/chat/completions"
    assert resp.choices[0].message.content == "echo: hi there"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens > 0
    assert resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert resp.model_extra is not None
    extra = resp.model_extra["extra_fields"]
    assert extra["provider"] == "azure"
    assert extra["model_requested"] == deployment
    assert extra["model_deployment"] == deployment

    assert len(upstream.requests) == 1
    sent = upstream.requests[-1]
    assert sent.deployment == deployment
    assert sent.api_version == API_VERSION
    # The gateway's configured key, never the caller's.
    assert sent.header("api-key") == AZURE_KEY
    assert CALLER_KEY not in repr(sent.headers)
    assert sent.header("authorization") is None
    assert sent.body["messages"] == user("hi there")


def test_unary_configured_api_version_wins(stack: Stack, upstream: FakeUpstream) -> None:
    """Provider ``azure`` pins api_version 2024-10-21, whatever the caller asks for."""
    with make_client(stack, api_version="2024-06-01") as client:
        resp = client.chat.completions.create(model="sdk-apiver-1", messages=user("v"))
    assert resp.choices[0].message.content == "echo: v"
    assert upstream.requests[-1].deployment == "sdk-apiver-1"
    assert upstream.requests[-1].api_version == API_VERSION


def test_unary_azure_ad_token(stack: Stack, upstream: FakeUpstream) -> None:
    caller_token = "caller-entra-token-not-for-upstream"
    with make_client(stack, azure_ad_token=caller_token) as client:
        raw = client.chat.completions.with_raw_response.create(model="sdk-aad-1", messages=user("aad"))
        resp = raw.parse()

    assert raw.http_request.headers["authorization"] == f"Bearer {caller_token}"
    assert "api-key" not in raw.http_request.headers
    assert resp.choices[0].message.content == "echo: aad"
    sent = upstream.requests[-1]
    assert sent.deployment == "sdk-aad-1"
    assert sent.header("api-key") == AZURE_KEY
    assert sent.header("authorization") is None
    assert caller_token not in repr(sent.headers)
    assert ENTRA_TOKEN not in repr(sent.headers)


def test_unary_n2_returns_two_choices(sdk: AzureOpenAI, upstream: FakeUpstream) -> None:
    resp = sdk.chat.completions.create(model="sdk-n2-1", messages=user("twice"), n=2)
    assert [c.index for c in resp.choices] == [0, 1]
    assert [c.message.content for c in resp.choices] == ["echo: twice", "echo: twice"]
    assert upstream.requests[-1].body["n"] == 2


# --------------------------------------------------------------------------- streaming


def test_stream_without_usage(sdk: AzureOpenAI, upstream: FakeUpstream) -> None:
    chunks = list(sdk.chat.completions.create(model="sdk-stream-1", messages=user("s"), stream=True))

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello world"
    assert all(c.choices for c in chunks), "a choice-less (usage) chunk reached the client"
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert [c.model_extra["extra_fields"]["chunk_index"] for c in chunks] == list(range(len(chunks)))

    sent = upstream.requests[-1]
    assert sent.deployment == "sdk-stream-1"
    assert sent.body["stream"] is True
    # The gateway always asks upstream for usage (for accounting), even though the caller did not.
    assert sent.body["stream_options"]["include_usage"] is True


def test_stream_with_usage(sdk: AzureOpenAI, upstream: FakeUpstream) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="sdk-stream-2", messages=user("s"), stream=True, stream_options={"include_usage": True}
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello world"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    # Only the last chunk carries usage.
    assert all(c.usage is None for c in chunks[:-1])
    assert upstream.requests[-1].body["stream_options"] == {"include_usage": True}


# --------------------------------------------------------------------------- tools


def test_tool_call_unary(sdk: AzureOpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply.tool_call("get_weather", {"city": "Paris"}), match="sdk-tools-1")
    tool_choice = {"type": "function", "function": {"name": "get_weather"}}
    resp = sdk.chat.completions.create(
        model="sdk-tools-1",
        messages=user("weather in Paris?"),
        tools=[WEATHER_TOOL],
        tool_choice=tool_choice,
    )

    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None
    assert len(calls) == 1
    assert calls[0].type == "function"
    assert calls[0].id
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}

    sent = upstream.requests[-1]
    assert sent.body["tool_choice"] == tool_choice
    assert sent.body["tools"][0]["function"]["name"] == "get_weather"
    # Byte-exact schema, key order kept (not sorted, not re-spaced).
    assert orjson.dumps(WEATHER_SCHEMA) in sent.raw
    assert list(sent.body["tools"][0]["function"]["parameters"]) == list(WEATHER_SCHEMA)


def test_tool_call_stream(sdk: AzureOpenAI, upstream: FakeUpstream) -> None:
    arguments = {"city": "Paris", "unit": "celsius"}
    upstream.script(Reply.tool_call("get_weather", arguments), match="sdk-tools-2")
    stream = sdk.chat.completions.create(
        model="sdk-tools-2",
        messages=user("weather in Paris?"),
        tools=[WEATHER_TOOL],
        tool_choice="required",
        stream=True,
    )

    names: list[str] = []
    ids: list[str] = []
    fragments: list[str] = []
    finish: list[str] = []
    for chunk in stream:
        for choice in chunk.choices:
            if choice.finish_reason:
                finish.append(choice.finish_reason)
            for call in choice.delta.tool_calls or ():
                assert call.index == 0
                if call.id:
                    ids.append(call.id)
                if call.function and call.function.name:
                    names.append(call.function.name)
                if call.function and call.function.arguments:
                    fragments.append(call.function.arguments)

    assert names == ["get_weather"]
    assert len(ids) == 1
    assert len(fragments) > 1, "the arguments should arrive in several fragments"
    assert json.loads("".join(fragments)) == arguments
    assert finish == ["tool_calls"]
    sent = upstream.requests[-1]
    assert sent.body["tool_choice"] == "required"
    assert orjson.dumps(WEATHER_SCHEMA) in sent.raw


def test_integers_beyond_64_bits_are_kept_exactly(sdk: AzureOpenAI, upstream: FakeUpstream) -> None:
    schema = {
        "type": "object",
        "properties": {"id": {"type": "integer", "maximum": 123456789012345678901234567890}},
    }
    tool = {"type": "function", "function": {"name": "lookup", "parameters": schema}}
    sdk.chat.completions.create(
        model="sdk-tools-3",
        messages=user("x"),
        tools=[tool],
        extra_body={"vendor_param": {"big": 98765432109876543210987}},
    )
    raw = upstream.requests[-1].raw
    assert b'"maximum":123456789012345678901234567890' in raw
    assert b'"vendor_param":{"big":98765432109876543210987}' in raw


def test_content_filter_is_bad_request(sdk: AzureOpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply.content_filter(), match="sdk-err-filter")
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="sdk-err-filter", messages=user("x"))
    assert info.value.code == "content_filter"
    assert info.value.response.json()["type"] == "content_filter"
    assert len(upstream.requests) == 1  # the caller's problem: no retry, no fallback


# --------------------------------------------------------------------------- errors


def test_range_violation_is_bad_request(sdk: AzureOpenAI, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="sdk-err-400", messages=user("x"), temperature=3)
    assert info.value.status_code == 400
    body = info.value.body
    assert isinstance(body, dict)
    assert body.get("param") == "temperature"
    assert upstream.requests == []


def test_upstream_404_is_not_found(sdk: AzureOpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply.status(404), match="sdk-err-404")
    with pytest.raises(openai.NotFoundError) as info:
        sdk.chat.completions.create(model="sdk-err-404", messages=user("x"))
    assert info.value.status_code == 404
    assert "Fake upstream error 404" in info.value.message
    assert len(upstream.requests) == 1  # a 404 is the caller's problem: not retried


def test_upstream_429_is_rate_limit(sdk: AzureOpenAI, upstream: FakeUpstream) -> None:
    upstream.script(*[Reply.status(429, headers={"retry-after": "0"})] * 3, match="sdk-err-429")
    with pytest.raises(openai.RateLimitError) as info:
        sdk.chat.completions.create(model="sdk-err-429", messages=user("x"))
    assert info.value.status_code == 429
    assert len(upstream.requests) == 3  # the first try and the service's 2 retries
    assert upstream.pending("sdk-err-429") == 0
    assert info.value.response.headers.get("retry-after") == "0"
    attempts = info.value.response.json()["extra_fields"]["attempts"]
    assert [a["status_code"] for a in attempts] == [429, 429, 429]


def test_mid_stream_failure_raises_api_error(sdk: AzureOpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply.stream(["a", "b", "c"], break_after=2), match="sdk-err-mid")
    received: list[str] = []
    stream = sdk.chat.completions.create(model="sdk-err-mid", messages=user("x"), stream=True)
    with pytest.raises(openai.APIError) as info:
        collect_text(stream, received)
    # The first content reached the client before the error. "b" usually does too, but not always:
    # aiohttp's StreamReader.readany raises a stored connection error before handing out bytes
    # already buffered, so what the upstream sent just before the break can be lost.
    assert received in (["a"], ["a", "b"])
    assert "connection broke" in info.value.message
    assert len(upstream.requests) == 1  # committed after the first content: no retry, no fallback
