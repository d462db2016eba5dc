"""Gemini (AI Studio) and Vertex AI (Gemini and Claude) behind the Azure route, end to end: the official
``openai`` SDK (``AzureOpenAI``) and the gRPC stub call real Switchyard processes, which call the fake
Gemini / Vertex AI upstream and its OAuth token endpoint.

Every call checks both ends: what the SDK parsed, and what arrived at the fake. The stack is this
module's own (the shared test config plus the Google providers), run as one process and as two.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import openai
import pytest
import yaml

from switchyard.v1 import chat_pb2 as pb
from switchyard.v1 import chat_pb2_grpc
from tests.fakes import anthropic as ant
from tests.fakes.gemini import THOUGHT_SIGNATURE, FakeGemini, FunctionCall, Reply, Usage
from tests.fakes.upstream import FakeUpstream
from tests.support import REPO_ROOT, Stack, base_config, free_port, secret_env, start_stack

API_VERSION = "2024-10-21"
GEMINI_KEY = "AIza-e2e-secret-gemini-key-0123456789"
PROJECT, LOCATION = "e2e-project", "us-east5"
FLASH = "gemini-2.5-flash"
CLAUDE = "claude-sonnet-4-5@20250929"
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def account(gemini_server: FakeGemini) -> dict[str, Any]:
    return gemini_server.service_account()


@pytest.fixture(scope="module", params=["inprocess", "split"])
def google_stack(
    request: pytest.FixtureRequest,
    upstream_server: FakeUpstream,
    gemini_server: FakeGemini,
    account: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp(f"google-{request.param}")
    account_file = workdir / "service-account.json"
    account_file.write_text(json.dumps(account))
    config = base_config(upstream_server.url, free_port(), free_port())
    config["providers"].update(
        {
            "gemini": {"kind": "gemini", "base_url": gemini_server.url, "keys": ["${SY_TEST_GEMINI_KEY}"]},
            # The service account's JSON from the environment...
            "vertex": {
                "kind": "vertex",
                "base_url": gemini_server.url,
                "project": PROJECT,
                "location": LOCATION,
                "keys": [{"value": "${SY_TEST_VERTEX_ACCOUNT}"}],
            },
            # ... or from its file.
            "vertex-file": {
                "kind": "vertex",
                "base_url": gemini_server.url,
                "project": PROJECT,
                "location": LOCATION,
                "keys": [{"value": str(account_file)}],
            },
        }
    )
    config["deployments"].update(
        {
            "flash": {"targets": [{"provider": "gemini", "model": FLASH}]},
            "guarded": {
                "targets": [{"provider": "gemini", "model": FLASH}],
                "fallbacks": ["azure/never-called"],
            },
            "vertex-claude": {"targets": [{"provider": "vertex", "model": CLAUDE}]},
        }
    )
    env = {"SY_TEST_GEMINI_KEY": GEMINI_KEY, "SY_TEST_VERTEX_ACCOUNT": json.dumps(account)}
    stack = start_stack(request.param, config, workdir, env)
    yield stack
    stack.stop()


@pytest.fixture
def fake(gemini: FakeGemini) -> FakeGemini:
    gemini.api_keys = {GEMINI_KEY}  # a wrong key would be refused, as by Google
    return gemini


@pytest.fixture
def sdk(google_stack: Stack) -> Iterator[openai.AzureOpenAI]:
    client = openai.AzureOpenAI(
        azure_endpoint=google_stack.base_url,
        api_key="any",
        api_version=API_VERSION,
        max_retries=0,
        timeout=20,
    )
    yield client
    client.close()


def test_unary_through_the_azure_route(sdk: openai.AzureOpenAI, fake: FakeGemini) -> None:
    fake.script(Reply.ok("Bonjour!", usage=Usage(prompt=12, candidates=3)))
    completion = sdk.chat.completions.create(
        model=f"gemini/{FLASH}",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
        ],
        temperature=0.5,
        stop=["END"],
        max_completion_tokens=300,
        seed=7,
    )
    assert completion.choices[0].message.content == "Bonjour!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 3)
    assert (completion.model_extra or {})["extra_fields"]["provider"] == "gemini"
    (sent,) = fake.requests
    assert sent.path == f"/v1beta/models/{FLASH}:generateContent"
    assert sent.header("x-goog-api-key") == GEMINI_KEY
    assert sent.body == {
        "contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"temperature": 0.5, "seed": 7, "maxOutputTokens": 300, "stopSequences": ["END"]},
    }


def test_streaming_with_usage_and_cost(sdk: openai.AzureOpenAI, fake: FakeGemini) -> None:
    fake.script(
        Reply.ok("one two three four", thought="counting", usage=Usage(1000, 40, cached=600, thoughts=60))
    )
    stream = sdk.chat.completions.create(
        model="flash",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
        reasoning_effort="low",
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning") or "" for c in chunks if c.choices
    )
    assert (text, reasoning) == ("one two three four", "counting")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        1000,
        100,
        1100,
    )
    assert (
        usage.completion_tokens_details is not None and usage.completion_tokens_details.reasoning_tokens == 60
    )
    # gemini-2.5-flash list prices per million: input 0.30, cached 0.03, output (thinking too) 2.50.
    expected = (400 * 0.30 + 600 * 0.03 + 40 * 2.50 + 60 * 2.50) / 1e6
    assert (usage.model_extra or {})["cost"]["total_cost"] == pytest.approx(expected)
    (sent,) = fake.requests
    assert sent.path.endswith(":streamGenerateContent") and sent.query == {"alt": "sse"}
    assert sent.body["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 1024,
        "includeThoughts": True,
    }


def test_a_multi_turn_tool_conversation_keeps_the_thought_signature(
    sdk: openai.AzureOpenAI, fake: FakeGemini
) -> None:
    call = FunctionCall("get_weather", {"city": "Paris"}, thought_signature=THOUGHT_SIGNATURE)
    fake.script(Reply.ok(calls=[call]), Reply.ok("It is sunny in Paris."))
    first = sdk.chat.completions.create(
        model="flash",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert first.choices[0].finish_reason == "tool_calls"
    (tool_call,) = first.choices[0].message.tool_calls or []
    assert (tool_call.function.name, json.loads(tool_call.function.arguments)) == (
        "get_weather",
        {"city": "Paris"},
    )  # type: ignore[union-attr]
    assert fake.requests[0].body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    second = sdk.chat.completions.create(
        model="flash",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": tool_call.id, "content": "sunny, 24C"},
        ],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert second.choices[0].message.content == "It is sunny in Paris."
    contents = fake.requests[1].body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"] == [
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": tool_call.id},
            "thoughtSignature": THOUGHT_SIGNATURE,
        }
    ]
    assert contents[2]["parts"] == [
        {
            "functionResponse": {
                "id": tool_call.id,
                "name": "get_weather",
                "response": {"output": "sunny, 24C"},
            }
        }
    ]


def test_an_image_and_structured_output(sdk: openai.AzureOpenAI, fake: FakeGemini) -> None:
    fake.script(Reply.ok('{"colour": "red"}'))
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}}
    completion = sdk.chat.completions.create(
        model="flash",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Colour?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                ],
            }
        ],
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert json.loads(completion.choices[0].message.content or "") == {"colour": "red"}
    sent = fake.requests[0].body
    assert sent["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": PIXEL}}
    assert sent["generationConfig"] == {"responseMimeType": "application/json", "responseSchema": schema}


def test_a_blocked_prompt_is_a_400_content_filter_without_fallback(
    sdk: openai.AzureOpenAI, fake: FakeGemini, upstream: FakeUpstream
) -> None:
    fake.script(Reply.blocked("SAFETY"))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="guarded", messages=[{"role": "user", "content": "something bad"}])
    error = caught.value.body
    assert isinstance(error, dict) and error["type"] == "content_filter" and "SAFETY" in error["message"]
    assert len(fake.requests) == 1
    assert upstream.request_count == 0  # the fallback was not tried


def test_a_value_gemini_cannot_honour_is_a_400_naming_the_field(
    sdk: openai.AzureOpenAI, fake: FakeGemini
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model="flash", messages=[{"role": "user", "content": "hi"}], logit_bias={"50256": -100}
        )
    assert caught.value.body["param"] == "logit_bias"  # type: ignore[index]
    assert not fake.requests


def test_vertex_gemini_and_claude_with_a_service_account(
    sdk: openai.AzureOpenAI, fake: FakeGemini, account: dict[str, Any]
) -> None:
    fake.script(Reply.ok("from vertex gemini"), ant.Reply.ok("from vertex claude"))
    gemini = sdk.chat.completions.create(
        model="vertex/gemini-2.5-pro", messages=[{"role": "user", "content": "a"}]
    )
    claude = sdk.chat.completions.create(model="vertex-claude", messages=[{"role": "user", "content": "b"}])
    streamed = sdk.chat.completions.create(
        model="vertex-claude", messages=[{"role": "user", "content": "stream it"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    from_file = sdk.chat.completions.create(
        model="vertex-file/gemini-2.5-pro", messages=[{"role": "user", "content": "c"}]
    )
    assert gemini.choices[0].message.content == "from vertex gemini"
    assert claude.choices[0].message.content == "from vertex claude"
    assert text == "echo: stream it"
    assert from_file.choices[0].message.content == "echo: c"
    base = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers"
    assert [r.path for r in fake.requests] == [
        f"{base}/google/models/gemini-2.5-pro:generateContent",
        f"{base}/anthropic/models/{CLAUDE}:rawPredict",
        f"{base}/anthropic/models/{CLAUDE}:streamRawPredict",
        f"{base}/google/models/gemini-2.5-pro:generateContent",
    ]
    tokens = {(r.header("authorization") or "").removeprefix("Bearer ") for r in fake.requests}
    assert tokens <= fake.issued_tokens
    # One token per provider for the stack's life: at most one fetch each since the fake was reset.
    assert len(fake.token_requests) <= 2 and len(tokens) <= 2
    assert fake.requests[1].body["anthropic_version"] == "vertex-2023-10-16"
    assert account["client_email"]


def test_a_grpc_caller_reaches_gemini_too(google_stack: Stack, fake: FakeGemini) -> None:
    with grpc.insecure_channel(google_stack.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatCompletionsStub(channel)
        request = pb.ChatCompletionRequest(
            deployment_id="flash", messages=[pb.ChatMessage(role="user", text="via grpc")]
        )
        response = stub.Create(request, timeout=10)
        assert response.choices[0].message.text == "echo: via grpc"
        chunks = list(stub.CreateStream(request, timeout=10))
        assert "".join(c.choices[0].delta.text for c in chunks if c.choices) == "echo: via grpc"
        fake.script(Reply.error("RESOURCE_EXHAUSTED", "Quota exceeded.", retry_delay="30s"))
        with pytest.raises(grpc.RpcError) as caught:
            stub.Create(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert [r.path.rsplit(":", 1)[1] for r in fake.requests] == [
        "generateContent",
        "streamGenerateContent",
        "generateContent",
    ]
    assert all(
        r.body["contents"] == [{"role": "user", "parts": [{"text": "via grpc"}]}] for r in fake.requests
    )


def test_no_secret_in_answers_errors_or_logs(
    google_stack: Stack, sdk: openai.AzureOpenAI, fake: FakeGemini, account: dict[str, Any]
) -> None:
    shown: list[str] = []
    for model in ("flash", "vertex/gemini-2.5-pro", "vertex-claude"):
        response = sdk.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "x"}]
        )
        extra = response.parse().model_extra or {}
        assert extra["extra_fields"]["raw_request"]  # logging.raw_request is on: the bodies are there
        shown.append(response.text)
    fake.script(
        Reply.error("PERMISSION_DENIED", "Permission denied."),
        Reply.error("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    )
    for model in ("flash", "vertex/gemini-2.5-pro"):
        reply = httpx.post(
            f"{google_stack.base_url}/openai/deployments/{model}/chat/completions",
            params={"api-version": API_VERSION},
            json={"messages": [{"role": "user", "content": "x"}]},
            timeout=20,
        )
        assert reply.status_code in (401, 403)
        shown.append(reply.text)
    shown.append(google_stack.logs())
    text = "\n".join(shown)
    secrets = [GEMINI_KEY, account["private_key"][40:100], account["private_key_id"], *fake.issued_tokens]
    assert fake.issued_tokens  # the tokens the service obtained are among the secrets checked
    for secret in secrets:
        assert secret not in text
    assert Path(google_stack.config_path).exists()


def test_a_bad_service_account_stops_the_start_naming_its_key(
    upstream_server: FakeUpstream, account: dict[str, Any], tmp_path: Path
) -> None:
    broken = {
        **account,
        "private_key": "-----BEGIN PRIVATE KEY-----\nbm90LWEta2V5\n-----END PRIVATE KEY-----\n",
    }
    config = base_config(upstream_server.url, free_port(), free_port())
    config["providers"]["vertex"] = {
        "kind": "vertex",
        "project": PROJECT,
        "location": LOCATION,
        "keys": [{"value": "${SY_TEST_VERTEX_ACCOUNT}"}],
    }
    config["store"] = {"url": f"sqlite:///{tmp_path / 'switchyard.db'}"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "cli", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        env={**secret_env(), "SY_TEST_VERTEX_ACCOUNT": json.dumps(broken)},
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert done.returncode == 2
    assert "providers.vertex.keys[0].value" in done.stderr
    assert "bm90LWEta2V5" not in done.stderr + done.stdout
