"""The Anthropic adapter, in process: request mapping, answers, streams and errors.

Request mapping is checked on ``prepare``'s body; answers and errors go through the provider's
real HTTP path, against ``httpx.MockTransport`` (exact bytes) or the fake Anthropic server.
What callers get must parse with the ``openai`` SDK exactly as OpenAI's answers do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from service.errors import FailureClass, GatewayError, UpstreamError
from service.pricing import cost
from service.providers.anthropic import AnthropicOptions, AnthropicProvider
from service.providers.base import ProviderContext
from service.routing import Target
from switchyard import codec
from switchyard.config import KeyConfig, ModelPrice, ProviderConfig, Secret
from switchyard.v1 import chat_pb2 as pb
from tests.fakes.anthropic import FakeAnthropic, Reply, ToolUse, Usage

KEY = KeyConfig(secret=Secret("sk-ant-test-key"))
TARGET = Target("anthropic", "claude-test")
HELLO = [{"role": "user", "content": "hi"}]

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def fake(anthropic: FakeAnthropic) -> FakeAnthropic:
    """The session's fake Anthropic (tests/conftest.py), cleared for this test."""
    return anthropic


def provider(
    handler: Handler | None = None, *, base_url: str = "https://api.example", **options: Any
) -> AnthropicProvider:
    config = ProviderConfig(name="anthropic", kind="anthropic", base_url=base_url, keys=(KEY,))
    transport = httpx.MockTransport(handler) if handler else None
    return AnthropicProvider(config, ProviderContext(transport=transport), AnthropicOptions(**options))


def request(**fields: Any) -> pb.ChatCompletionRequest:
    return codec.request_from_dict({"model": "anthropic/claude-test", "messages": HELLO, **fields})


def body(stream: bool = False, default_max_tokens: int = 4096, **fields: Any) -> dict[str, Any]:
    prepared = provider(default_max_tokens=default_max_tokens).prepare(
        request(**fields), TARGET, stream=stream
    )
    return orjson.loads(prepared.body)


def refused(**fields: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        body(**fields)
    assert caught.value.status == 400
    assert caught.value.type == "invalid_request_error"
    return caught.value


# ------------------------------------------------------------------ requests


def test_the_body_names_the_target_and_caps_tokens_by_default() -> None:
    sent = body()
    assert sent == {
        "model": "claude-test",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": 4096,
    }
    assert body(default_max_tokens=77)["max_tokens"] == 77


def test_stream_is_asked_only_for_streams() -> None:
    assert body(stream=True)["stream"] is True
    assert "stream" not in body(stream=False, stream_options={"include_usage": True})


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 200}, 200),
        ({"max_tokens": 100, "max_completion_tokens": 200}, 200),
    ],
)
def test_max_tokens(fields: dict[str, int], expected: int) -> None:
    assert body(**fields)["max_tokens"] == expected


def test_system_and_developer_messages_become_the_system_prompt() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {
            "role": "developer",
            "content": [{"type": "text", "text": "Use French.", "cache_control": {"type": "ephemeral"}}],
        },
    ]
    sent = body(messages=messages)
    assert sent["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Use French.", "cache_control": {"type": "ephemeral"}},
    ]
    assert [turn["role"] for turn in sent["messages"]] == ["user"]


def test_a_system_prompt_takes_text_only() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}}
    assert (
        refused(messages=[{"role": "system", "content": [image]}, *HELLO]).param == "messages[0].content[0]"
    )


def test_tool_results_merge_into_one_user_turn_and_roles_alternate() -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": ""}},
    ]
    messages = [
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_1", "content": "one"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "two"}]},
        {"role": "user", "content": "thanks"},
        {"role": "assistant", "content": "ok"},
        {"role": "assistant", "content": "bye"},
    ]
    turns = body(messages=messages)["messages"]
    assert [turn["role"] for turn in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[0]["content"] == [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]
    assert turns[1]["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"x": 1}},
        {"type": "tool_use", "id": "call_2", "name": "g", "input": {}},
    ]
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "one"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "two"}]},
        {"type": "text", "text": "thanks"},
    ]
    assert turns[3]["content"] == [{"type": "text", "text": "ok"}, {"type": "text", "text": "bye"}]


def test_tool_results_come_first_in_their_user_turn() -> None:
    messages = [
        {"role": "assistant", "content": None, "tool_calls": [_call("call_1")]},
        {"role": "user", "content": "by the way"},
        {"role": "tool", "tool_call_id": "call_1", "content": "done"},
    ]
    (_, user) = body(messages=messages)["messages"]
    assert [block["type"] for block in user["content"]] == ["tool_result", "text"]


def _call(call_id: str, arguments: str = "{}") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "f", "arguments": arguments}}


def test_tool_call_arguments_go_out_as_their_exact_text() -> None:
    arguments = '{"z": 1, "a": 123456789012345678901234567890}'
    prepared = provider().prepare(
        request(messages=[*HELLO, {"role": "assistant", "tool_calls": [_call("c", arguments)]}]),
        TARGET,
        stream=False,
    )
    assert b'"input":' + arguments.encode() in prepared.body


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", '"text"'])
def test_tool_call_arguments_must_be_a_json_object(arguments: str) -> None:
    messages = [*HELLO, {"role": "assistant", "tool_calls": [_call("a"), _call("b", arguments)]}]
    assert refused(messages=messages).param == "messages[1].tool_calls[1].function.arguments"


def test_a_tool_message_needs_its_call_id() -> None:
    assert refused(messages=[*HELLO, {"role": "tool", "content": "x"}]).param == "messages[1].tool_call_id"


def test_images_from_data_and_http_urls() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://img.example/cat.jpg"}},
    ]
    (turn,) = body(messages=[{"role": "user", "content": content}])["messages"]
    assert turn["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://img.example/cat.jpg"}},
    ]


@pytest.mark.parametrize("url", ["ftp://img.example/a.png", "data:image/png,rawbytes", "cat.png"])
def test_other_image_urls_are_refused(url: str) -> None:
    content = [{"type": "image_url", "image_url": {"url": url}}]
    assert (
        refused(messages=[{"role": "user", "content": content}]).param
        == "messages[0].content[0].image_url.url"
    )


def test_pdf_files_become_documents() -> None:
    content = [
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}
    ]
    (turn,) = body(messages=[{"role": "user", "content": content}])["messages"]
    assert turn["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
            "title": "a.pdf",
        }
    ]


def test_tools_keep_their_schema_text_and_extra_keys() -> None:
    schema = (
        '{"type":"object","properties":{"n":{"type":"integer","maximum":123456789012345678901}},'
        '"required":["n"]}'
    )
    tools = [
        {
            "type": "function",
            "function": {"name": "a", "description": "A.", "parameters": orjson.loads(schema)},
        },
        {"type": "function", "function": {"name": "b"}, "cache_control": {"type": "ephemeral"}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
    ]
    tools[0]["function"]["parameters"] = orjson.Fragment(schema)  # type: ignore[index]
    raw = orjson.dumps({"model": "m", "messages": HELLO, "tools": tools})
    req = codec.request_from_dict(codec.loads(raw))
    prepared = provider().prepare(req, TARGET, stream=False)
    assert b'"input_schema":' + schema.encode() in prepared.body
    sent = orjson.loads(prepared.body.replace(b"123456789012345678901", b"1"))
    assert sent["tools"] == [
        {
            "name": "a",
            "description": "A.",
            "input_schema": orjson.loads(schema.replace("123456789012345678901", "1")),
        },
        {
            "name": "b",
            "input_schema": {"type": "object", "properties": {}},
            "cache_control": {"type": "ephemeral"},
        },
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
    ]


TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        ({"tool_choice": "required"}, {"type": "any"}),
        ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, {"type": "tool", "name": "f"}),
        ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        (
            {"tool_choice": "required", "parallel_tool_calls": False},
            {"type": "any", "disable_parallel_tool_use": True},
        ),
        ({"tool_choice": "none", "parallel_tool_calls": False}, {"type": "none"}),
        ({"parallel_tool_calls": True}, None),
        ({}, None),
    ],
)
def test_tool_choice(fields: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert body(tools=TOOLS, **fields).get("tool_choice") == expected


def test_tool_choice_without_tools_is_not_sent() -> None:
    assert "tool_choice" not in body(tool_choice="required", parallel_tool_calls=False)


@pytest.mark.parametrize("choice", ["sometimes", {"type": "function"}, {"type": "allowed_tools"}])
def test_unknown_tool_choices_are_refused(choice: Any) -> None:
    assert refused(tools=TOOLS, tool_choice=choice).param == "tool_choice"


@pytest.mark.parametrize(("stop", "expected"), [("END", ["END"]), (["a", "b"], ["a", "b"])])
def test_stop_becomes_stop_sequences(stop: Any, expected: list[str]) -> None:
    assert body(stop=stop)["stop_sequences"] == expected


def test_sampling_user_and_service_tier() -> None:
    sent = body(temperature=0.3, top_p=0.9, user="user-42", service_tier="default")
    assert (sent["temperature"], sent["top_p"]) == (0.3, 0.9)
    assert sent["metadata"] == {"user_id": "user-42"}
    assert sent["service_tier"] == "standard_only"


@pytest.mark.parametrize(
    ("effort", "budget"),
    [("minimal", 1024), ("low", 2048), ("medium", 8192), ("high", 16384), ("xhigh", 32768)],
)
def test_reasoning_effort_becomes_a_thinking_budget(effort: str, budget: int) -> None:
    sent = body(reasoning_effort=effort)
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": budget}
    # No cap from the caller: the answer keeps the default room beside the thinking.
    assert sent["max_tokens"] == budget + 4096


def test_reasoning_effort_none_disables_thinking() -> None:
    sent = body(reasoning_effort="none", max_tokens=50)
    assert sent["thinking"] == {"type": "disabled"}
    assert sent["max_tokens"] == 50


def test_the_thinking_budget_stays_below_the_callers_cap() -> None:
    assert body(reasoning_effort="high", max_completion_tokens=50_000)["thinking"]["budget_tokens"] == 16384
    sent = body(reasoning_effort="high", max_completion_tokens=5000)
    assert sent["max_tokens"] == 5000
    assert sent["thinking"]["budget_tokens"] == 4999
    assert refused(reasoning_effort="low", max_completion_tokens=1024).param == "max_completion_tokens"
    assert refused(reasoning_effort="low", max_tokens=600).param == "max_tokens"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 0.5}, "temperature"),
        ({"top_p": 0.5}, "top_p"),
        ({"tools": TOOLS, "tool_choice": "required"}, "tool_choice"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
    ],
)
def test_what_thinking_cannot_go_with(fields: dict[str, Any], param: str) -> None:
    assert refused(reasoning_effort="low", **fields).param == param
    body(reasoning_effort="none", **fields)  # fine without thinking


def test_thinking_takes_temperature_one_and_high_top_p() -> None:
    sent = body(reasoning_effort="low", temperature=1, top_p=0.95, tools=TOOLS, tool_choice="auto")
    assert sent["thinking"]["type"] == "enabled"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"presence_penalty": -1}, "presence_penalty"),
        ({"temperature": 1.5}, "temperature"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
            "response_format",
        ),
        ({"service_tier": "flex"}, "service_tier"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}],
                    }
                ]
            },
            "messages[0].content[0].type",
        ),
    ],
)
def test_what_anthropic_cannot_honour_is_a_400_naming_the_field(fields: dict[str, Any], param: str) -> None:
    assert refused(**fields).param == param


def test_neutral_values_of_unsupported_fields_are_dropped() -> None:
    sent = body(
        n=1,
        logprobs=False,
        top_logprobs=0,
        frequency_penalty=0,
        presence_penalty=0,
        logit_bias={},
        seed=7,
        response_format={"type": "text"},
    )
    assert sent == body()


def test_unknown_fields_and_cache_control_pass_through() -> None:
    content = [{"type": "text", "text": "long context", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    sent = body(
        messages=[
            {"role": "user", "content": content},
            {"role": "assistant", "content": "ok", "function_call": None},
        ],
        top_k=40,
        thinking={"type": "adaptive"},
    )
    assert sent["top_k"] == 40
    assert sent["thinking"] == {"type": "adaptive"}  # the caller's native setting wins
    assert sent["messages"][0]["content"] == content
    # A key with no Anthropic meaning on a message (replayed OpenAI answers carry some) stays behind.
    assert sent["messages"][1]["content"] == [{"type": "text", "text": "ok"}]


def test_message_level_cache_control_marks_its_last_block() -> None:
    messages = [{"role": "user", "content": "big document", "cache_control": {"type": "ephemeral"}}]
    (turn,) = body(messages=messages)["messages"]
    assert turn["content"] == [
        {"type": "text", "text": "big document", "cache_control": {"type": "ephemeral"}}
    ]


def test_signed_thinking_goes_back_as_thinking_blocks() -> None:
    assistant = {
        "role": "assistant",
        "content": None,
        "reasoning": "Need the weather.",
        "reasoning_details": [
            {"type": "reasoning.text", "text": "Need the weather.", "signature": "sig-1", "index": 0},
            {"type": "reasoning.encrypted", "data": "opaque==", "index": 1},
            {"type": "reasoning.summary", "summary": "unsigned, from elsewhere"},
            {"type": "reasoning.text", "text": "unsigned"},
        ],
        "tool_calls": [_call("toolu_1")],
    }
    messages = [*HELLO, assistant, {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}]
    turns = body(messages=messages, reasoning_effort="low")["messages"]
    assert turns[1]["content"] == [
        {"type": "thinking", "thinking": "Need the weather.", "signature": "sig-1"},
        {"type": "redacted_thinking", "data": "opaque=="},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
    ]


# ------------------------------------------------------------------ answers


def answer(data: dict[str, Any]) -> Handler:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=data)

    return handler


def message(*content: dict[str, Any], stop_reason: str = "end_turn", **usage: int) -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-test-20250101",
        "content": list(content),
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


async def send(handler: Handler, **fields: Any) -> pb.ChatCompletionResponse:
    p = provider(handler)
    return await p.send(p.prepare(request(**fields), TARGET, stream=False), KEY)


def as_openai(response: pb.ChatCompletionResponse) -> ChatCompletion:
    return ChatCompletion.model_validate(orjson.loads(orjson.dumps(codec.response_to_dict(response))))


async def test_sends_to_v1_messages_with_the_key_and_version() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json=message({"type": "text", "text": "hi"}))

    p = provider(handler, base_url="https://api.example/", version="2099-01-01")
    await p.send(p.prepare(request(), TARGET, stream=False), KEY)
    (req,) = seen
    assert str(req.url) == "https://api.example/v1/messages"
    assert req.headers["x-api-key"] == "sk-ant-test-key"
    assert req.headers["anthropic-version"] == "2099-01-01"
    assert "authorization" not in req.headers
    assert orjson.loads(req.content)["model"] == "claude-test"


async def test_text_blocks_join_into_the_message() -> None:
    response = await send(
        answer(message({"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}))
    )
    parsed = as_openai(response)
    assert parsed.id == "msg_01"
    assert parsed.object == "chat.completion"
    assert parsed.model == "claude-test-20250101"
    assert parsed.created > 1_700_000_000
    (choice,) = parsed.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello, world"
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"


async def test_tool_use_becomes_tool_calls() -> None:
    blocks = (
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris", "days": 3}},
        {"type": "tool_use", "id": "toolu_2", "name": "time", "input": {}},
    )
    parsed = as_openai(await send(answer(message(*blocks, stop_reason="tool_use"))))
    (choice,) = parsed.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.id, c.type, c.function.name) for c in calls] == [  # type: ignore[union-attr]
        ("toolu_1", "function", "weather"),
        ("toolu_2", "function", "time"),
    ]
    assert orjson.loads(calls[0].function.arguments) == {"city": "Paris", "days": 3}  # type: ignore[union-attr]
    assert calls[1].function.arguments == "{}"  # type: ignore[union-attr]


async def test_thinking_becomes_reasoning_with_signed_details() -> None:
    blocks = (
        {"type": "thinking", "thinking": "First, ", "signature": "sig-a"},
        {"type": "redacted_thinking", "data": "opaque=="},
        {"type": "thinking", "thinking": "then.", "signature": "sig-b"},
        {"type": "text", "text": "42"},
    )
    response = await send(answer(message(*blocks)))
    out = codec.response_to_dict(response)["choices"][0]["message"]
    assert out["content"] == "42"
    assert out["reasoning"] == "First, then."
    assert out["reasoning_details"] == [
        {"index": 0, "type": "reasoning.text", "text": "First, ", "signature": "sig-a"},
        {"index": 1, "type": "reasoning.encrypted", "data": "opaque=="},
        {"index": 2, "type": "reasoning.text", "text": "then.", "signature": "sig-b"},
    ]
    as_openai(response)


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("stop_sequence", "stop"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("something_new", "stop"),
    ],
)
async def test_stop_reasons(stop_reason: str, finish: str) -> None:
    response = await send(answer(message({"type": "text", "text": "x"}, stop_reason=stop_reason)))
    assert as_openai(response).choices[0].finish_reason == finish


async def test_usage_counts_cache_reads_and_writes_in_the_prompt() -> None:
    data = message(
        {"type": "text", "text": "x"}, cache_creation_input_tokens=200, cache_read_input_tokens=300
    )
    usage = (await send(answer(data))).usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (510, 5, 515)
    details = usage.prompt_tokens_details
    assert (details.cached_read_tokens, details.cached_write_tokens, details.cached_tokens) == (300, 200, 300)
    # Each priced at its own rate (claude-sonnet-4-5's list prices).
    price = ModelPrice(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
    assert cost(price, usage).input_tokens_cost == pytest.approx((10 * 3.0 + 300 * 0.3 + 200 * 3.75) / 1e6)


@pytest.mark.parametrize(
    "data",
    [
        {"id": "x"},
        {"content": "text"},
        {"content": [{"type": "text"}]},
        {"content": [], "usage": {"input_tokens": "ten"}},
    ],
)
async def test_an_unusable_answer_is_a_bad_response(data: dict[str, Any]) -> None:
    with pytest.raises(GatewayError) as caught:
        await send(answer(data))
    assert (caught.value.status, caught.value.type) == (502, "upstream_bad_response")
    assert caught.value.failure is FailureClass.TRANSIENT


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("error_type", "status", "failure", "contract_type"),
    [
        ("invalid_request_error", 400, FailureClass.CALLER, "invalid_request_error"),
        ("authentication_error", 401, FailureClass.CREDENTIAL, "authentication_error"),
        ("billing_error", 402, FailureClass.CREDENTIAL, "authentication_error"),
        ("permission_error", 403, FailureClass.CREDENTIAL, "authentication_error"),
        ("not_found_error", 404, FailureClass.CALLER, "not_found"),
        ("request_too_large", 413, FailureClass.CALLER, "invalid_request_error"),
        ("rate_limit_error", 429, FailureClass.RATE_LIMIT, "rate_limit_error"),
        ("api_error", 500, FailureClass.TRANSIENT, "upstream_error"),
        ("timeout_error", 504, FailureClass.TIMEOUT, "timeout"),
        ("overloaded_error", 529, FailureClass.TRANSIENT, "upstream_error"),
    ],
)
async def test_error_types_map_to_statuses_and_failure_classes(
    fake: FakeAnthropic, error_type: str, status: int, failure: FailureClass, contract_type: str
) -> None:
    fake.script(Reply.error(error_type, "Something about it."))
    p = provider(base_url=fake.url)
    try:
        with pytest.raises(UpstreamError) as caught:
            await p.send(p.prepare(request(), TARGET, stream=False), KEY)
    finally:
        await p.aclose()
    err = caught.value
    assert (err.status, err.failure, err.type, err.error_type) == (status, failure, contract_type, error_type)
    assert err.message == "Something about it."
    assert err.from_upstream
    assert err.retry_after_s == (7.0 if error_type == "rate_limit_error" else None)
    assert (err.provider, err.model) == ("anthropic", "claude-test")


async def test_overloaded_is_retried_and_falls_back() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(
            529, json={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        )

    with pytest.raises(UpstreamError) as caught:
        await send(handler)
    assert caught.value.failure.retryable
    assert caught.value.failure.falls_back


async def test_a_non_json_error_is_classed_by_its_status() -> None:
    with pytest.raises(UpstreamError) as caught:
        await send(lambda req: httpx.Response(502, text="<html>Bad Gateway</html>"))
    assert (caught.value.status, caught.value.failure) == (502, FailureClass.TRANSIENT)
    assert "Bad Gateway" in caught.value.message


# ------------------------------------------------------------------ streams


async def stream_from(p: AnthropicProvider, **fields: Any) -> list[pb.ChatCompletionChunk]:
    try:
        return [chunk async for chunk in p.stream(p.prepare(request(**fields), TARGET, stream=True), KEY)]
    finally:
        await p.aclose()


async def fake_stream(fake: FakeAnthropic, **fields: Any) -> list[pb.ChatCompletionChunk]:
    return await stream_from(provider(base_url=fake.url), **fields)


def as_openai_chunks(chunks: list[pb.ChatCompletionChunk]) -> list[ChatCompletionChunk]:
    return [
        ChatCompletionChunk.model_validate(orjson.loads(orjson.dumps(codec.response_to_dict(c))))
        for c in chunks
    ]


async def test_a_text_stream(fake: FakeAnthropic) -> None:
    chunks = as_openai_chunks(await fake_stream(fake, messages=[{"role": "user", "content": "hello stream"}]))
    first, *middle, finish, usage = chunks
    assert first.choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in middle) == "echo: hello stream"
    assert all(c.choices[0].finish_reason is None for c in [first, *middle])
    assert finish.choices[0].finish_reason == "stop"
    assert usage.choices == []
    assert usage.usage is not None
    assert usage.usage.completion_tokens > 1
    assert usage.usage.prompt_tokens > 0
    assert {c.id for c in chunks} == {f"msg_fake{fake.requests[0].seq:08d}"}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert {c.model for c in chunks} == {"claude-test"}
    assert fake.requests[0].body["stream"] is True


async def test_tool_calls_stream_as_indexed_deltas(fake: FakeAnthropic) -> None:
    fake.script(
        Reply.ok("Checking.", tool_uses=[ToolUse("weather", {"city": "Paris, France"}), ToolUse("time")])
    )
    chunks = as_openai_chunks(await fake_stream(fake, tools=TOOLS))
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(delta.index, {"arguments": ""})
            if delta.id:
                call.update(id=delta.id, name=delta.function.name)  # type: ignore[union-attr]
            call["arguments"] += delta.function.arguments or ""  # type: ignore[union-attr]
    assert sorted(calls) == [0, 1]
    assert calls[0]["name"] == "weather"
    assert calls[0]["id"] == f"toolu_fake{fake.requests[0].seq}_0"
    assert orjson.loads(calls[0]["arguments"]) == {"city": "Paris, France"}
    assert calls[1]["name"] == "time"
    assert calls[1]["arguments"] == "{}"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Checking."
    assert chunks[-2].choices[0].finish_reason == "tool_calls"


async def test_thinking_streams_as_reasoning(fake: FakeAnthropic) -> None:
    fake.script(
        Reply.ok("42", thinking="Let me think this through.", signature="sig-z", redacted_thinking="opaque==")
    )
    chunks = await fake_stream(fake, reasoning_effort="low")
    reasoning = "".join(c.choices[0].delta.reasoning for c in chunks if c.choices)
    assert reasoning == "Let me think this through."
    details = [d for c in chunks if c.choices for d in c.choices[0].delta.reasoning_details]
    assert {d.signature for d in details if d.signature} == {"sig-z"}
    assert all(d.index == 0 and d.type == "reasoning.text" for d in details if d.text or d.signature)
    assert [(d.index, d.type, d.data) for d in details if d.data] == [(1, "reasoning.encrypted", "opaque==")]
    assert fake.requests[0].body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    as_openai_chunks(chunks)


@pytest.mark.parametrize(
    ("error_type", "status", "failure"),
    [
        ("overloaded_error", 529, FailureClass.TRANSIENT),
        ("rate_limit_error", 429, FailureClass.RATE_LIMIT),
        ("invalid_request_error", 400, FailureClass.CALLER),
        ("some_new_error", 500, FailureClass.TRANSIENT),
    ],
)
async def test_an_error_event_is_an_upstream_failure(
    fake: FakeAnthropic, error_type: str, status: int, failure: FailureClass
) -> None:
    fake.script(Reply.error_event(error_type, after=2))
    chunks: list[pb.ChatCompletionChunk] = []
    with pytest.raises(UpstreamError) as caught:
        await _collect(provider(base_url=fake.url), chunks)
    assert chunks  # content had started
    err = caught.value
    assert (err.status, err.failure, err.error_type, err.message) == (
        status,
        failure,
        error_type,
        "Overloaded",
    )
    assert err.from_upstream


async def _collect(p: AnthropicProvider, into: list[pb.ChatCompletionChunk]) -> None:
    try:
        async for chunk in p.stream(p.prepare(request(), TARGET, stream=True), KEY):
            into.append(chunk)
    finally:
        await p.aclose()


async def test_a_stream_broken_mid_way(fake: FakeAnthropic) -> None:
    fake.script(Reply.broken(after=2))
    chunks: list[pb.ChatCompletionChunk] = []
    with pytest.raises(UpstreamError) as caught:
        await _collect(provider(base_url=fake.url), chunks)
    assert chunks
    assert (caught.value.status, caught.value.type) == (502, "upstream_stream_broken")
    assert caught.value.failure is FailureClass.TRANSIENT


async def test_a_stream_complete_but_for_message_stop_succeeds(fake: FakeAnthropic) -> None:
    fake.script(Reply.ok("whole", omit_message_stop=True))
    chunks = await fake_stream(fake)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].HasField("usage")


async def test_stream_usage_counts_the_cache(fake: FakeAnthropic) -> None:
    usage = Usage(
        input_tokens=4, output_tokens=9, cache_creation_input_tokens=100, cache_read_input_tokens=1000
    )
    fake.script(Reply.ok("x", usage=usage))
    final = (await fake_stream(fake))[-1].usage
    assert (final.prompt_tokens, final.completion_tokens, final.total_tokens) == (1104, 9, 1113)
    assert (
        final.prompt_tokens_details.cached_read_tokens,
        final.prompt_tokens_details.cached_write_tokens,
    ) == (
        1000,
        100,
    )


# Exact event sequences, for what the fake does not vary.


def sse(*events: dict[str, Any] | bytes) -> Handler:
    raw = b"".join(
        event
        if isinstance(event, bytes)
        else b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
        for event in events
    )

    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=raw, headers={"content-type": "text/event-stream"})

    return handler


START = {
    "type": "message_start",
    "message": {"id": "msg_s", "model": "claude-s", "usage": {"input_tokens": 7, "output_tokens": 1}},
}
TEXT = (
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "content_block_stop", "index": 0},
)
DELTA = {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 3}}
STOP = {"type": "message_stop"}
PING = {"type": "ping"}


async def test_pings_carry_nothing() -> None:
    plain = await stream_from(provider(sse(START, *TEXT, DELTA, STOP)))
    pinged = await stream_from(provider(sse(START, PING, TEXT[0], PING, *TEXT[1:], PING, DELTA, PING, STOP)))
    assert [codec.response_to_dict(c) for c in pinged] == [codec.response_to_dict(c) for c in plain]
    assert len(plain) == 4  # role, "Hi", finish, usage
    assert plain[2].choices[0].finish_reason == "length"
    assert (plain[3].usage.prompt_tokens, plain[3].usage.completion_tokens) == (7, 3)


async def test_a_stream_without_message_delta_is_broken() -> None:
    with pytest.raises(UpstreamError) as caught:
        await stream_from(provider(sse(START, *TEXT)))
    assert caught.value.type == "upstream_stream_broken"
    assert not caught.value.from_upstream


async def test_a_malformed_payload_is_skipped() -> None:
    chunks = await stream_from(provider(sse(START, b"data: {not json\n\n", *TEXT, DELTA, STOP)))
    assert [c.choices[0].delta.text for c in chunks[:2]] == ["", "Hi"]


async def test_malformed_payloads_in_a_row_fail_the_stream() -> None:
    bad = b'event: content_block_delta\ndata: {"type": "content_block_delta"}\n\n'
    with pytest.raises(GatewayError) as caught:
        await stream_from(provider(sse(START, bad, bad, bad, *TEXT, DELTA, STOP)))
    assert caught.value.type == "upstream_bad_response"


async def test_a_stream_error_response_is_mapped_like_unary() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        body = {"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down."}}
        return httpx.Response(429, json=body, headers={"retry-after": "3"})

    with pytest.raises(UpstreamError) as caught:
        await stream_from(provider(handler))
    assert (caught.value.status, caught.value.failure, caught.value.retry_after_s) == (
        429,
        FailureClass.RATE_LIMIT,
        3.0,
    )


async def test_message_stop_ends_the_stream() -> None:
    chunks = await stream_from(provider(sse(START, *TEXT, DELTA, STOP, TEXT[1], TEXT[1])))
    assert len(chunks) == 4  # nothing after message_stop is read
