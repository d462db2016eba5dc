"""The Bedrock adapter, in process: request mapping, signing, answers, event streams and errors.

Request mapping is checked on ``prepare``'s body; answers, streams and errors go through the
provider's real HTTP path, against ``httpx.MockTransport`` (exact bytes, frames built with the
fake's encoder) or the fake Bedrock server (which verifies every SigV4 signature). What callers
get must parse with the ``openai`` SDK exactly as OpenAI's answers do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from service.errors import FailureClass, GatewayError, UpstreamError
from service.pricing import SHIPPED_PRICES_PATH, PriceTable, cost, read_price_file
from service.providers import ProviderContext, build_provider, check
from service.providers.bedrock import BedrockOptions, BedrockProvider
from service.routing import Target
from switchyard import codec
from switchyard.config import ConfigError, KeyConfig, ProviderConfig, Secret, parse_config
from switchyard.v1 import chat_pb2 as pb
from tests.fakes.bedrock import (
    ACCESS_KEY_ID,
    SECRET_ACCESS_KEY,
    SESSION_TOKEN,
    SIGNATURE,
    FakeBedrock,
    Reply,
    ToolUse,
    Usage,
    encode_frame,
    event_frame,
)

MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
TARGET = Target("bedrock", MODEL)
HELLO = [{"role": "user", "content": "hi"}]
KEY = KeyConfig(
    secret=Secret(ACCESS_KEY_ID), secrets={"secret_access_key": Secret(SECRET_ACCESS_KEY)}, name="aws-main"
)
TEMPORARY_KEY = KeyConfig(
    secret=Secret(ACCESS_KEY_ID),
    secrets={"secret_access_key": Secret(SECRET_ACCESS_KEY), "session_token": Secret(SESSION_TOKEN)},
)
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ"
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(scope="module")
def bedrock_server() -> Iterator[FakeBedrock]:
    with FakeBedrock() as fake:
        yield fake


@pytest.fixture
def fake(bedrock_server: FakeBedrock) -> FakeBedrock:
    bedrock_server.reset()
    return bedrock_server


def provider(
    handler: Handler | None = None,
    *,
    base_url: str = "https://bedrock-runtime.{region}.amazonaws.com",
    region: str = "us-east-1",
    keep_raw: bool = False,
) -> BedrockProvider:
    config = ProviderConfig(name="bedrock", kind="bedrock", base_url=base_url, keys=(KEY,))
    transport = httpx.MockTransport(handler) if handler else None
    context = ProviderContext(transport=transport, keep_raw=keep_raw)
    return BedrockProvider(config, context, BedrockOptions(region=region))


def request(**fields: Any) -> pb.ChatCompletionRequest:
    return codec.request_from_dict({"model": "bedrock/x", "messages": HELLO, **fields})


def body(**fields: Any) -> dict[str, Any]:
    return orjson.loads(provider().prepare(request(**fields), TARGET, stream=False).body)


def refused(**fields: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        body(**fields)
    assert caught.value.status == 400
    assert caught.value.type == "invalid_request_error"
    return caught.value


# ------------------------------------------------------------------ requests


def test_the_body_has_the_turns_and_no_model() -> None:
    assert body() == {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    # A stream's body is the same: the URL says it streams.
    streamed = provider().prepare(request(stream=True), TARGET, stream=True)
    assert orjson.loads(streamed.body) == body()


def test_sampling_goes_to_inference_config() -> None:
    sent = body(max_tokens=100, max_completion_tokens=200, temperature=0.3, top_p=0.9, stop="END")
    assert sent["inferenceConfig"] == {
        "maxTokens": 200,
        "temperature": 0.3,
        "topP": 0.9,
        "stopSequences": ["END"],
    }
    assert body(max_tokens=100, stop=["a", "b"])["inferenceConfig"] == {
        "maxTokens": 100,
        "stopSequences": ["a", "b"],
    }


def test_system_and_developer_messages_become_system_blocks_with_cache_points() -> None:
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
        {"text": "Be brief."},
        {"text": "Use French."},
        {"cachePoint": {"type": "default"}},
    ]
    assert [turn["role"] for turn in sent["messages"]] == ["user"]


def test_a_system_prompt_takes_text_only() -> None:
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}
    assert (
        refused(messages=[{"role": "system", "content": [image]}, *HELLO]).param == "messages[0].content[0]"
    )


def test_images_from_data_urls_and_s3() -> None:
    content = [
        {"type": "text", "text": "What are these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}", "detail": "auto"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "s3://bucket/cats/tabby.JPG"}},
    ]
    blocks = body(messages=[{"role": "user", "content": content}])["messages"][0]["content"]
    assert blocks == [
        {"text": "What are these?"},
        {"image": {"format": "png", "source": {"bytes": PIXEL}}},
        {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}},
        {"image": {"format": "jpeg", "source": {"s3Location": {"uri": "s3://bucket/cats/tabby.JPG"}}}},
    ]


@pytest.mark.parametrize(
    ("image", "param"),
    [
        ({"url": "https://example.test/cat.png"}, "messages[0].content[0].image_url.url"),
        ({"url": "data:image/tiff;base64,AAAA"}, "messages[0].content[0].image_url.url"),
        ({"url": "s3://bucket/cat.bmp"}, "messages[0].content[0].image_url.url"),
        ({"url": "ftp://x/cat.png"}, "messages[0].content[0].image_url.url"),
        (
            {"url": f"data:image/png;base64,{PIXEL}", "detail": "high"},
            "messages[0].content[0].image_url.detail",
        ),
    ],
)
def test_images_converse_cannot_take_are_refused(image: dict[str, str], param: str) -> None:
    err = refused(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": image}]}])
    assert err.param == param
    if image["url"].startswith("https"):
        assert "data URL" in err.message  # says what to send instead


def test_files_become_documents_with_a_name_converse_accepts() -> None:
    part = {
        "type": "file",
        "file": {"file_data": "data:application/pdf;base64,JVBERi0x", "filename": "Q3 report.v2.pdf"},
    }
    (block,) = body(messages=[{"role": "user", "content": [part]}])["messages"][0]["content"]
    assert block == {"document": {"format": "pdf", "name": "Q3 report v2", "source": {"bytes": "JVBERi0x"}}}
    by_id = {"type": "file", "file": {"file_id": "file-123"}}
    assert refused(messages=[{"role": "user", "content": [by_id]}]).param == "messages[0].content[0].file"


def test_native_converse_blocks_pass_as_parts() -> None:
    parts = [
        {"type": "text", "text": "long context"},
        {"type": "cachePoint", "cachePoint": {"type": "default"}},
        {"type": "guardContent", "guardContent": {"text": {"text": "check me"}}},
    ]
    blocks = body(messages=[{"role": "user", "content": parts}])["messages"][0]["content"]
    assert blocks == [
        {"text": "long context"},
        {"cachePoint": {"type": "default"}},
        {"guardContent": {"text": {"text": "check me"}}},
    ]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        (
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
            "messages[0].content[0].type",
        ),
        ({"type": "video"}, "messages[0].content[0].video"),
        ({"type": "text", "text": "hi", "citations": {"enabled": True}}, "messages[0].content[0].citations"),
    ],
)
def test_parts_without_a_converse_form_are_refused(part: dict[str, Any], param: str) -> None:
    assert refused(messages=[{"role": "user", "content": [part]}]).param == param


def test_a_multi_turn_tool_conversation() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "timeout", "is_error": True},
        {"role": "user", "content": "And tomorrow?"},
    ]
    sent = body(messages=messages, tools=[TOOL])
    turns = sent["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == [
        {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
        {"toolUse": {"toolUseId": "call_2", "name": "get_weather", "input": {"city": "Rome"}}},
    ]
    assert turns[2]["content"] == [
        {"toolResult": {"toolUseId": "call_1", "content": [{"text": "sunny, 24C"}]}},
        {"toolResult": {"toolUseId": "call_2", "content": [{"text": "timeout"}], "status": "error"}},
        {"text": "And tomorrow?"},
    ]
    assert sent["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Weather in a city",
                    "inputSchema": {
                        "json": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                            "required": ["city"],
                        }
                    },
                }
            }
        ]
    }


def test_tool_call_arguments_go_out_as_their_exact_text() -> None:
    call = {
        "id": "c",
        "type": "function",
        "function": {"name": "f", "arguments": '{"n": 12345678901234567890}'},
    }
    prepared = provider().prepare(
        request(messages=[*HELLO, {"role": "assistant", "tool_calls": [call]}], tools=[TOOL]),
        TARGET,
        stream=False,
    )
    assert b'"input":{"n": 12345678901234567890}' in prepared.body
    bad = {**call, "function": {"name": "f", "arguments": "[1]"}}
    err = refused(messages=[*HELLO, {"role": "assistant", "tool_calls": [bad]}], tools=[TOOL])
    assert err.param == "messages[1].tool_calls[0].function.arguments"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"tool": {"name": "get_weather"}}),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    assert body(tools=[TOOL], tool_choice=choice)["toolConfig"]["toolChoice"] == expected


def test_tool_choice_none_sends_no_tools_unless_the_conversation_has_tool_calls() -> None:
    assert "toolConfig" not in body(tools=[TOOL], tool_choice="none")
    call = {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    history = [
        *HELLO,
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c", "content": "ok"},
    ]
    assert refused(messages=history, tools=[TOOL], tool_choice="none").param == "tool_choice"


def test_tool_extras_strict_and_cache_points() -> None:
    tool = {
        "type": "function",
        "function": {"name": "f", "strict": True},
        "cache_control": {"type": "ephemeral"},
    }
    assert body(tools=[tool])["toolConfig"]["tools"] == [
        {
            "toolSpec": {
                "name": "f",
                "inputSchema": {"json": {"type": "object", "properties": {}}},
                "strict": True,
            }
        },
        {"cachePoint": {"type": "default"}},
    ]
    assert refused(tools=[{"type": "web_search"}]).param == "tools[0].type"
    assert refused(tools=[{**TOOL, "defer_loading": True}]).param == "tools[0].defer_loading"


def test_extra_fields_go_to_the_model_and_converse_keys_to_the_top() -> None:
    sent = body(
        top_k=40,
        thinking={"type": "enabled", "budget_tokens": 2048},
        additionalModelRequestFields={"anthropic_beta": ["x"]},
        guardrailConfig={"guardrailIdentifier": "gr-1", "guardrailVersion": "1"},
        performanceConfig={"latency": "optimized"},
    )
    assert sent["additionalModelRequestFields"] == {
        "anthropic_beta": ["x"],
        "top_k": 40,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }
    assert sent["guardrailConfig"] == {"guardrailIdentifier": "gr-1", "guardrailVersion": "1"}
    assert sent["performanceConfig"] == {"latency": "optimized"}
    assert refused(inferenceConfig={"maxTokens": 3}).param == "inferenceConfig"


def test_user_service_tier_and_json_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    sent = body(
        user="user-7",
        service_tier="priority",
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
    )
    assert sent["requestMetadata"] == {"user": "user-7"}
    assert sent["serviceTier"] == {"type": "priority"}
    structure = sent["outputConfig"]["textFormat"]["structure"]["jsonSchema"]
    assert structure["name"] == "answer" and orjson.loads(structure["schema"]) == schema
    assert "serviceTier" not in body(service_tier="auto")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"seed": 7}, "seed"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"service_tier": "scale"}, "service_tier"),
        ({"tools": [TOOL], "parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"messages": [{"role": "user", "content": "hi", "name": "ann"}]}, "messages[0].name"),
        ({"messages": [{"role": "function", "content": "x", "name": "f"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "hi", "metadata": {"a": 1}}]}, "messages[0].metadata"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages"),
    ],
)
def test_what_converse_cannot_honour_is_a_400_naming_the_field(fields: dict[str, Any], param: str) -> None:
    assert refused(**fields).param == param


def test_neutral_values_of_unsupported_fields_are_dropped() -> None:
    neutral = body(
        n=1,
        logprobs=False,
        frequency_penalty=0,
        presence_penalty=0,
        logit_bias={},
        response_format={"type": "text"},
        reasoning_effort="none",
        parallel_tool_calls=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "hi", "function_call": None}],
    )
    assert neutral == body()


def test_signed_reasoning_goes_back_as_reasoning_content() -> None:
    details = [
        {"type": "reasoning.text", "text": "hmm", "signature": "sig=="},
        {"type": "reasoning.encrypted", "data": "opaque=="},
        {"type": "reasoning.summary", "summary": "unverifiable"},
    ]
    messages = [*HELLO, {"role": "assistant", "content": "42", "reasoning_details": details}]
    assert body(messages=messages)["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig=="}}},
        {"reasoningContent": {"redactedContent": "opaque=="}},
        {"text": "42"},
    ]


# ------------------------------------------------------------------ URL and signing


def capture(answer: dict[str, Any], seen: list[httpx.Request]) -> Handler:
    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json=answer)

    return handler


CONVERSE_OK = {
    "output": {"message": {"role": "assistant", "content": [{"text": "hello"}]}},
    "stopReason": "end_turn",
    "usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4},
    "metrics": {"latencyMs": 5},
}


async def test_the_default_endpoint_is_the_keys_region_and_the_signature_names_it() -> None:
    seen: list[httpx.Request] = []
    p = provider(capture(CONVERSE_OK, seen), region="us-east-1")
    frankfurt = KeyConfig(
        secret=Secret(ACCESS_KEY_ID),
        secrets={"secret_access_key": Secret(SECRET_ACCESS_KEY), "region": Secret("eu-central-1")},
    )
    await p.send(p.prepare(request(), TARGET, stream=False), KEY)
    await p.send(p.prepare(request(), TARGET, stream=False), frankfurt)
    first, second = seen
    assert str(first.url) == f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{MODEL}/converse"
    assert second.url.host == "bedrock-runtime.eu-central-1.amazonaws.com"
    assert "/eu-central-1/bedrock/aws4_request" in second.headers["authorization"]
    assert second.headers["content-type"] == "application/json"
    assert "x-amz-security-token" not in second.headers
    await p.aclose()


@pytest.mark.parametrize(
    "model",
    [
        "amazon.nova-pro-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0",
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_the_fake_verifies_the_signature_through_the_real_transport(
    fake: FakeBedrock, model: str, stream: bool
) -> None:
    fake.allow(ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN)
    p = provider(base_url=fake.url)
    prepared = p.prepare(request(), Target("bedrock", model), stream=stream)
    if stream:
        chunks = [c async for c in p.stream(prepared, TEMPORARY_KEY)]
        assert "".join(c.delta.text for chunk in chunks for c in chunk.choices) == "echo: hi"
    else:
        assert (await p.send(prepared, TEMPORARY_KEY)).choices[0].message.text == "echo: hi"
    (signed,) = fake.signatures
    assert (signed.access_key_id, signed.region, signed.service) == (ACCESS_KEY_ID, "us-east-1", "bedrock")
    assert signed.session_token == SESSION_TOKEN
    assert FakeBedrock.model_id(fake.requests[0]) == model
    assert fake.requests[0].path.endswith("/converse-stream" if stream else "/converse")
    await p.aclose()


async def test_a_wrong_secret_is_a_credential_failure(fake: FakeBedrock) -> None:
    p = provider(base_url=fake.url)
    wrong = KeyConfig(secret=Secret(ACCESS_KEY_ID), secrets={"secret_access_key": Secret("not-it")})
    with pytest.raises(UpstreamError) as caught:
        await p.send(p.prepare(request(), TARGET, stream=False), wrong)
    assert (caught.value.status, caught.value.failure) == (403, FailureClass.CREDENTIAL)
    assert caught.value.error_type == "InvalidSignatureException"
    await p.aclose()


async def test_a_key_without_its_secret_fails_as_a_credential_problem_without_calling() -> None:
    seen: list[httpx.Request] = []
    p = provider(capture(CONVERSE_OK, seen))
    with pytest.raises(GatewayError) as caught:
        await p.send(p.prepare(request(), TARGET, stream=False), KeyConfig(secret=Secret(ACCESS_KEY_ID)))
    assert caught.value.failure is FailureClass.CREDENTIAL and not seen


async def test_secrets_never_reach_errors_logs_or_raw_request(
    fake: FakeBedrock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.allow(ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN)
    p = provider(base_url=fake.url, keep_raw=True)
    answer = await p.send(p.prepare(request(), TARGET, stream=False), TEMPORARY_KEY)
    fake.script(Reply.error("AccessDeniedException", "no access to this model"), Reply.exception(after=1))
    with pytest.raises(UpstreamError) as unary:
        await p.send(p.prepare(request(), TARGET, stream=False), TEMPORARY_KEY)
    with pytest.raises(UpstreamError) as streamed:
        _ = [c async for c in p.stream(p.prepare(request(), TARGET, stream=True), TEMPORARY_KEY)]
    seen = " ".join(
        [
            answer.extra_fields.raw_request_json,
            answer.extra_fields.raw_response_json,
            str(unary.value),
            repr(vars(unary.value)),
            repr(vars(streamed.value)),
            caplog.text,
            repr(p._signers),
            repr(TEMPORARY_KEY),
        ]
    )
    assert answer.extra_fields.raw_request_json  # there is something to look in
    for secret in (SECRET_ACCESS_KEY, SESSION_TOKEN):
        assert secret not in seen
    await p.aclose()


# ------------------------------------------------------------------ answers


async def send(answer: dict[str, Any]) -> pb.ChatCompletionResponse:
    p = provider(capture(answer, []))
    return await p.send(p.prepare(request(), TARGET, stream=False), KEY)


def as_openai(response: pb.ChatCompletionResponse) -> ChatCompletion:
    return ChatCompletion.model_validate(orjson.loads(orjson.dumps(codec.response_to_dict(response))))


async def test_a_text_answer() -> None:
    answer = {
        **CONVERSE_OK,
        "output": {"message": {"role": "assistant", "content": [{"text": "hel"}, {"text": "lo"}]}},
    }
    completion = as_openai(await send(answer))
    assert completion.choices[0].message.content == "hello"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == MODEL and completion.id.startswith("chatcmpl-")
    assert completion.usage is not None and (
        completion.usage.prompt_tokens,
        completion.usage.total_tokens,
    ) == (3, 4)


async def test_tool_use_becomes_tool_calls() -> None:
    use = {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}
    answer = {
        **CONVERSE_OK,
        "stopReason": "tool_use",
        "output": {"message": {"role": "assistant", "content": [{"toolUse": use}]}},
    }
    message = as_openai(await send(answer)).choices[0]
    assert message.finish_reason == "tool_calls"
    assert message.message.content is None
    (call,) = message.message.tool_calls or []
    assert (call.id, call.function.name, orjson.loads(call.function.arguments)) == (
        "tooluse_1",
        "get_weather",
        {"city": "Paris"},
    )


async def test_reasoning_becomes_reasoning_with_signed_details() -> None:
    content = [
        {"reasoningContent": {"reasoningText": {"text": "6 times 7", "signature": SIGNATURE}}},
        {"reasoningContent": {"redactedContent": "b3BhcXVl"}},
        {"text": "42"},
    ]
    answer = {**CONVERSE_OK, "output": {"message": {"role": "assistant", "content": content}}}
    out = codec.response_to_dict(await send(answer))["choices"][0]["message"]
    assert (out["content"], out["reasoning"]) == ("42", "6 times 7")
    assert [(d["type"], d.get("signature"), d.get("data")) for d in out["reasoning_details"]] == [
        ("reasoning.text", SIGNATURE, None),
        ("reasoning.encrypted", None, "b3BhcXVl"),
    ]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("malformed_model_output", "stop"),
        ("something_new", "stop"),
    ],
)
async def test_stop_reasons(stop_reason: str, finish: str) -> None:
    assert (await send({**CONVERSE_OK, "stopReason": stop_reason})).choices[0].finish_reason == finish


async def test_usage_counts_cache_reads_and_writes_in_the_prompt_and_prices_them() -> None:
    usage = {
        "inputTokens": 100,
        "outputTokens": 50,
        "totalTokens": 5150,
        "cacheReadInputTokens": 4000,
        "cacheWriteInputTokens": 1000,
    }
    got = (await send({**CONVERSE_OK, "usage": usage})).usage
    assert (got.prompt_tokens, got.completion_tokens, got.total_tokens) == (5100, 50, 5150)
    details = got.prompt_tokens_details
    assert (details.cached_tokens, details.cached_read_tokens, details.cached_write_tokens) == (
        4000,
        4000,
        1000,
    )
    price = PriceTable(read_price_file(SHIPPED_PRICES_PATH)).lookup("us." + MODEL, "bedrock")
    assert price is not None
    # Claude Sonnet 4.5 on Bedrock per million: input 3, output 15, cache read 0.30, cache write 3.75.
    assert cost(price, got).total_cost == pytest.approx((100 * 3 + 50 * 15 + 4000 * 0.30 + 1000 * 3.75) / 1e6)


@pytest.mark.parametrize(
    "answer",
    [
        {"stopReason": "end_turn"},
        {"output": {"message": {"content": "text"}}},
        {"output": {"message": {"content": [{"text": 5}]}}},
        {**CONVERSE_OK, "usage": {"inputTokens": "many"}},
    ],
)
async def test_an_unusable_answer_is_a_bad_response(answer: dict[str, Any]) -> None:
    with pytest.raises(GatewayError) as caught:
        await send(answer)
    assert (caught.value.status, caught.value.type) == (502, "upstream_bad_response")


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("error_type", "status", "failure"),
    [
        ("ThrottlingException", 429, FailureClass.RATE_LIMIT),
        ("ValidationException", 400, FailureClass.CALLER),
        ("AccessDeniedException", 403, FailureClass.CREDENTIAL),
        ("UnrecognizedClientException", 403, FailureClass.CREDENTIAL),
        ("ResourceNotFoundException", 404, FailureClass.CALLER),
        ("ModelTimeoutException", 408, FailureClass.TIMEOUT),
        ("ModelNotReadyException", 429, FailureClass.TRANSIENT),
        ("ModelErrorException", 424, FailureClass.TRANSIENT),
        ("InternalServerException", 500, FailureClass.TRANSIENT),
        ("ServiceUnavailableException", 503, FailureClass.TRANSIENT),
    ],
)
@pytest.mark.parametrize("where", ["header", "body"])
async def test_exception_types_map_to_statuses_and_failure_classes(
    error_type: str, status: int, failure: FailureClass, where: str
) -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        if where == "header":
            headers = {
                "x-amzn-errortype": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"
            }
            return httpx.Response(status, json={"message": "it went wrong"}, headers=headers)
        return httpx.Response(
            status, json={"__type": f"com.amazon.bedrock#{error_type}", "Message": "it went wrong"}
        )

    p = provider(handler)
    with pytest.raises(UpstreamError) as caught:
        await p.send(p.prepare(request(), TARGET, stream=False), KEY)
    err = caught.value
    assert (err.status, err.failure, err.error_type, err.message) == (
        status,
        failure,
        error_type,
        "it went wrong",
    )
    assert err.from_upstream


async def test_an_unknown_error_is_classed_by_its_status() -> None:
    p = provider(lambda _: httpx.Response(502, text="<html>bad gateway</html>"))
    with pytest.raises(UpstreamError) as caught:
        await p.send(p.prepare(request(), TARGET, stream=False), KEY)
    assert (caught.value.status, caught.value.failure) == (502, FailureClass.TRANSIENT)


# ------------------------------------------------------------------ streams


async def stream_from(p: BedrockProvider, **fields: Any) -> list[pb.ChatCompletionChunk]:
    """The whole stream; the provider is closed after it."""
    got: list[pb.ChatCompletionChunk] = []
    await collect(p, got, **fields)
    return got


async def collect(
    p: BedrockProvider,
    into: list[pb.ChatCompletionChunk],
    arrived: asyncio.Event | None = None,
    **fields: Any,
) -> None:
    """Stream into ``into`` (what came before a failure stays there; ``arrived`` is set once two
    chunks came); the provider is closed after it."""
    try:
        async for chunk in p.stream(p.prepare(request(**fields), TARGET, stream=True), KEY):
            into.append(chunk)
            if arrived is not None and len(into) >= 2:
                arrived.set()
    finally:
        await p.aclose()


def frames_handler(*frames: bytes) -> Handler:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=b"".join(frames), headers={"content-type": "application/vnd.amazon.eventstream"}
        )

    return handler


def as_openai_chunks(chunks: list[pb.ChatCompletionChunk]) -> list[ChatCompletionChunk]:
    return [
        ChatCompletionChunk.model_validate(orjson.loads(orjson.dumps(codec.response_to_dict(c))))
        for c in chunks
    ]


START = event_frame("messageStart", {"role": "assistant"})
STOP = event_frame("messageStop", {"stopReason": "end_turn"})
METADATA = event_frame(
    "metadata",
    {"usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7}, "metrics": {"latencyMs": 1}},
)


def text_frame(text: str, index: int = 0) -> bytes:
    return event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": text}})


async def test_a_text_stream(fake: FakeBedrock) -> None:
    fake.script(Reply.ok("one two three", usage=Usage(9, 4, cache_read_input_tokens=20)))
    chunks = as_openai_chunks(await stream_from(provider(base_url=fake.url)))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    last = chunks[-1]
    assert not last.choices and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (29, 4)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")


async def test_tool_calls_stream_as_indexed_deltas(fake: FakeBedrock) -> None:
    fake.script(
        Reply.ok("Checking.", tool_uses=[ToolUse("get_weather", {"city": "Paris"}), ToolUse("get_time")])
    )
    chunks = await stream_from(provider(base_url=fake.url), tools=[TOOL])
    deltas = [t for chunk in chunks for c in chunk.choices for t in c.delta.tool_calls]
    by_index: dict[int, str] = {}
    for d in deltas:
        by_index[d.index] = by_index.get(d.index, "") + d.function.arguments
    assert [d.function.name for d in deltas if d.function.name] == ["get_weather", "get_time"]
    assert {i: orjson.loads(a) for i, a in by_index.items()} == {0: {"city": "Paris"}, 1: {}}
    assert [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason] == ["tool_calls"]
    as_openai_chunks(chunks)


async def test_reasoning_streams_as_reasoning(fake: FakeBedrock) -> None:
    fake.script(Reply.ok("42", reasoning="six times seven"))
    chunks = await stream_from(provider(base_url=fake.url))
    deltas = [c.delta for chunk in chunks for c in chunk.choices]
    assert "".join(d.reasoning for d in deltas) == "six times seven"
    signatures = [r.signature for d in deltas for r in d.reasoning_details if r.signature]
    assert signatures == [SIGNATURE]
    assert "".join(d.text for d in deltas) == "42"


@pytest.mark.parametrize(
    ("error_type", "status", "failure"),
    [
        ("ThrottlingException", 429, FailureClass.RATE_LIMIT),
        ("ValidationException", 400, FailureClass.CALLER),
        ("ModelStreamErrorException", 424, FailureClass.TRANSIENT),
        ("ServiceUnavailableException", 503, FailureClass.TRANSIENT),
    ],
)
async def test_an_exception_frame_is_an_upstream_failure(
    fake: FakeBedrock, error_type: str, status: int, failure: FailureClass
) -> None:
    fake.script(Reply.exception(error_type, after=2))
    got: list[pb.ChatCompletionChunk] = []
    with pytest.raises(UpstreamError) as caught:
        await collect(provider(base_url=fake.url), got)
    err = caught.value
    assert (err.status, err.failure, err.error_type) == (status, failure, error_type)
    assert err.message == f"fake {error_type}" and err.from_upstream
    assert got  # content came first


async def test_an_error_frame_is_an_upstream_failure() -> None:
    error = encode_frame(
        {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b""
    )
    with pytest.raises(UpstreamError) as caught:
        await stream_from(provider(frames_handler(START, text_frame("a"), error)))
    assert (caught.value.status, caught.value.message) == (500, "boom")


async def test_a_corrupt_frame_is_a_bad_response(fake: FakeBedrock) -> None:
    fake.script(Reply.corrupt(after=1))
    with pytest.raises(GatewayError) as caught:
        await stream_from(provider(base_url=fake.url))
    assert (caught.value.status, caught.value.type, caught.value.failure) == (
        502,
        "upstream_bad_response",
        FailureClass.TRANSIENT,
    )


async def test_a_stream_broken_mid_way(fake: FakeBedrock) -> None:
    fake.script(Reply.broken(2, Reply.ok("one two three four")))
    with pytest.raises(GatewayError) as caught:
        await stream_from(provider(base_url=fake.url))
    assert (caught.value.type, caught.value.failure) == ("upstream_stream_broken", FailureClass.TRANSIENT)


async def test_a_stream_without_metadata_is_broken(fake: FakeBedrock) -> None:
    fake.script(Reply.ok("hi", omit_metadata=True))
    with pytest.raises(GatewayError) as caught:
        await stream_from(provider(base_url=fake.url))
    assert caught.value.type == "upstream_stream_broken" and "metadata" in caught.value.message


async def test_frames_split_anywhere_decode_the_same() -> None:
    whole = b"".join([START, text_frame("hel"), text_frame("lo"), STOP, METADATA])

    async def pieces() -> AsyncIterator[bytes]:
        # Three bytes at a time: every frame straddles reads, preludes included.
        for k in range(0, len(whole), 3):
            yield whole[k : k + 3]

    def trickle(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=pieces())

    chunks = await stream_from(provider(trickle))
    assert "".join(c.delta.text for chunk in chunks for c in chunk.choices) == "hello"
    assert chunks[-1].usage.total_tokens == 7


async def test_a_malformed_payload_is_skipped_and_unknown_events_carry_nothing() -> None:
    bad = encode_frame({":message-type": "event", ":event-type": "contentBlockDelta"}, b"{not json")
    novel = event_frame("somethingNew", {"x": 1})
    chunks = await stream_from(
        provider(frames_handler(START, text_frame("a"), bad, novel, text_frame("b"), STOP, METADATA))
    )
    assert "".join(c.delta.text for chunk in chunks for c in chunk.choices) == "ab"


async def test_malformed_payloads_in_a_row_fail_the_stream() -> None:
    bad = encode_frame({":message-type": "event", ":event-type": "contentBlockDelta"}, b"[]")
    with pytest.raises(GatewayError) as caught:
        await stream_from(provider(frames_handler(START, bad, bad, bad, STOP, METADATA)))
    assert caught.value.type == "upstream_bad_response"


async def test_a_stream_error_response_is_mapped_like_unary() -> None:
    headers = {"x-amzn-errortype": "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    p = provider(lambda _: httpx.Response(429, json={"message": "Too many requests"}, headers=headers))
    with pytest.raises(UpstreamError) as caught:
        await stream_from(p)
    assert (caught.value.status, caught.value.failure, caught.value.message) == (
        429,
        FailureClass.RATE_LIMIT,
        "Too many requests",
    )


async def test_cancelling_a_stream_closes_the_upstream_connection(fake: FakeBedrock) -> None:
    fake.script(Reply.hang(after=1))
    got: list[pb.ChatCompletionChunk] = []
    arrived = asyncio.Event()
    task = asyncio.create_task(collect(provider(base_url=fake.url), got, arrived))
    await asyncio.wait_for(arrived.wait(), 5)  # the role chunk and the first text
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await fake.wait_for_disconnect_async(timeout=5)
    assert fake.disconnects[0].path.endswith("/converse-stream")


# ------------------------------------------------------------------ config and prices


def providers(section: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    raw = {"providers": {"p": section}, "routing": {"default_provider": "p"}}
    return parse_config(raw, env=env or {}).providers


AWS_ENV = {"AK": ACCESS_KEY_ID, "SK": SECRET_ACCESS_KEY, "ST": SESSION_TOKEN}


@pytest.mark.parametrize(
    ("section", "path"),
    [
        (
            {"kind": "bedrock", "region": "us-east-1", "keys": [{"value": "${AK}"}]},
            "providers.p.keys[0].secret_access_key",
        ),
        (
            {"kind": "bedrock", "keys": [{"value": "${AK}", "secret_access_key": "${SK}"}]},
            "providers.p.region",
        ),
        ({"kind": "bedrock", "region": "Virginia"}, "providers.p.region"),
        (
            {
                "kind": "bedrock",
                "region": "us-east-1",
                "keys": [{"value": "${AK}", "secret_access_key": "${SK}", "region": "x/y"}],
            },
            "providers.p.keys[0].region",
        ),
        (
            {
                "kind": "bedrock",
                "region": "us-east-1",
                "keys": [{"value": "${AK}", "secret_access_key": "${SK}", "profile": "dev"}],
            },
            "providers.p.keys[0].profile",
        ),
    ],
)
def test_a_bad_bedrock_section_names_the_key(section: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check(providers(section, AWS_ENV))
    assert caught.value.path == path


def test_a_bedrock_section_builds_with_env_secrets_and_a_per_key_region() -> None:
    section = {
        "kind": "bedrock",
        "region": "us-west-2",
        "keys": [
            {"value": "${AK}", "secret_access_key": "${SK}", "session_token": "${ST}"},
            {"value": "${AK}", "secret_access_key": "${SK}", "region": "eu-west-1"},
        ],
    }
    config = providers(section, AWS_ENV)
    check(config)
    built = build_provider(config["p"], ProviderContext())
    assert isinstance(built, BedrockProvider) and built.options == BedrockOptions(region="us-west-2")
    assert built.config.base_url == "https://bedrock-runtime.{region}.amazonaws.com"
    prepared = built.prepare(request(), TARGET, stream=False)
    first, second = built.config.keys
    assert built.url(prepared, first).startswith("https://bedrock-runtime.us-west-2.amazonaws.com/")
    assert built.url(prepared, second).startswith("https://bedrock-runtime.eu-west-1.amazonaws.com/")
    assert first.secrets["session_token"].value == SESSION_TOKEN
    assert SECRET_ACCESS_KEY not in repr(config) and SESSION_TOKEN not in repr(config)


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-sonnet-4-5"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-sonnet-4-5"),
        ("global.anthropic.claude-haiku-4-5-20251001-v1:0", "anthropic.claude-haiku-4-5"),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", "anthropic.claude-3-5-sonnet"),
        ("amazon.nova-pro-v1:0", "amazon.nova-pro"),
        ("eu.amazon.nova-lite-v1:0", "amazon.nova-lite"),
        ("amazon.nova-micro-v1:0", "amazon.nova-micro"),
        ("meta.llama3-1-70b-instruct-v1:0", "meta.llama3-1-70b-instruct"),
        ("us.meta.llama3-3-70b-instruct-v1:0", "meta.llama3-3-70b-instruct"),
        ("mistral.mistral-large-2407-v1:0", "mistral.mistral-large-2407"),
        ("mistral.mistral-7b-instruct-v0:2", "mistral.mistral-7b-instruct"),
    ],
)
def test_bedrock_model_ids_find_their_price(model: str, family: str) -> None:
    table = PriceTable(read_price_file(SHIPPED_PRICES_PATH))
    price = table.lookup(model, "bedrock")
    assert price is not None and price == table.lookup(family)
    assert price.cached_input is not None and price.cached_input <= price.input


def test_bedrock_id_normalising_leaves_other_names_alone() -> None:
    table = PriceTable(read_price_file(SHIPPED_PRICES_PATH))
    assert table.lookup("gpt-4.1") is not None and table.lookup("gpt-4.1") != table.lookup("gpt-4")
    assert table.lookup("us.gpt-4o") is None  # a region prefix only counts before a vendor's model
