"""Anthropic behind the Azure route, end to end: the official ``openai`` SDK (``AzureOpenAI``) and
the gRPC stub call real Switchyard processes, which call the fake Anthropic Messages API.

Every call checks both ends: what the SDK parsed, and what arrived at the fake.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import grpc
import openai
import pytest

from switchyard.v1 import chat_pb2 as pb
from switchyard.v1 import chat_pb2_grpc
from tests.fakes.anthropic import SIGNATURE, FakeAnthropic, Reply, Usage
from tests.fakes.upstream import FakeUpstream
from tests.fakes.upstream import Reply as OpenAIReply
from tests.support import ANTHROPIC_KEY, CLAUDE, Stack

API_VERSION = "2024-10-21"
PIXEL = base64.b64encode(
    bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489")
).decode()


@pytest.fixture
def sdk(stack: Stack) -> Iterator[openai.AzureOpenAI]:
    client = openai.AzureOpenAI(
        azure_endpoint=stack.base_url, api_key="any", api_version=API_VERSION, max_retries=0
    )
    yield client
    client.close()


def test_unary_through_the_azure_route(sdk: openai.AzureOpenAI, anthropic: FakeAnthropic) -> None:
    anthropic.script(Reply.ok("Bonjour!", usage=Usage(12, 3)))
    completion = sdk.chat.completions.create(
        model=f"anthropic/{CLAUDE}",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": "Hello"},
        ],
        temperature=0.5,
        stop=["END"],
        user="app-user-7",
    )
    assert completion.choices[0].message.content == "Bonjour!"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 3)
    (sent,) = anthropic.requests
    assert sent.path == "/v1/messages"
    assert sent.header("x-api-key") == ANTHROPIC_KEY and sent.header("anthropic-version") == "2023-06-01"
    body = sent.body
    assert body["model"] == CLAUDE and body["max_tokens"] == 4096  # the provider's default
    assert "Be brief." in str(body["system"]) and "Answer in French." in str(body["system"])
    assert body["messages"] == [{"role": "user", "content": "Hello"}] or body["messages"][0]["role"] == "user"
    assert (body["temperature"], body["stop_sequences"], body["metadata"]) == (
        0.5,
        ["END"],
        {"user_id": "app-user-7"},
    )


def test_streaming_with_usage(sdk: openai.AzureOpenAI, anthropic: FakeAnthropic) -> None:
    anthropic.script(Reply.ok("one two three four", usage=Usage(9, 4)))
    stream = sdk.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 13
    assert anthropic.requests[0].body["stream"] is True


def test_a_multi_turn_tool_conversation(sdk: openai.AzureOpenAI, anthropic: FakeAnthropic) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    anthropic.script(Reply.tool_use("get_weather", {"city": "Paris"}), Reply.ok("It is sunny in Paris."))
    first = sdk.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=tools,
        tool_choice="required",
        parallel_tool_calls=False,
    )
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city":"Paris"}')
    sent = anthropic.requests[0].body
    assert sent["tools"][0]["input_schema"]["required"] == ["city"]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    second = sdk.chat.completions.create(
        model="claude",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24C"},
        ],
        tools=tools,
    )
    assert second.choices[0].message.content == "It is sunny in Paris."
    turns = anthropic.requests[1].body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"][-1] == {
        "type": "tool_use",
        "id": call.id,
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    result = turns[2]["content"][0]
    assert (result["type"], result["tool_use_id"]) == ("tool_result", call.id)
    assert "sunny, 24C" in str(result["content"])


def test_images_by_data_url_and_http_url(sdk: openai.AzureOpenAI, anthropic: FakeAnthropic) -> None:
    sdk.chat.completions.create(
        model="claude",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What are these?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.test/cat.jpg"}},
                ],
            }
        ],
    )
    blocks = anthropic.requests[0].body["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
    }
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.test/cat.jpg"}}


def test_thinking_comes_back_as_reasoning(sdk: openai.AzureOpenAI, anthropic: FakeAnthropic) -> None:
    anthropic.script(Reply.ok("42", thinking="Let me think: 6 times 7."))
    completion = sdk.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "6*7?"}],
        reasoning_effort="low",
        max_tokens=8000,
    )
    message = completion.choices[0].message
    assert message.content == "42"
    extra = message.model_extra or {}
    assert extra["reasoning"] == "Let me think: 6 times 7."
    assert extra["reasoning_details"][0]["signature"] == SIGNATURE
    thinking = anthropic.requests[0].body["thinking"]
    assert thinking["type"] == "enabled" and 1024 <= thinking["budget_tokens"] < 8000


def test_a_value_anthropic_cannot_honour_is_a_400_naming_the_field(
    sdk: openai.AzureOpenAI, anthropic: FakeAnthropic
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}], n=2)
    assert caught.value.body["param"] == "n"  # type: ignore[index]
    assert anthropic.request_count == 0


def test_fallback_from_azure_to_anthropic_and_back(
    sdk: openai.AzureOpenAI, upstream: FakeUpstream, anthropic: FakeAnthropic
) -> None:
    upstream.script(*[OpenAIReply.status(503)] * 3, match="azure-first")
    to_claude = sdk.chat.completions.with_raw_response.create(
        model="azure-then-claude", messages=[{"role": "user", "content": "hi"}]
    ).parse()
    assert to_claude.choices[0].message.content == "echo: hi"
    assert to_claude.model_extra["extra_fields"]["provider"] == "anthropic"  # type: ignore[index]
    anthropic.script(*[Reply.error("overloaded_error")] * 3)
    back = sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}])
    assert back.model_extra["extra_fields"]["provider"] == "azure"  # type: ignore[index]
    attempts = back.model_extra["extra_fields"]["attempts"]  # type: ignore[index]
    assert [a["status_code"] for a in attempts] == [529, 529, 529]
    assert upstream.requests[-1].deployment == "claude-fallback"


def test_cost_prices_cache_reads_and_writes(sdk: openai.AzureOpenAI, anthropic: FakeAnthropic) -> None:
    usage = Usage(
        input_tokens=100, output_tokens=50, cache_creation_input_tokens=1000, cache_read_input_tokens=4000
    )
    anthropic.script(Reply.ok("cached", usage=usage))
    completion = sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}])
    got = completion.usage
    assert got is not None and got.prompt_tokens == 5100  # uncached + cache writes + cache reads
    details = got.prompt_tokens_details.model_extra or {}  # type: ignore[union-attr]
    assert (details["cached_read_tokens"], details["cached_write_tokens"]) == (4000, 1000)
    cost = (got.model_extra or {})["cost"]
    # claude-sonnet-4-5 list prices per million: input 3, output 15, cache read 0.30, cache write 3.75.
    expected = (100 * 3 + 50 * 15 + 4000 * 0.30 + 1000 * 3.75) / 1e6
    assert cost["total_cost"] == pytest.approx(expected)


def test_a_grpc_caller_reaches_anthropic_too(stack: Stack, anthropic: FakeAnthropic) -> None:
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatCompletionsStub(channel)
        request = pb.ChatCompletionRequest(
            deployment_id="claude", messages=[pb.ChatMessage(role="user", text="via grpc")]
        )
        response = stub.Create(request, timeout=10)
        assert response.choices[0].message.text == "echo: via grpc"
        chunks = list(stub.CreateStream(request, timeout=10))
        assert "".join(c.choices[0].delta.text for c in chunks if c.choices) == "echo: via grpc"
        anthropic.script(Reply.error("invalid_request_error", "max_tokens: too large"))
        with pytest.raises(grpc.RpcError) as caught:
            stub.Create(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
