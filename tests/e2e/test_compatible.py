"""The OpenAI-compatible family end to end: the official ``openai`` SDK (``AzureOpenAI``) and the gRPC
stub call real Switchyard processes, which call the fake OpenAI-format upstream as DeepSeek,
Perplexity, Groq, xAI and a provider described by config alone.

Every call checks both ends: what the caller parsed, and what arrived at the fake.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import grpc
import openai
import pytest

from switchyard.v1 import chat_pb2 as pb
from switchyard.v1 import chat_pb2_grpc
from tests.fakes.upstream import FakeUpstream, Reply, Usage
from tests.support import Stack, base_config, free_port, start_stack

API_VERSION = "2024-10-21"
KEYS = {
    "SY_TEST_DEEPSEEK_KEY": "sk-deepseek-secret-0123456789",
    "SY_TEST_PPLX_KEY": "pplx-secret-0123456789",
    "SY_TEST_ACME_KEY": "acme-secret-0123456789",
    "SY_TEST_GROQ_KEY": "gsk-secret-0123456789",
    "SY_TEST_XAI_KEY": "xai-secret-0123456789",
}
RESULTS: dict[str, Any] = {
    "search_results": [{"title": "Milky Way", "url": "https://a.example/mw", "date": "2025-01-02"}],
    "citations": ["https://a.example/mw", "https://b.example/g"],
    "videos": [{"url": "https://v.example/1", "thumbnail_url": "https://v.example/1.jpg", "duration": 61.5}],
}


def compatible_config(upstream_url: str) -> dict[str, Any]:
    """The shared test config, plus the family: each provider at its own path on the fake."""
    config = base_config(upstream_url, free_port(), free_port())

    def provider(kind: str, path: str, env: str, **options: Any) -> dict[str, Any]:
        return {"kind": kind, "base_url": upstream_url + path, "keys": [{"value": f"${{{env}}}"}], **options}

    config["providers"] |= {
        "deepseek": provider("deepseek", "/deepseek", "SY_TEST_DEEPSEEK_KEY"),
        "perplexity": provider("perplexity", "/pplx", "SY_TEST_PPLX_KEY"),
        "groq": provider("groq", "/groq/openai/v1", "SY_TEST_GROQ_KEY"),
        "xai": provider("xai", "/xai/v1", "SY_TEST_XAI_KEY"),
        # A service Switchyard has no preset for: config alone.
        "acme": provider(
            "openai_compatible",
            "/acme/v1",
            "SY_TEST_ACME_KEY",
            auth_header="X-Api-Key",
            auth_format="{key}",
            renames={"max_completion_tokens": "max_new_tokens"},
            rejects=["logit_bias", "n!=1"],
        ),
    }
    config["deployments"]["reasoner"] = {"targets": [{"provider": "deepseek", "model": "deepseek-reasoner"}]}
    config["deployments"]["sonar"] = {"targets": [{"provider": "perplexity", "model": "sonar-grpc"}]}
    return config


@pytest.fixture(scope="module", params=["inprocess", "split"])
def compat(
    request: pytest.FixtureRequest, upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp(f"compatible-{request.param}")
    running = start_stack(request.param, compatible_config(upstream_server.url), workdir, KEYS)
    yield running
    running.stop()
    logs = running.logs()
    assert not [secret for secret in KEYS.values() if secret in logs]


@pytest.fixture
def sdk(compat: Stack) -> Iterator[openai.AzureOpenAI]:
    client = openai.AzureOpenAI(
        azure_endpoint=compat.base_url, api_key="any", api_version=API_VERSION, max_retries=0
    )
    yield client
    client.close()


def _extra(obj: Any) -> dict[str, Any]:
    return dict(obj.model_extra or {})


def _no_secret_in(*texts: str) -> None:
    for text in texts:
        assert not [secret for secret in KEYS.values() if secret in text]


def test_deepseek_reasoning_comes_back_as_reasoning(sdk: openai.AzureOpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply.ok("42", reasoning="6 times 7 is 42"), match="ds-unary")
    completion = sdk.chat.completions.create(
        model="deepseek/ds-unary", messages=[{"role": "user", "content": "6*7?"}], max_completion_tokens=64
    )
    message = completion.choices[0].message
    assert message.content == "42"
    assert _extra(message)["reasoning"] == "6 times 7 is 42" and "reasoning_content" not in _extra(message)
    (sent,) = upstream.requests
    assert sent.path == "/deepseek/chat/completions"
    assert sent.header("authorization") == f"Bearer {KEYS['SY_TEST_DEEPSEEK_KEY']}"
    assert sent.body["max_tokens"] == 64 and "max_completion_tokens" not in sent.body
    raw = _extra(completion)["extra_fields"]["raw_request"]
    assert raw["max_tokens"] == 64
    _no_secret_in(str(raw))


def test_deepseek_streamed_reasoning_arrives_as_reasoning_deltas(
    sdk: openai.AzureOpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(Reply.stream(["4", "2"], reasoning="six times seven"), match="ds-stream")
    stream = sdk.chat.completions.create(
        model="deepseek/ds-stream",
        messages=[{"role": "user", "content": "6*7?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(_extra(d).get("reasoning") or "" for d in deltas) == "six times seven"
    assert "".join(d.content or "" for d in deltas) == "42"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert upstream.requests[0].body["stream_options"] == {"include_usage": True}


def test_a_deepseek_tool_turn_sends_its_reasoning_back(
    sdk: openai.AzureOpenAI, upstream: FakeUpstream
) -> None:
    tools: list[Any] = [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    upstream.script(
        replace(Reply.tool_call("get_weather", {}), reasoning="I need the weather"),
        Reply.ok("Sunny."),
        match="ds-tools",
    )
    first = sdk.chat.completions.create(
        model="deepseek/ds-tools", messages=[{"role": "user", "content": "Weather?"}], tools=tools
    )
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assistant = first.choices[0].message.model_dump(exclude_none=True)  # its `reasoning` included
    second = sdk.chat.completions.create(
        model="deepseek/ds-tools",
        messages=[
            {"role": "user", "content": "Weather?"},
            assistant,  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
        tools=tools,
    )
    assert second.choices[0].message.content == "Sunny."
    turns = upstream.requests[1].body["messages"]
    assert turns[1]["reasoning_content"] == "I need the weather" and "reasoning" not in turns[1]
    assert turns[1]["tool_calls"][0]["id"] == call.id and turns[2]["tool_call_id"] == call.id


def test_perplexity_results_fill_the_top_level_fields(
    sdk: openai.AzureOpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(Reply.ok("200-400 billion [1]", extra=RESULTS), match="sonar-unary")
    completion = sdk.chat.completions.create(
        model="perplexity/sonar-unary", messages=[{"role": "user", "content": "stars in the Milky Way?"}]
    )
    extra = _extra(completion)
    assert extra["citations"] == RESULTS["citations"]
    assert extra["search_results"] == [RESULTS["search_results"][0]]
    assert extra["videos"] == RESULTS["videos"]
    assert upstream.requests[0].path == "/pplx/chat/completions"


@pytest.mark.parametrize("include_usage", [False, True])
def test_perplexitys_stream_ends_with_a_chunk_carrying_the_results(
    sdk: openai.AzureOpenAI, upstream: FakeUpstream, include_usage: bool
) -> None:
    # As Perplexity does: usage comes unasked, on the last chunk, with the results.
    upstream.script(Reply.stream(["Two ", "hundred"], extra=RESULTS, usage_always=True), match="sonar-stream")
    options: Any = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(
        sdk.chat.completions.create(
            model="perplexity/sonar-stream",
            messages=[{"role": "user", "content": "stars?"}],
            stream=True,
            **options,
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Two hundred"
    last = _extra(chunks[-1])
    assert last["citations"] == RESULTS["citations"] and last["videos"] == RESULTS["videos"]
    assert last["search_results"][0]["url"] == "https://a.example/mw"
    assert (chunks[-1].usage is not None) is include_usage
    assert "stream_options" not in upstream.requests[0].body  # Perplexity is not sent it


def test_a_config_only_provider_uses_its_own_auth_header_and_renames(
    sdk: openai.AzureOpenAI, upstream: FakeUpstream
) -> None:
    completion = sdk.chat.completions.create(
        model="acme/acme-large", messages=[{"role": "user", "content": "hello"}], max_completion_tokens=10
    )
    assert completion.choices[0].message.content == "echo: hello"
    (sent,) = upstream.requests
    assert sent.path == "/acme/v1/chat/completions"
    assert sent.header("x-api-key") == KEYS["SY_TEST_ACME_KEY"] and sent.header("authorization") is None
    assert sent.body["max_new_tokens"] == 10 and sent.body["model"] == "acme-large"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model="acme/acme-large", messages=[{"role": "user", "content": "hi"}], n=2
        )
    assert caught.value.body["param"] == "n"  # type: ignore[index]
    assert upstream.request_count == 1


def test_a_field_the_preset_refuses_is_a_400_naming_it(
    sdk: openai.AzureOpenAI, upstream: FakeUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model="groq/llama-3.3-70b",
            messages=[{"role": "user", "content": "hi"}],
            logit_bias={"50256": -100},
        )
    body: Any = caught.value.body
    assert body["param"] == "logit_bias" and "logit_bias" in body["message"]
    assert upstream.request_count == 0  # refused here: never silently dropped upstream
    _no_secret_in(str(caught.value.response.text))


def test_xai_streams_with_usage_and_cost(sdk: openai.AzureOpenAI, upstream: FakeUpstream) -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=200, cached_tokens=400)
    upstream.script(Reply.stream(["think", "ing"], usage=usage, reasoning="hmm"), match="grok-3-mini")
    chunks = list(
        sdk.chat.completions.create(
            model="xai/grok-3-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(_extra(c.choices[0].delta).get("reasoning") or "" for c in chunks if c.choices) == "hmm"
    cost = _extra(chunks[-1].usage)["cost"]
    # grok-3-mini list prices per million: input 0.30, cached input 0.075, output 0.50.
    assert cost["total_cost"] == pytest.approx((600 * 0.30 + 400 * 0.075 + 200 * 0.50) / 1e6)
    assert upstream.requests[0].header("authorization") == f"Bearer {KEYS['SY_TEST_XAI_KEY']}"


def test_a_grpc_caller_gets_reasoning_and_results_too(compat: Stack, upstream: FakeUpstream) -> None:
    with grpc.insecure_channel(compat.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatCompletionsStub(channel)
        upstream.script(Reply.ok("42", reasoning="six sevens"), match="deepseek-reasoner")
        response = stub.Create(
            pb.ChatCompletionRequest(
                deployment_id="reasoner", messages=[pb.ChatMessage(role="user", text="6*7")]
            ),
            timeout=10,
        )
        assert (response.choices[0].message.text, response.choices[0].message.reasoning) == (
            "42",
            "six sevens",
        )
        upstream.script(Reply.stream(["a", "b"], extra=RESULTS, usage_always=True), match="sonar-grpc")
        chunks = list(
            stub.CreateStream(
                pb.ChatCompletionRequest(
                    deployment_id="sonar", messages=[pb.ChatMessage(role="user", text="q")]
                ),
                timeout=10,
            )
        )
        assert list(chunks[-1].citations) == RESULTS["citations"]
        assert chunks[-1].search_results[0].title == "Milky Way"
        with pytest.raises(grpc.RpcError) as caught:
            stub.Create(
                pb.ChatCompletionRequest(
                    deployment_id="reasoner",
                    messages=[pb.ChatMessage(role="user", text="hi")],
                    response_format=pb.ResponseFormat(type="json_schema"),
                ),
                timeout=10,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        _no_secret_in(str(caught.value.details()))
