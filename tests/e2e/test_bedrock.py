"""AWS Bedrock behind the Azure route, end to end: the official ``openai`` SDK (``AzureOpenAI``) and
the gRPC stub call real Switchyard processes, which sign their calls to the fake Bedrock.

Every call checks both ends: what the caller got, and what arrived at the fake (which recomputes
each SigV4 signature and refuses a wrong one). The processes log at debug level, the level at
which a careless signer would log its canonical request, session token and all.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import openai
import orjson
import pytest

from switchyard.v1 import chat_pb2 as pb
from switchyard.v1 import chat_pb2_grpc
from tests.fakes.bedrock import ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN, FakeBedrock, Reply, Usage
from tests.support import Stack, base_config, free_port, start_stack

API_VERSION = "2024-10-21"
REGION = "us-west-2"
NOVA = "amazon.nova-pro-v1:0"
CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
PIXEL = base64.b64encode(
    bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489")
).decode()
AWS_ENV = {
    "SY_TEST_AWS_KEY_ID": ACCESS_KEY_ID,
    "SY_TEST_AWS_SECRET": SECRET_ACCESS_KEY,
    "SY_TEST_AWS_TOKEN": SESSION_TOKEN,
    "SY_TEST_AWS_WRONG_SECRET": "wrongSecretAccessKey/0123456789abcdefXYZ",
}
AWS_SECRETS = (SECRET_ACCESS_KEY, SESSION_TOKEN, AWS_ENV["SY_TEST_AWS_WRONG_SECRET"])
TOOLS: list[Any] = [
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


@pytest.fixture(scope="module")
def bedrock_server() -> Iterator[FakeBedrock]:
    with FakeBedrock() as fake:
        yield fake


@pytest.fixture
def bedrock(bedrock_server: FakeBedrock) -> FakeBedrock:
    """The module's fake Bedrock, cleared for this test, taking the stack's temporary key."""
    bedrock_server.reset()
    bedrock_server.allow(ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN)
    return bedrock_server


def bedrock_config(upstream_url: str, bedrock_url: str) -> dict[str, Any]:
    config = base_config(upstream_url, free_port(), free_port())
    config["logging"]["level"] = "debug"
    key = {
        "value": "${SY_TEST_AWS_KEY_ID}",
        "secret_access_key": "${SY_TEST_AWS_SECRET}",
        "session_token": "${SY_TEST_AWS_TOKEN}",
    }
    config["providers"]["bedrock"] = {
        "kind": "bedrock",
        "base_url": bedrock_url,
        "region": REGION,
        "keys": [key],
    }
    wrong = {**key, "secret_access_key": "${SY_TEST_AWS_WRONG_SECRET}"}
    config["providers"]["bedrock-wrong"] = {
        "kind": "bedrock",
        "base_url": bedrock_url,
        "region": REGION,
        "keys": [wrong],
    }
    config["deployments"]["nova"] = {"targets": [{"provider": "bedrock", "model": NOVA}]}
    config["deployments"]["claude-bedrock"] = {"targets": [{"provider": "bedrock", "model": CLAUDE}]}
    config["deployments"]["wrong-key"] = {"targets": [{"provider": "bedrock-wrong", "model": NOVA}]}
    return config


@pytest.fixture(scope="module", params=["inprocess", "split"])
def bedrock_stack(
    request: pytest.FixtureRequest,
    upstream_server: Any,
    bedrock_server: FakeBedrock,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    config = bedrock_config(upstream_server.url, bedrock_server.url)
    workdir: Path = tmp_path_factory.mktemp(f"bedrock-{request.param}")
    running = start_stack(request.param, config, workdir, AWS_ENV)
    yield running
    running.stop()


@pytest.fixture
def sdk(bedrock_stack: Stack) -> Iterator[openai.AzureOpenAI]:
    client = openai.AzureOpenAI(
        azure_endpoint=bedrock_stack.base_url, api_key="any", api_version=API_VERSION, max_retries=0
    )
    yield client
    client.close()


def assert_signed(bedrock: FakeBedrock) -> None:
    """Every request that reached the fake carried a signature it verified, scoped as configured."""
    assert bedrock.requests and len(bedrock.signatures) == len(bedrock.requests)
    for signed in bedrock.signatures:
        assert (signed.access_key_id, signed.region, signed.service) == (ACCESS_KEY_ID, REGION, "bedrock")
        assert signed.session_token == SESSION_TOKEN


def test_unary_through_the_azure_route(sdk: openai.AzureOpenAI, bedrock: FakeBedrock) -> None:
    bedrock.script(Reply.ok("Bonjour!", usage=Usage(1200, 300)))
    completion = sdk.chat.completions.create(
        model="nova",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": "Hello"},
        ],
        temperature=0.5,
        max_tokens=64,
        stop=["END"],
        extra_body={"top_k": 20},
    )
    assert completion.choices[0].message.content == "Bonjour!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (1200, 300)
    # amazon.nova-pro per million: input 0.80, output 3.20.
    cost = (completion.usage.model_extra or {})["cost"]
    assert cost["total_cost"] == pytest.approx((1200 * 0.8 + 300 * 3.2) / 1e6)
    (sent,) = bedrock.requests
    assert FakeBedrock.model_id(sent) == NOVA and sent.path.endswith("/converse")
    assert sent.body["system"] == [{"text": "Be brief."}, {"text": "Answer in French."}]
    assert sent.body["messages"] == [{"role": "user", "content": [{"text": "Hello"}]}]
    assert sent.body["inferenceConfig"] == {"maxTokens": 64, "temperature": 0.5, "stopSequences": ["END"]}
    assert sent.body["additionalModelRequestFields"] == {"top_k": 20}
    assert_signed(bedrock)


def test_a_model_id_named_directly(sdk: openai.AzureOpenAI, bedrock: FakeBedrock) -> None:
    completion = sdk.chat.completions.create(
        model="bedrock/amazon.nova-lite-v1:0", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "echo: hi"
    assert (completion.model_extra or {})["extra_fields"]["provider"] == "bedrock"
    assert [FakeBedrock.model_id(r) for r in bedrock.requests] == ["amazon.nova-lite-v1:0"]
    assert_signed(bedrock)


def test_streaming_with_usage(sdk: openai.AzureOpenAI, bedrock: FakeBedrock) -> None:
    bedrock.script(Reply.ok("one two three four", usage=Usage(9, 4, cache_read_input_tokens=100)))
    stream = sdk.chat.completions.create(
        model="claude-bedrock",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.total_tokens) == (109, 113)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 100
    (sent,) = bedrock.requests
    assert FakeBedrock.model_id(sent) == CLAUDE and sent.path.endswith("/converse-stream")
    assert_signed(bedrock)


def test_a_multi_turn_tool_conversation(sdk: openai.AzureOpenAI, bedrock: FakeBedrock) -> None:
    bedrock.script(Reply.tool_use("get_weather", {"city": "Paris"}), Reply.ok("It is sunny in Paris."))
    first = sdk.chat.completions.create(
        model="claude-bedrock",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=TOOLS,
        tool_choice="required",
    )
    call = (first.choices[0].message.tool_calls or [])[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, orjson.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    sent = bedrock.requests[0].body
    assert sent["toolConfig"]["toolChoice"] == {"any": {}}
    assert sent["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"] == ["city"]
    second = sdk.chat.completions.create(
        model="claude-bedrock",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24C"},
        ],
        tools=TOOLS,
    )
    assert second.choices[0].message.content == "It is sunny in Paris."
    turns = bedrock.requests[1].body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == [
        {"toolUse": {"toolUseId": call.id, "name": "get_weather", "input": {"city": "Paris"}}}
    ]
    assert turns[2]["content"] == [
        {"toolResult": {"toolUseId": call.id, "content": [{"text": "sunny, 24C"}]}}
    ]
    assert_signed(bedrock)


def test_streamed_tool_calls(sdk: openai.AzureOpenAI, bedrock: FakeBedrock) -> None:
    bedrock.script(Reply.tool_use("get_weather", {"city": "Lisbon", "days": 3}))
    chunks = list(
        sdk.chat.completions.create(
            model="nova", messages=[{"role": "user", "content": "Lisbon?"}], tools=TOOLS, stream=True
        )
    )
    deltas = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert [d.function.name for d in deltas if d.function and d.function.name] == ["get_weather"]
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert orjson.loads(arguments) == {"city": "Lisbon", "days": 3}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"
    ]


def test_images_go_as_bytes_and_a_web_url_is_a_400_naming_it(
    sdk: openai.AzureOpenAI, bedrock: FakeBedrock
) -> None:
    def ask(url: str) -> Any:
        return sdk.chat.completions.create(
            model="nova",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                }
            ],
        )

    ask(f"data:image/png;base64,{PIXEL}")
    blocks = bedrock.requests[0].body["messages"][0]["content"]
    assert blocks[1] == {"image": {"format": "png", "source": {"bytes": PIXEL}}}
    with pytest.raises(openai.BadRequestError) as caught:
        ask("https://example.test/cat.jpg")
    assert caught.value.body["param"] == "messages[0].content[1].image_url.url"  # type: ignore[index]
    assert bedrock.request_count == 1


def test_a_field_converse_cannot_honour_is_a_400_naming_it(
    sdk: openai.AzureOpenAI, bedrock: FakeBedrock
) -> None:
    for fields, param in (({"n": 2}, "n"), ({"seed": 7}, "seed"), ({"logprobs": True}, "logprobs")):
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.chat.completions.create(model="nova", messages=[{"role": "user", "content": "hi"}], **fields)
        assert caught.value.body["param"] == param  # type: ignore[index]
    assert bedrock.request_count == 0


def test_throttling_is_retried_then_answered(sdk: openai.AzureOpenAI, bedrock: FakeBedrock) -> None:
    bedrock.script(Reply.error("ThrottlingException", "Too many tokens, please wait"), Reply.ok("at last"))
    completion = sdk.chat.completions.create(model="nova", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "at last"
    attempts = (completion.model_extra or {})["extra_fields"]["attempts"]
    assert [(a["status_code"], a["message"]) for a in attempts] == [(429, "Too many tokens, please wait")]
    assert bedrock.request_count == 2
    assert_signed(bedrock)


def test_a_validation_error_reaches_the_caller_as_a_400(
    sdk: openai.AzureOpenAI, bedrock: FakeBedrock
) -> None:
    bedrock.script(Reply.error("ValidationException", "The model returned the following errors: bad top_k"))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="nova", messages=[{"role": "user", "content": "hi"}])
    assert "bad top_k" in caught.value.message
    assert bedrock.request_count == 1  # a caller fault is not retried


def test_a_grpc_caller_reaches_bedrock_too(bedrock_stack: Stack, bedrock: FakeBedrock) -> None:
    with grpc.insecure_channel(bedrock_stack.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatCompletionsStub(channel)
        request = pb.ChatCompletionRequest(
            deployment_id="nova", messages=[pb.ChatMessage(role="user", text="via grpc")]
        )
        response = stub.Create(request, timeout=10)
        assert response.choices[0].message.text == "echo: via grpc"
        assert response.extra_fields.provider == "bedrock"
        chunks = list(stub.CreateStream(request, timeout=10))
        assert "".join(c.choices[0].delta.text for c in chunks if c.choices) == "echo: via grpc"
        bedrock.script(Reply.error("ValidationException", "messages: too long"))
        with pytest.raises(grpc.RpcError) as caught:
            stub.Create(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [FakeBedrock.model_id(r) for r in bedrock.requests] == [NOVA] * 3
    assert_signed(bedrock)


def test_no_aws_secret_appears_in_errors_logs_or_raw_request(
    bedrock_stack: Stack, sdk: openai.AzureOpenAI, bedrock: FakeBedrock
) -> None:
    answer = sdk.chat.completions.with_raw_response.create(
        model="nova", messages=[{"role": "user", "content": "hi"}]
    )
    raw = orjson.loads(answer.text)["extra_fields"]
    assert raw["raw_request"]["messages"] and raw["raw_response"]["output"]
    with httpx.Client(base_url=bedrock_stack.base_url, timeout=30) as http:
        refused = http.post(
            f"/openai/deployments/wrong-key/chat/completions?api-version={API_VERSION}",
            json={"messages": [{"role": "user", "content": "hi"}]},
        )
        bedrock.script(Reply.exception("ThrottlingException", after=1))
        broken = http.post(
            f"/openai/deployments/nova/chat/completions?api-version={API_VERSION}",
            json={"messages": [{"role": "user", "content": "hi"}], "stream": True},
        )
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "InvalidSignatureException"  # AWS's own word for it
    assert broken.status_code == 200
    logs = bedrock_stack.logs()
    assert " DEBUG " in logs  # the processes did log, at debug level
    for secret in AWS_SECRETS:
        for where in (answer.text, refused.text, broken.text, logs):
            assert secret not in where
