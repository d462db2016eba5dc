"""The Gemini adapter (kind ``gemini``), in process: request mapping, answers, streams and errors.

Request mapping is checked on ``prepare``'s body; answers and errors go through the provider's real
HTTP path, against ``httpx.MockTransport`` (exact bytes) or the fake Gemini server. What callers get
must parse with the ``openai`` SDK exactly as OpenAI's answers do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from service.errors import FailureClass, GatewayError, UpstreamError
from service.pricing import PriceTable
from service.providers.base import Prepared, ProviderContext
from service.providers.google import GeminiOptions, GeminiProvider
from service.routing import Target
from switchyard import codec
from switchyard.config import KeyConfig, PricingConfig, ProviderConfig, Secret
from switchyard.v1 import chat_pb2 as pb
from tests.fakes.gemini import THOUGHT_SIGNATURE, FakeGemini, FunctionCall, Reply, Usage

API_KEY = "AIza-test-gemini-key-0123456789"
KEY = KeyConfig(secret=Secret(API_KEY))
MODEL = "gemini-2.5-flash"
TARGET = Target("gemini", MODEL)
HELLO = [{"role": "user", "content": "hi"}]
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}

Handler = Callable[[httpx.Request], httpx.Response]


def provider(
    handler: Handler | None = None, *, base_url: str = "https://gemini.example", **options: Any
) -> GeminiProvider:
    config = ProviderConfig(name="gemini", kind="gemini", base_url=base_url, keys=(KEY,))
    context = ProviderContext(transport=httpx.MockTransport(handler) if handler else None, keep_raw=True)
    return GeminiProvider(config, context, GeminiOptions(**options))


def request(**fields: Any) -> pb.ChatCompletionRequest:
    return codec.request_from_dict({"model": f"gemini/{MODEL}", "messages": HELLO, **fields})


def body(model: str = MODEL, stream: bool = False, **fields: Any) -> dict[str, Any]:
    options = {k: fields.pop(k) for k in ("schemas",) if k in fields}
    prepared = provider(**options).prepare(request(**fields), Target("gemini", model), stream=stream)
    return orjson.loads(prepared.body)


def refused(**fields: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        body(**fields)
    assert caught.value.status == 400
    assert caught.value.type == "invalid_request_error"
    return caught.value


def user(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(parts)}]


# ------------------------------------------------------------------ requests


def test_the_smallest_body() -> None:
    assert body() == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    assert body(stream=True) == body()  # a stream differs by its URL only


def test_system_and_developer_messages_become_the_system_instruction() -> None:
    sent = body(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        ]
    )
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]}
    assert sent["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


def test_a_system_instruction_takes_text_only() -> None:
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}
    err = refused(messages=[{"role": "system", "content": [image]}, *HELLO])
    assert err.param == "messages[0].content[0]"


def test_roles_become_user_and_model_and_consecutive_turns_merge() -> None:
    sent = body(
        messages=[
            {"role": "user", "content": "one"},
            {"role": "user", "content": "two"},
            {"role": "assistant", "content": "three"},
            {"role": "assistant", "content": ""},  # says nothing: left out
            {"role": "user", "content": "four"},
        ]
    )
    assert sent["contents"] == [
        {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
        {"role": "model", "parts": [{"text": "three"}]},
        {"role": "user", "parts": [{"text": "four"}]},
    ]


def test_an_unknown_role_and_no_conversation_are_refused() -> None:
    assert refused(messages=[{"role": "function", "name": "f", "content": "x"}]).param == "messages[0].role"
    assert refused(messages=[{"role": "system", "content": "only a system prompt"}]).param == "messages"


def test_images_audio_and_files() -> None:
    parts = body(
        messages=user(
            {"type": "text", "text": "What are these?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.test/cat.webp?size=2"}},
            {"type": "image_url", "image_url": {"url": "https://example.test/photo"}},
            {"type": "image_url", "image_url": {"url": "gs://bucket/scan.png"}},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            {
                "type": "file",
                "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
            },
            {
                "type": "file",
                "file": {
                    "file_id": "https://generativelanguage.googleapis.com/v1beta/files/abc",
                    "filename": "b.pdf",
                },
            },
        )
    )["contents"][0]["parts"]
    assert parts == [
        {"text": "What are these?"},
        {"inlineData": {"mimeType": "image/png", "data": PIXEL}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.test/cat.webp?size=2"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.test/photo"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/scan.png"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
        {
            "fileData": {
                "mimeType": "application/pdf",
                "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc",
            }
        },
    ]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        (
            {"type": "image_url", "image_url": {"url": "ftp://example.test/a.png"}},
            "messages[0].content[0].image_url.url",
        ),
        (
            {"type": "input_audio", "input_audio": {"data": "x", "format": "flac"}},
            "messages[0].content[0].input_audio.format",
        ),
        ({"type": "file", "file": {"file_id": "file-abc123"}}, "messages[0].content[0].file"),
        ({"type": "video"}, "messages[0].content[0].type"),
    ],
)
def test_content_gemini_cannot_take_is_refused(part: dict[str, Any], param: str) -> None:
    assert refused(messages=user(part)).param == param


def test_a_gemini_native_part_goes_out_as_written() -> None:
    video = {"type": "fileData", "fileData": {"mimeType": "video/mp4", "fileUri": "gs://b/v.mp4"}}
    assert body(messages=user(video))["contents"][0]["parts"] == [
        {"fileData": {"mimeType": "video/mp4", "fileUri": "gs://b/v.mp4"}}
    ]


def _call(call_id: str, arguments: str = '{"city":"Paris"}', **extra: Any) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": arguments},
        **extra,
    }


def test_a_tool_conversation_becomes_function_calls_and_responses() -> None:
    signed = _call("call_1", extra_content={"google": {"thought_signature": THOUGHT_SIGNATURE}})
    sent = body(
        tools=[TOOL],
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [signed, _call("call_2", '{ "city" : "Rome" }')],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"celsius": 24}'},
            {"role": "tool", "tool_call_id": "call_2", "content": "sunny"},
            {"role": "user", "content": "Thanks!"},
        ],
    )
    assert [turn["role"] for turn in sent["contents"]] == ["user", "model", "user"]
    model_turn = sent["contents"][1]["parts"]
    assert model_turn == [
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"},
            "thoughtSignature": THOUGHT_SIGNATURE,
        },
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}, "id": "call_2"}},
    ]
    assert sent["contents"][2]["parts"] == [
        {"functionResponse": {"id": "call_1", "name": "get_weather", "response": {"celsius": 24}}},
        {"functionResponse": {"id": "call_2", "name": "get_weather", "response": {"output": "sunny"}}},
        {"text": "Thanks!"},
    ]


def test_tool_call_arguments_go_out_as_their_exact_text() -> None:
    prepared = provider().prepare(
        request(
            messages=[*HELLO, {"role": "assistant", "tool_calls": [_call("c", '{"n":12345678901234567890}')]}]
        ),
        TARGET,
        stream=False,
    )
    assert b'"args":{"n":12345678901234567890}' in prepared.body


@pytest.mark.parametrize("arguments", ["[1, 2]", "not json", '"text"'])
def test_tool_call_arguments_must_be_a_json_object(arguments: str) -> None:
    err = refused(messages=[*HELLO, {"role": "assistant", "tool_calls": [_call("c", arguments)]}])
    assert err.param == "messages[1].tool_calls[0].function.arguments"


def test_a_tool_result_must_answer_a_known_call() -> None:
    assert refused(messages=[*HELLO, {"role": "tool", "tool_call_id": "nope", "content": "x"}]).param == (
        "messages[1].tool_call_id"
    )
    assert refused(messages=[*HELLO, {"role": "tool", "content": "x"}]).param == "messages[1].tool_call_id"


def test_tools_keep_their_schema_text() -> None:
    sent = body(tools=[TOOL, {"type": "function", "function": {"name": "now"}}, {"type": "google_search"}])
    assert sent["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather in a city",
                    "parameters": TOOL["function"]["parameters"],
                },
                {"name": "now"},
            ]
        },
        {"google_search": {}},
    ]
    json_schema = body(tools=[TOOL], schemas="json_schema")["tools"][0]["functionDeclarations"][0]
    assert json_schema["parametersJsonSchema"] == TOOL["function"]["parameters"]
    assert "parameters" not in json_schema


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    assert body(tools=[TOOL], tool_choice=choice)["toolConfig"] == {"functionCallingConfig": expected}


def test_tool_choice_without_tools_is_not_sent_and_unknown_ones_are_refused() -> None:
    assert "toolConfig" not in body(tool_choice="required")
    assert refused(tools=[TOOL], tool_choice={"type": "function"}).param == "tool_choice"


def test_sampling_and_limits_go_into_generation_config() -> None:
    config = body(
        temperature=0.4,
        top_p=0.9,
        max_tokens=100,
        max_completion_tokens=200,
        stop=["END", "STOP"],
        n=3,
        seed=42,
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        logprobs=True,
        top_logprobs=3,
    )["generationConfig"]
    assert config == {
        "temperature": 0.4,
        "topP": 0.9,
        "seed": 42,
        "frequencyPenalty": 0.5,
        "presencePenalty": -0.5,
        "maxOutputTokens": 200,  # max_completion_tokens wins, as at OpenAI
        "stopSequences": ["END", "STOP"],
        "candidateCount": 3,
        "responseLogprobs": True,
        "logprobs": 3,
    }
    assert body(stop="END", max_tokens=7)["generationConfig"] == {
        "maxOutputTokens": 7,
        "stopSequences": ["END"],
    }


def test_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    json_schema = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    assert body(response_format={"type": "text"}).get("generationConfig") is None
    assert body(response_format={"type": "json_object"})["generationConfig"] == {
        "responseMimeType": "application/json"
    }
    assert body(response_format=json_schema)["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": schema,
    }
    assert (
        body(response_format=json_schema, schemas="json_schema")["generationConfig"]["responseJsonSchema"]
        == schema
    )


@pytest.mark.parametrize(
    ("effort", "thinking"),
    [
        ("none", {"thinkingBudget": 0, "includeThoughts": False}),
        ("minimal", {"thinkingBudget": 512, "includeThoughts": True}),
        ("low", {"thinkingBudget": 1024, "includeThoughts": True}),
        ("medium", {"thinkingBudget": 8192, "includeThoughts": True}),
        ("high", {"thinkingBudget": 24576, "includeThoughts": True}),
        ("xhigh", {"thinkingBudget": 32768, "includeThoughts": True}),
    ],
)
def test_reasoning_effort_becomes_a_thinking_budget_on_gemini_2(
    effort: str, thinking: dict[str, Any]
) -> None:
    assert body(reasoning_effort=effort)["generationConfig"]["thinkingConfig"] == thinking


def test_reasoning_effort_becomes_a_thinking_level_on_gemini_3() -> None:
    config = body("gemini-3-pro-preview", reasoning_effort="low")["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingLevel": "LOW", "includeThoughts": True}
    with pytest.raises(GatewayError) as caught:
        body("gemini-3-pro-preview", reasoning_effort="none")
    assert caught.value.param == "reasoning_effort"


@pytest.mark.parametrize(
    ("tier", "sent"), [("auto", None), ("default", "standard"), ("flex", "flex"), ("priority", "priority")]
)
def test_service_tier(tier: str, sent: str | None) -> None:
    assert body(service_tier=tier).get("serviceTier") == sent


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"tools": [TOOL], "parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"service_tier": "scale"}, "service_tier"),
        ({"top_logprobs": 2}, "top_logprobs"),
    ],
)
def test_what_gemini_cannot_honour_is_a_400_naming_the_field(fields: dict[str, Any], param: str) -> None:
    assert refused(**fields).param == param


def test_neutral_values_and_callers_metadata_are_dropped() -> None:
    assert body(parallel_tool_calls=True, user="u-1", logprobs=False) == body()


def test_unknown_fields_pass_through_and_merge_into_generation_config() -> None:
    sent = body(
        temperature=0.2,
        safetySettings=[{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        generationConfig={"topK": 40},
        cachedContent="cachedContents/abc",
    )
    assert sent["generationConfig"] == {"temperature": 0.2, "topK": 40}
    assert sent["safetySettings"][0]["threshold"] == "BLOCK_NONE"
    assert sent["cachedContent"] == "cachedContents/abc"


# ------------------------------------------------------------------ answers


def answer(data: dict[str, Any], seen: list[httpx.Request] | None = None) -> Handler:
    def handler(req: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(req)
        return httpx.Response(200, json=data)

    return handler


def generated(*parts: dict[str, Any], finish: str = "STOP", **usage: int) -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": list(parts)}, "finishReason": finish, "index": 0}
        ],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, **usage},
        "modelVersion": "gemini-2.5-flash-001",
        "responseId": "resp-1",
    }


async def send(handler: Handler, **fields: Any) -> pb.ChatCompletionResponse:
    p = provider(handler)
    try:
        return await p.send(p.prepare(request(**fields), TARGET, stream=False), KEY)
    finally:
        await p.aclose()


def as_openai(response: pb.ChatCompletionResponse) -> ChatCompletion:
    return ChatCompletion.model_validate(orjson.loads(orjson.dumps(codec.response_to_dict(response))))


@pytest.mark.parametrize(
    ("model", "stream", "path"),
    [
        (MODEL, False, f"/v1beta/models/{MODEL}:generateContent"),
        (MODEL, True, f"/v1beta/models/{MODEL}:streamGenerateContent"),
        ("tunedModels/my-model", False, "/v1beta/tunedModels/my-model:generateContent"),
    ],
)
def test_the_url_names_the_model_and_the_key_goes_in_a_header(model: str, stream: bool, path: str) -> None:
    p = provider()
    prepared = p.prepare(request(), Target("gemini", model), stream=stream)
    url = httpx.URL(p.url(prepared, KEY))
    assert (url.host, url.path) == ("gemini.example", path)
    assert url.params.get("alt") == ("sse" if stream else None)
    assert API_KEY not in str(url)
    assert p.headers(prepared, KEY) == {"x-goog-api-key": API_KEY}


async def test_a_text_answer() -> None:
    seen: list[httpx.Request] = []
    response = await send(answer(generated({"text": "Hello"}, {"text": " there"}), seen))
    completion = as_openai(response)
    assert completion.choices[0].message.content == "Hello there"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.id, completion.model, completion.object) == (
        "resp-1",
        "gemini-2.5-flash-001",
        "chat.completion",
    )
    assert seen[0].headers["x-goog-api-key"] == API_KEY
    assert API_KEY not in response.extra_fields.raw_request_json + response.extra_fields.raw_response_json


async def test_function_calls_become_tool_calls() -> None:
    data = generated(
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": THOUGHT_SIGNATURE,
        },
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}, "id": "given-id"}},
    )
    completion = as_openai(await send(answer(data), tools=[TOOL]))
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    first, second = message.tool_calls or []
    assert first.id.startswith("call_") and len(first.id) > 10 and second.id == "given-id"
    assert [orjson.loads(c.function.arguments) for c in (first, second)] == [
        {"city": "Paris"},
        {"city": "Rome"},
    ]  # type: ignore[union-attr]
    assert (first.model_extra or {})["extra_content"] == {"google": {"thought_signature": THOUGHT_SIGNATURE}}
    assert "extra_content" not in (second.model_extra or {})


async def test_thought_summaries_become_reasoning() -> None:
    data = generated({"text": "Six times seven.", "thought": True}, {"text": "42"}, thoughtsTokenCount=20)
    completion = as_openai(await send(answer(data)))
    message = completion.choices[0].message
    assert message.content == "42"
    extra = message.model_extra or {}
    assert extra["reasoning"] == "Six times seven."
    assert extra["reasoning_details"] == [{"type": "reasoning.text", "index": 0, "text": "Six times seven."}]


@pytest.mark.parametrize(
    ("finish", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
    ],
)
async def test_finish_reasons(finish: str, expected: str) -> None:
    response = await send(answer(generated({"text": "x"}, finish=finish)))
    assert response.choices[0].finish_reason == expected


async def test_a_candidate_stopped_by_a_filter_may_have_no_content() -> None:
    data = generated(finish="SAFETY")
    del data["candidates"][0]["content"]
    completion = as_openai(await send(answer(data)))
    assert (completion.choices[0].message.content, completion.choices[0].finish_reason) == (
        "",
        "content_filter",
    )


async def test_usage_counts_cache_thoughts_and_tool_prompts_and_prices_them() -> None:
    usage_meta = {
        "promptTokenCount": 1000,
        "cachedContentTokenCount": 800,
        "candidatesTokenCount": 50,
        "thoughtsTokenCount": 200,
        "toolUsePromptTokenCount": 30,
        "promptTokensDetails": [
            {"modality": "TEXT", "tokenCount": 900},
            {"modality": "IMAGE", "tokenCount": 100},
        ],
    }
    data = generated({"text": "x"})
    data["usageMetadata"] = usage_meta
    usage = as_openai(await send(answer(data))).usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1030, 250, 1280)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 800
    assert usage.prompt_tokens_details.image_tokens == 100
    assert (
        usage.completion_tokens_details is not None
        and usage.completion_tokens_details.reasoning_tokens == 200
    )
    prices = PriceTable.load(PricingConfig())
    price = prices.lookup(MODEL, "gemini")
    assert price is not None and price.cached_input is not None and price.reasoning is not None
    cost = prices.cost(price, (await send(answer(data))).usage)
    expected = (
        230 * price.input + 800 * price.cached_input + 50 * price.output + 200 * price.reasoning
    ) / 1e6
    assert cost.total_cost == pytest.approx(expected)
    assert cost.reasoning_tokens_cost == pytest.approx(200 * price.reasoning / 1e6)


async def test_several_candidates_are_several_choices_with_log_probabilities() -> None:
    chosen = [{"token": "Hi", "logProbability": -0.25}, {"token": "!", "logProbability": -1.5}]
    top = [{"candidates": [chosen[0], {"token": "Yo", "logProbability": -2.0}]}, {"candidates": [chosen[1]]}]
    data = generated({"text": "Hi!"})
    data["candidates"][0]["logprobsResult"] = {"topCandidates": top, "chosenCandidates": chosen}
    data["candidates"].append(
        {"content": {"parts": [{"text": "Hello"}], "role": "model"}, "finishReason": "STOP", "index": 1}
    )
    completion = as_openai(await send(answer(data), n=2, logprobs=True, top_logprobs=2))
    assert [(c.index, c.message.content) for c in completion.choices] == [(0, "Hi!"), (1, "Hello")]
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert [(t.token, t.logprob) for t in logprobs.content] == [("Hi", -0.25), ("!", -1.5)]
    assert [t.token for t in logprobs.content[0].top_logprobs] == ["Hi", "Yo"]
    assert logprobs.content[0].bytes == list(b"Hi")
    assert completion.choices[1].logprobs is None


@pytest.mark.parametrize("stream", [False, True])
async def test_a_prompt_blocked_by_safety_is_a_400_content_filter(gemini: FakeGemini, stream: bool) -> None:
    gemini.script(Reply.blocked("PROHIBITED_CONTENT"))
    p = provider(base_url=gemini.url)
    prepared = p.prepare(request(), TARGET, stream=stream)

    async def call() -> None:
        if stream:
            [chunk async for chunk in p.stream(prepared, KEY)]
        else:
            await p.send(prepared, KEY)

    with pytest.raises(UpstreamError) as caught:
        await call()
    await p.aclose()
    err = caught.value
    assert (err.status, err.type, err.code, err.error_type) == (
        400,
        "content_filter",
        "content_filter",
        "content_filter",
    )
    assert err.failure is FailureClass.CALLER and not err.failure.falls_back and not err.failure.retryable
    assert "PROHIBITED_CONTENT" in err.message


@pytest.mark.parametrize(
    "data",
    [
        {"candidates": []},
        {"usageMetadata": {}},
        {"candidates": [{"content": {"parts": "text"}}]},
        {"candidates": [{"content": {"parts": [{"text": 7}]}}]},
        {
            "candidates": [{"content": {"parts": [{"text": "x"}]}}],
            "usageMetadata": {"promptTokenCount": "ten"},
        },
    ],
)
async def test_an_unusable_answer_is_a_bad_response(data: dict[str, Any]) -> None:
    with pytest.raises(GatewayError) as caught:
        await send(answer(data))
    assert (caught.value.status, caught.value.type, caught.value.failure) == (
        502,
        "upstream_bad_response",
        FailureClass.TRANSIENT,
    )


def google_error(status: str, code: int, *details: dict[str, Any]) -> Handler:
    def handler(req: httpx.Request) -> httpx.Response:
        error: dict[str, Any] = {"code": code, "message": f"it went wrong: {status}", "status": status}
        if details:
            error["details"] = list(details)
        return httpx.Response(code, json={"error": error})

    return handler


@pytest.mark.parametrize(
    ("status", "code", "failure"),
    [
        ("INVALID_ARGUMENT", 400, FailureClass.CALLER),
        ("FAILED_PRECONDITION", 400, FailureClass.CREDENTIAL),
        ("UNAUTHENTICATED", 401, FailureClass.CREDENTIAL),
        ("PERMISSION_DENIED", 403, FailureClass.CREDENTIAL),
        ("NOT_FOUND", 404, FailureClass.CALLER),
        ("RESOURCE_EXHAUSTED", 429, FailureClass.RATE_LIMIT),
        ("INTERNAL", 500, FailureClass.TRANSIENT),
        ("UNAVAILABLE", 503, FailureClass.TRANSIENT),
        ("DEADLINE_EXCEEDED", 504, FailureClass.TIMEOUT),
    ],
)
async def test_google_statuses_map_to_failure_classes(status: str, code: int, failure: FailureClass) -> None:
    with pytest.raises(UpstreamError) as caught:
        await send(google_error(status, code))
    err = caught.value
    assert (err.status, err.failure, err.error_type) == (code, failure, status)
    assert err.message == f"it went wrong: {status}" and err.from_upstream


async def test_an_invalid_api_key_is_a_credential_failure_not_the_callers() -> None:
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
    }
    with pytest.raises(UpstreamError) as caught:
        await send(google_error("INVALID_ARGUMENT", 400, info))
    assert (caught.value.status, caught.value.failure, caught.value.code) == (
        401,
        FailureClass.CREDENTIAL,
        "API_KEY_INVALID",
    )


async def test_retry_info_says_when_to_come_back_unless_a_header_does() -> None:
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7.5s"}
    with pytest.raises(UpstreamError) as caught:
        await send(google_error("RESOURCE_EXHAUSTED", 429, retry))
    assert caught.value.retry_after_s == 7.5

    def with_header(req: httpx.Request) -> httpx.Response:
        error = {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED", "details": [retry]}
        return httpx.Response(429, json={"error": error}, headers={"retry-after": "2"})

    with pytest.raises(UpstreamError) as caught:
        await send(with_header)
    assert caught.value.retry_after_s == 2.0


async def test_errors_in_a_list_and_errors_without_json() -> None:
    def listed(req: httpx.Request) -> httpx.Response:
        return httpx.Response(
            503, json=[{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}]
        )

    with pytest.raises(UpstreamError) as caught:
        await send(listed)
    assert (caught.value.status, caught.value.message, caught.value.failure) == (
        503,
        "overloaded",
        FailureClass.TRANSIENT,
    )
    with pytest.raises(UpstreamError) as caught:
        await send(lambda req: httpx.Response(502, text="<html>Bad Gateway</html>"))
    assert (caught.value.status, caught.value.failure) == (502, FailureClass.TRANSIENT)
    assert "Bad Gateway" in caught.value.message


# ------------------------------------------------------------------ streams


async def stream_from(p: GeminiProvider, **fields: Any) -> list[pb.ChatCompletionChunk]:
    try:
        return [chunk async for chunk in p.stream(p.prepare(request(**fields), TARGET, stream=True), KEY)]
    finally:
        await p.aclose()


def as_openai_chunks(chunks: list[pb.ChatCompletionChunk]) -> list[ChatCompletionChunk]:
    return [
        ChatCompletionChunk.model_validate(orjson.loads(orjson.dumps(codec.response_to_dict(c))))
        for c in chunks
    ]


async def test_a_text_stream(gemini: FakeGemini) -> None:
    gemini.script(Reply.ok("one two three four", usage=Usage(prompt=9, candidates=4, cached=3)))
    chunks = as_openai_chunks(await stream_from(provider(base_url=gemini.url)))
    first, *middle, finish, usage = chunks
    assert first.choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in [first, *middle]) == "one two three four"
    assert all(c.choices[0].finish_reason is None for c in [first, *middle])
    assert finish.choices[0].finish_reason == "stop"
    assert usage.choices == [] and usage.usage is not None
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens, usage.usage.total_tokens) == (9, 4, 13)
    assert (
        usage.usage.prompt_tokens_details is not None and usage.usage.prompt_tokens_details.cached_tokens == 3
    )
    assert {c.id for c in chunks} == {f"fake-response-{gemini.requests[0].seq:08d}"}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    rec = gemini.requests[0]
    assert rec.path == f"/v1beta/models/{MODEL}:streamGenerateContent" and rec.query == {"alt": "sse"}
    assert rec.header("x-goog-api-key") == API_KEY and rec.header("accept") == "text/event-stream"


async def test_function_calls_stream_as_whole_indexed_deltas(gemini: FakeGemini) -> None:
    calls = [
        FunctionCall("get_weather", {"city": "Paris"}, thought_signature=THOUGHT_SIGNATURE),
        FunctionCall("now"),
    ]
    gemini.script(Reply.ok("Let me check.", calls=calls))
    chunks = as_openai_chunks(await stream_from(provider(base_url=gemini.url), tools=[TOOL]))
    deltas = [t for c in chunks for choice in c.choices for t in choice.delta.tool_calls or []]
    assert [(d.index, d.function.name, d.function.arguments) for d in deltas] == [  # type: ignore[union-attr]
        (0, "get_weather", '{"city":"Paris"}'),
        (1, "now", "{}"),
    ]
    assert all(d.id and d.type == "function" for d in deltas)
    assert (deltas[0].model_extra or {})["extra_content"]["google"]["thought_signature"] == THOUGHT_SIGNATURE
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"
    ]


async def test_thoughts_stream_as_reasoning(gemini: FakeGemini) -> None:
    gemini.script(Reply.ok("42", thought="six times seven is forty-two", usage=Usage(5, 1, thoughts=12)))
    chunks = await stream_from(provider(base_url=gemini.url), reasoning_effort="low")
    reasoning = "".join(c.choices[0].delta.reasoning for c in chunks if c.choices)
    assert reasoning == "six times seven is forty-two"
    indexes = [d.index for c in chunks if c.choices for d in c.choices[0].delta.reasoning_details]
    assert indexes == list(range(len(indexes))) and len(indexes) > 1
    assert "".join(c.choices[0].delta.text for c in chunks if c.choices) == "42"
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 12
    assert gemini.requests[0].body["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 1024,
        "includeThoughts": True,
    }


async def test_several_candidates_stream_side_by_side(gemini: FakeGemini) -> None:
    gemini.script(Reply.ok("same answer"))
    chunks = await stream_from(provider(base_url=gemini.url), n=2)
    for index in (0, 1):
        text = "".join(c.delta.text for chunk in chunks for c in chunk.choices if c.index == index)
        assert text == "same answer"
    finishes = [(c.index, c.finish_reason) for chunk in chunks for c in chunk.choices if c.finish_reason]
    assert finishes == [(0, "stop"), (1, "stop")]
    assert [chunk.HasField("usage") for chunk in chunks].count(True) == 1 and chunks[-1].HasField("usage")


async def _collect(p: GeminiProvider, into: list[pb.ChatCompletionChunk]) -> None:
    try:
        async for chunk in p.stream(p.prepare(request(), TARGET, stream=True), KEY):
            into.append(chunk)
    finally:
        await p.aclose()


async def test_a_stream_cut_before_its_finish_reason_is_broken(gemini: FakeGemini) -> None:
    gemini.script(Reply.broken(2, Reply.ok("a long answer that will not finish")))
    chunks: list[pb.ChatCompletionChunk] = []
    with pytest.raises(UpstreamError) as caught:
        await _collect(provider(base_url=gemini.url), chunks)
    assert chunks
    assert (caught.value.status, caught.value.type, caught.value.failure) == (
        502,
        "upstream_stream_broken",
        FailureClass.TRANSIENT,
    )


def sse(*events: dict[str, Any] | bytes) -> Handler:
    raw = b"".join(
        event if isinstance(event, bytes) else b"data: " + orjson.dumps(event) + b"\r\n\r\n"
        for event in events
    )

    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=raw, headers={"content-type": "text/event-stream"})

    return handler


def event(text: str, finish: str | None = None, **usage: int) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 4, **usage},
        "responseId": "r",
        "modelVersion": "m",
    }


async def test_a_finished_stream_ends_as_a_success_without_any_end_marker() -> None:
    chunks = await stream_from(
        provider(sse(event("Hi"), event(" there", "MAX_TOKENS", candidatesTokenCount=2)))
    )
    assert [c.choices[0].delta.text for c in chunks[:2]] == ["Hi", " there"]
    assert chunks[2].choices[0].finish_reason == "length"
    assert (chunks[3].usage.prompt_tokens, chunks[3].usage.completion_tokens) == (4, 2)
    assert len(chunks) == 4


async def test_a_stream_that_never_finishes_is_broken() -> None:
    with pytest.raises(UpstreamError) as caught:
        await stream_from(provider(sse(event("Hi"), event(" there"))))
    assert caught.value.type == "upstream_stream_broken" and not caught.value.from_upstream
    assert "finishReason" in caught.value.message


async def test_an_error_inside_the_stream_is_an_upstream_failure() -> None:
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    chunks: list[pb.ChatCompletionChunk] = []
    with pytest.raises(UpstreamError) as caught:
        await _collect(provider(sse(event("Hi"), error)), chunks)
    assert (caught.value.status, caught.value.failure, caught.value.message) == (
        503,
        FailureClass.TRANSIENT,
        "The model is overloaded.",
    )
    assert chunks


async def test_a_malformed_payload_is_skipped_and_a_run_of_them_fails() -> None:
    bad_usage = event("?", promptTokenCount="ten")  # type: ignore[arg-type]
    chunks = await stream_from(
        provider(sse(event("Hi"), b"data: {not json\r\n\r\n", bad_usage, event("!", "STOP")))
    )
    assert "".join(c.choices[0].delta.text for c in chunks if c.choices) == "Hi!"
    assert chunks[-1].usage.prompt_tokens == 4
    bad = b'data: {"candidates": [{"content": {"parts": "x"}}]}\r\n\r\n'
    with pytest.raises(GatewayError) as caught:
        await stream_from(provider(sse(event("Hi"), bad, bad, bad, event("!", "STOP"))))
    assert caught.value.type == "upstream_bad_response"


async def test_a_stream_error_response_is_mapped_like_unary() -> None:
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}
    with pytest.raises(UpstreamError) as caught:
        await stream_from(provider(google_error("RESOURCE_EXHAUSTED", 429, retry)))
    assert (caught.value.status, caught.value.failure, caught.value.retry_after_s) == (
        429,
        FailureClass.RATE_LIMIT,
        3.0,
    )


async def test_leaving_a_stream_closes_the_upstream_connection(gemini: FakeGemini) -> None:
    gemini.script(Reply.hang(30, Reply.ok("a slow answer that keeps going")))
    p = provider(base_url=gemini.url)
    chunks = p.stream(p.prepare(request(), TARGET, stream=True), KEY)
    first = await anext(chunks)
    assert first.choices[0].delta.role == "assistant"
    await chunks.aclose()  # type: ignore[attr-defined]
    assert await gemini.wait_for_disconnect_async(timeout=5)
    await p.aclose()


async def test_the_fake_rejects_what_a_wrong_translation_would_send(gemini: FakeGemini) -> None:
    """Guard for the suites above: the fake does check the body (a role other than user/model)."""
    p = provider(base_url=gemini.url)
    prepared = p.prepare(request(), TARGET, stream=False)
    bad = Prepared(prepared.target, prepared.body.replace(b'"user"', b'"human"'), False)
    with pytest.raises(UpstreamError) as caught:
        await p.send(bad, KEY)
    await p.aclose()
    assert (caught.value.status, caught.value.failure) == (400, FailureClass.CALLER)
