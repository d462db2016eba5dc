"""The OpenAI-compatible family over httpx.MockTransport: each preset's URL and auth, the fields it
renames or refuses, where its reasoning arrives, Perplexity's search results, a provider made of
config alone, and the config errors. The scenarios every provider shares are in
``tests/test_provider_contract.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from service.errors import FailureClass, GatewayError
from service.providers import Provider, ProviderContext, build_provider, check
from service.routing import Target
from switchyard import codec
from switchyard.config import ConfigError, KeyConfig, ProviderConfig, Secret, parse_config
from switchyard.v1 import chat_pb2 as pb
from tests.fakes.upstream import FakeUpstream, Reply

SECRET = "sk-compat-secret-0123456789"
KEY = KeyConfig(secret=Secret(SECRET))

# Where each preset sends a chat completion when the config gives no base_url.
PRESET_URLS = {
    "mistral": "https://api.mistral.ai/v1/chat/completions",
    "groq": "https://api.groq.com/openai/v1/chat/completions",
    "deepseek": "https://api.deepseek.com/chat/completions",
    "together": "https://api.together.xyz/v1/chat/completions",
    "fireworks": "https://api.fireworks.ai/inference/v1/chat/completions",
    "openrouter": "https://openrouter.ai/api/v1/chat/completions",
    "perplexity": "https://api.perplexity.ai/chat/completions",
    "xai": "https://api.x.ai/v1/chat/completions",
    "ollama": "http://localhost:11434/v1/chat/completions",
    "vllm": "http://localhost:8000/v1/chat/completions",
}


@dataclass
class Upstream:
    """Records each request and answers with ``reply`` (a JSON body, or SSE events when a list)."""

    reply: Any = None
    status: int = 200
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if isinstance(self.reply, list):
            raw = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in self.reply) + b"data: [DONE]\n\n"
            return httpx.Response(self.status, content=raw, headers={"content-type": "text/event-stream"})
        return httpx.Response(self.status, json=self.reply if self.reply is not None else _answer("ok"))

    @property
    def body(self) -> dict[str, Any]:
        (request,) = self.requests
        parsed: dict[str, Any] = orjson.loads(request.content)
        return parsed


def _answer(text: str, **message: Any) -> dict[str, Any]:
    return {
        "id": "c-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, **message},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **top: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {
        "id": "c-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": choices,
        **top,
    }


USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def _provider(
    kind: str, upstream: Upstream, base_url: str = "", *, keep_raw: bool = False, **options: Any
) -> Provider:
    config = ProviderConfig(name=f"my-{kind}", kind=kind, base_url=base_url, keys=(KEY,), options=options)
    context = ProviderContext(keep_raw=keep_raw, transport=httpx.MockTransport(upstream))
    return build_provider(config, context)


def _body(**fields: Any) -> pb.ChatCompletionRequest:
    """A request from the caller's JSON body (so any field, known to the proto or not, can be set)."""
    return codec.request_from_dict({"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields})


async def _send(provider: Provider, request: pb.ChatCompletionRequest) -> pb.ChatCompletionResponse:
    prepared = provider.prepare(request, Target(provider.name, "m"), stream=False)
    return await provider.send(prepared, KEY)


async def _stream(provider: Provider, request: pb.ChatCompletionRequest) -> list[pb.ChatCompletionChunk]:
    prepared = provider.prepare(request, Target(provider.name, "m"), stream=True)
    return [c async for c in provider.stream(prepared, KEY)]


# ---------------------------------------------------------------- URL and auth


@pytest.mark.parametrize(("kind", "url"), sorted(PRESET_URLS.items()))
async def test_each_preset_has_its_url_and_sends_the_key_as_a_bearer_token(kind: str, url: str) -> None:
    upstream = Upstream()
    response = await _send(_provider(kind, upstream), _body())
    assert response.choices[0].message.text == "ok"
    (request,) = upstream.requests
    assert str(request.url) == url
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert upstream.body["model"] == "m"


async def test_a_config_only_provider_puts_the_key_where_its_config_says() -> None:
    upstream = Upstream()
    provider = _provider(
        "openai_compatible",
        upstream,
        "https://llm.example/api",
        auth_header="X-Api-Key",
        auth_format="{key}",
        chat_path="/v2/chat",
        headers={"X-Title": "switchyard"},
    )
    await _send(provider, _body())
    (request,) = upstream.requests
    assert str(request.url) == "https://llm.example/api/v2/chat"
    assert request.headers["x-api-key"] == SECRET
    assert "authorization" not in request.headers
    assert request.headers["x-title"] == "switchyard"


async def test_an_empty_auth_header_sends_no_key_at_all() -> None:
    upstream = Upstream()
    await _send(_provider("ollama", upstream, auth_header=""), _body())
    (request,) = upstream.requests
    assert SECRET not in str(request.headers) and "authorization" not in request.headers


# ---------------------------------------------------------------- renames


async def test_mistral_takes_max_tokens_and_random_seed_under_its_own_names() -> None:
    upstream = Upstream()
    await _send(_provider("mistral", upstream), _body(max_completion_tokens=50, seed=7, temperature=0.2))
    body = upstream.body
    assert (body["max_tokens"], body["random_seed"], body["temperature"]) == (50, 7, 0.2)
    assert "max_completion_tokens" not in body and "seed" not in body


async def test_a_rename_whose_target_is_also_set_is_a_400_naming_the_field() -> None:
    upstream = Upstream()
    with pytest.raises(GatewayError) as caught:
        await _send(_provider("deepseek", upstream), _body(max_completion_tokens=50, max_tokens=60))
    assert (caught.value.status, caught.value.param) == (400, "max_completion_tokens")
    assert caught.value.failure is FailureClass.CALLER
    assert not upstream.requests


async def test_a_config_only_provider_renames_what_its_config_says() -> None:
    upstream = Upstream()
    provider = _provider(
        "openai_compatible",
        upstream,
        "https://llm.example/v1",
        renames={"max_completion_tokens": "max_new_tokens"},
    )
    await _send(provider, _body(max_completion_tokens=9))
    assert upstream.body["max_new_tokens"] == 9 and "max_completion_tokens" not in upstream.body


# ---------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("kind", "fields", "param"),
    [
        ("groq", {"logprobs": True}, "logprobs"),
        ("groq", {"logit_bias": {"50256": -100}}, "logit_bias"),
        ("groq", {"n": 2}, "n"),
        (
            "groq",
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "user", "name": "bob", "content": "yo"},
                ]
            },
            "messages[1].name",
        ),
        (
            "deepseek",
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
            "response_format.type",
        ),
        ("deepseek", {"seed": 1}, "seed"),
        ("mistral", {"top_logprobs": 2, "logprobs": True}, "logprobs"),
        ("perplexity", {"user": "u-1"}, "user"),
        ("perplexity", {"response_format": {"type": "json_object"}}, "response_format.type"),
        ("ollama", {"tool_choice": "required"}, "tool_choice"),
        ("ollama", {"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
        ("vllm", {"parallel_tool_calls": False}, "parallel_tool_calls"),
        ("vllm", {"user": "u-1"}, "user"),
    ],
)
async def test_a_field_the_preset_cannot_take_is_a_400_naming_it(
    kind: str, fields: dict[str, Any], param: str
) -> None:
    upstream = Upstream()
    provider = _provider(kind, upstream)
    with pytest.raises(GatewayError) as caught:
        await _send(provider, _body(**fields))
    err = caught.value
    assert (err.status, err.type, err.param) == (400, "invalid_request_error", param)
    assert f"`{param}`" in err.message and provider.name in err.message
    assert not upstream.requests  # refused before any call: nothing is silently dropped upstream


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("groq", {"n": 1}),
        ("deepseek", {"response_format": {"type": "json_object"}}),
        ("ollama", {"tool_choice": "auto"}),
        ("vllm", {"parallel_tool_calls": True}),
        ("openrouter", {"logprobs": True, "n": 2, "user": "u", "seed": 3}),
    ],
)
async def test_values_the_preset_can_take_pass_through(kind: str, fields: dict[str, Any]) -> None:
    upstream = Upstream()
    await _send(_provider(kind, upstream), _body(**fields))
    for name, value in fields.items():
        assert upstream.body[name] == value


async def test_a_config_only_provider_refuses_what_its_config_says() -> None:
    upstream = Upstream()
    provider = _provider(
        "openai_compatible", upstream, "https://llm.example/v1", rejects=["tools[].function.strict=true"]
    )
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": True}}
    with pytest.raises(GatewayError) as caught:
        await _send(provider, _body(tools=[tool]))
    assert caught.value.param == "tools[0].function.strict"
    tool["function"]["strict"] = False  # type: ignore[index]
    await _send(provider, _body(tools=[tool]))
    assert upstream.body["tools"][0]["function"]["strict"] is False


# ---------------------------------------------------------------- stream_options


async def test_mistral_and_perplexity_get_no_stream_options_and_still_report_usage() -> None:
    for kind in ("mistral", "perplexity"):
        upstream = Upstream(reply=[_chunk({"content": "hi"}), _chunk({}, "stop", usage=USAGE)])
        chunks = await _stream(
            _provider(kind, upstream), _body(stream=True, stream_options={"include_usage": True})
        )
        assert upstream.body["stream"] is True and "stream_options" not in upstream.body
        assert chunks[-1].usage.total_tokens == 5


async def test_other_compatible_servers_are_asked_for_stream_usage() -> None:
    upstream = Upstream(reply=[_chunk({"content": "hi"}, "stop"), _chunk(usage=USAGE)])
    await _stream(_provider("groq", upstream), _body())
    assert upstream.body["stream_options"] == {"include_usage": True}


# ---------------------------------------------------------------- reasoning


@pytest.mark.parametrize("kind", ["deepseek", "xai", "vllm", "fireworks"])
async def test_reasoning_content_arrives_as_the_contracts_reasoning(kind: str) -> None:
    upstream = Upstream(reply=_answer("42", reasoning_content="6 times 7"))
    message = (await _send(_provider(kind, upstream), _body())).choices[0].message
    assert (message.text, message.reasoning) == ("42", "6 times 7")
    assert "reasoning_content" not in message.extra_json


async def test_streamed_reasoning_content_arrives_as_reasoning_deltas() -> None:
    upstream = Upstream(
        reply=[
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"reasoning_content": "6 times "}),
            _chunk({"reasoning_content": "7"}),
            _chunk({"content": "42"}, "stop"),
            _chunk(usage=USAGE),
        ]
    )
    chunks = await _stream(_provider("deepseek", upstream), _body())
    deltas = [c.delta for chunk in chunks for c in chunk.choices]
    assert "".join(d.reasoning for d in deltas) == "6 times 7"
    assert "".join(d.text for d in deltas) == "42"
    assert not any("reasoning_content" in d.extra_json for d in deltas)


async def test_reasoning_sent_back_in_the_conversation_goes_under_deepseeks_name() -> None:
    upstream = Upstream()
    history = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "reasoning": "I should call it", "tool_calls": []},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    await _send(_provider("deepseek", upstream), _body(messages=history))
    assistant = upstream.body["messages"][1]
    assert assistant["reasoning_content"] == "I should call it" and "reasoning" not in assistant


async def test_the_same_reasoning_under_both_names_comes_back_once() -> None:
    upstream = Upstream(reply=_answer("42", reasoning="why", reasoning_content="why"))
    message = (await _send(_provider("vllm", upstream), _body())).choices[0].message
    assert message.reasoning == "why" and not message.extra_json


async def test_a_kind_without_a_reasoning_field_leaves_reasoning_content_alone() -> None:
    upstream = Upstream(reply=_answer("42", reasoning_content="kept as it came"))
    message = (await _send(_provider("groq", upstream), _body())).choices[0].message
    assert not message.reasoning
    assert orjson.loads(message.extra_json) == {"reasoning_content": "kept as it came"}


async def test_openrouter_reasoning_and_details_pass_through_to_the_contract() -> None:
    details = [
        {
            "type": "reasoning.text",
            "text": "step one",
            "signature": "sig-1",
            "format": "anthropic-claude-v1",
            "index": 0,
        },
        {"type": "reasoning.encrypted", "data": "opaque==", "id": "r-2", "index": 1},
    ]
    upstream = Upstream(reply=_answer("done", reasoning="step one", reasoning_details=details))
    message = (await _send(_provider("openrouter", upstream), _body())).choices[0].message
    assert message.reasoning == "step one"
    assert [(d.type, d.text, d.signature, d.data) for d in message.reasoning_details] == [
        ("reasoning.text", "step one", "sig-1", ""),
        ("reasoning.encrypted", "", "", "opaque=="),
    ]
    # What the caller gets back is what OpenRouter sent, `format` included.
    out = codec.response_to_dict(pb.ChatCompletionResponse(choices=[pb.Choice(message=message)]))
    assert out["choices"][0]["message"]["reasoning_details"] == details


# ---------------------------------------------------------------- Perplexity's results

RESULTS = {
    "search_results": [
        {
            "title": "Milky Way",
            "url": "https://a.example/mw",
            "date": "2025-01-02",
            "snippet": "stars",
            "id": 1,
        }
    ],
    "citations": ["https://a.example/mw", "https://b.example/g"],
    "videos": [{"url": "https://v.example/1", "thumbnail_url": "https://v.example/1.jpg", "duration": 61.5}],
}


def _check_results(message: pb.ChatCompletionResponse | pb.ChatCompletionChunk) -> None:
    assert [(r.title, r.url, r.date, r.snippet) for r in message.search_results] == [
        ("Milky Way", "https://a.example/mw", "2025-01-02", "stars")
    ]
    assert list(message.citations) == RESULTS["citations"]
    assert [(v.url, v.duration) for v in message.videos] == [("https://v.example/1", 61.5)]


async def test_perplexity_results_fill_the_contracts_top_level_fields() -> None:
    upstream = Upstream(reply=_answer("200-400 billion [1]") | RESULTS)
    response = await _send(_provider("perplexity", upstream), _body())
    _check_results(response)
    assert not response.extra_json


@pytest.mark.parametrize("on", ["finish", "usage"])
async def test_the_streams_last_chunks_carry_the_results_wherever_they_came(on: str) -> None:
    finish = _chunk({}, "stop", **(RESULTS if on == "finish" else {}))
    usage = _chunk(usage=USAGE, **(RESULTS if on == "usage" else {}))
    upstream = Upstream(reply=[_chunk({"role": "assistant", "content": "stars"}), finish, usage])
    chunks = await _stream(_provider("perplexity", upstream), _body())
    final, last = chunks[-2], chunks[-1]
    assert final.choices[0].finish_reason == "stop" and last.HasField("usage")
    # Without include_usage the caller's last chunk is the finish chunk; with it, the usage chunk.
    _check_results(last)
    if on == "finish":
        _check_results(final)
    assert not chunks[0].citations  # nothing is invented before the results came


# ---------------------------------------------------------------- errors and secrets


async def test_a_mistral_style_error_keeps_its_message_and_status() -> None:
    detail = {
        "detail": [
            {"type": "extra_forbidden", "loc": ["body", "foo"], "msg": "Extra inputs are not permitted"}
        ]
    }
    upstream = Upstream(
        reply={"object": "error", "message": detail, "type": "invalid_request_error", "code": 3001}
    )
    upstream.status = 422
    with pytest.raises(GatewayError) as caught:
        await _send(_provider("mistral", upstream), _body(foo=1))
    err = caught.value
    assert (err.status, err.failure, err.code) == (422, FailureClass.CALLER, "3001")
    assert "extra_forbidden" in err.message


async def test_the_key_is_in_no_error_and_no_raw_request() -> None:
    upstream = Upstream(reply=_answer("ok"))
    provider = _provider(
        "openai_compatible", upstream, "https://llm.example/v1", keep_raw=True, auth_format="Token {key}"
    )
    response = await _send(provider, _body())
    assert (
        SECRET not in response.extra_fields.raw_request_json
        and "hi" in response.extra_fields.raw_request_json
    )
    assert upstream.requests[0].headers["authorization"] == f"Token {SECRET}"
    for status in (401, 500):
        upstream.reply, upstream.status = {"error": {"message": "bad key", "type": "auth"}}, status
        with pytest.raises(GatewayError) as caught:
            await _send(provider, _body())
        assert SECRET not in str(caught.value.to_body(model_requested="m", request_type="x", attempts=[]))
    with pytest.raises(GatewayError) as caught:
        await _send(_provider("groq", upstream), _body(n=3))
    assert SECRET not in caught.value.message


# ---------------------------------------------------------------- config


def _section(section: dict[str, Any]) -> Any:
    return parse_config({"providers": {"p": section}, "routing": {"default_provider": "p"}}, env={}).providers


@pytest.mark.parametrize(
    ("section", "path"),
    [
        (
            {"kind": "openai_compatible", "base_url": "http://x", "auth_format": "Token"},
            "providers.p.auth_format",
        ),
        ({"kind": "groq", "auth_format": "{key} {key}"}, "providers.p.auth_format"),
        ({"kind": "groq", "auth_header": "X Api Key"}, "providers.p.auth_header"),
        ({"kind": "groq", "chat_path": "chat/completions"}, "providers.p.chat_path"),
        ({"kind": "groq", "headers": {"Content-Type": "text/plain"}}, "providers.p.headers.Content-Type"),
        ({"kind": "groq", "headers": {"X-A": "a\r\nX-B: b"}}, "providers.p.headers.X-A"),
        ({"kind": "groq", "renames": {"seed": "seed"}}, "providers.p.renames.seed"),
        ({"kind": "groq", "renames": {"seed": "max-tokens"}}, "providers.p.renames.seed"),
        ({"kind": "groq", "renames": {"a": "c", "b": "c"}}, "providers.p.renames.b"),
        ({"kind": "groq", "rejects": ["n", "n !! 1"]}, "providers.p.rejects[1]"),
        ({"kind": "groq", "rejects": ["messages[0].name"]}, "providers.p.rejects[0]"),
        ({"kind": "groq", "reasoning_field": "reasoning"}, "providers.p.reasoning_field"),
        ({"kind": "groq", "stream_options": "sometimes"}, "providers.p.stream_options"),
        ({"kind": "groq", "api_version": "1"}, "providers.p.api_version"),
    ],
)
def test_a_bad_compatible_setting_names_its_key(section: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check(_section(section))
    assert caught.value.path == path


def test_vllm_and_ollama_default_to_localhost_and_a_given_base_url_wins() -> None:
    vllm = build_provider(_section({"kind": "vllm", "keys": ["k"]})["p"], ProviderContext())
    assert vllm.config.base_url == "http://localhost:8000/v1"
    ollama = build_provider(
        _section({"kind": "ollama", "base_url": "http://gpu-box:11434/v1"})["p"], ProviderContext()
    )
    assert ollama.config.base_url == "http://gpu-box:11434/v1"


# ---------------------------------------------------------------- against the real fake


def _on_fake(kind: str, fake: FakeUpstream, **options: Any) -> Provider:
    config = ProviderConfig(name=kind, kind=kind, base_url=fake.url + "/v1", keys=(KEY,), options=options)
    return build_provider(config, ProviderContext())


async def test_images_reach_a_compatible_upstream_as_the_caller_sent_them(upstream: FakeUpstream) -> None:
    provider = _on_fake("groq", upstream)
    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.test/cat.jpg"}},
    ]
    await _send(provider, _body(messages=[{"role": "user", "content": parts}]))
    assert upstream.requests[0].body["messages"][0]["content"] == parts
    await provider.aclose()


async def test_leaving_a_stream_closes_the_upstream_connection(upstream: FakeUpstream) -> None:
    provider = _on_fake("deepseek", upstream)
    upstream.script(Reply.hang_stream("Hel", duration_s=10))
    prepared = provider.prepare(_body(), Target(provider.name, "m"), stream=True)
    chunks = provider.stream(prepared, KEY)
    async for chunk in chunks:
        if any(c.delta.text for c in chunk.choices):
            break
    await chunks.aclose()  # type: ignore[attr-defined]
    assert await upstream.wait_for_disconnect_async(timeout=5)
    await provider.aclose()


# ---------------------------------------------------------------- usage counts

PPLX_USAGE = {
    "prompt_tokens": 10,
    "completion_tokens": 20,
    "total_tokens": 30,
    "citation_tokens": 7,
    "num_search_queries": 1,
    "reasoning_tokens": 3,
    "search_context_size": "low",
    "cost": {
        "input_tokens_cost": 0.001,
        "output_tokens_cost": 0.002,
        "request_cost": 0.005,
        "total_cost": 0.008,
    },
}


async def test_perplexitys_usage_counts_land_in_the_contracts_details() -> None:
    upstream = Upstream(reply=_answer("ok") | {"usage": PPLX_USAGE})
    usage = (await _send(_provider("perplexity", upstream), _body())).usage
    details = usage.completion_tokens_details
    assert (details.citation_tokens, details.num_search_queries, details.reasoning_tokens) == (7, 1, 3)
    assert (usage.cost.request_cost, usage.cost.total_cost) == (0.005, 0.008)  # Perplexity's own
    assert orjson.loads(usage.extra_json) == {"search_context_size": "low"}
    upstream = Upstream(reply=[_chunk({"content": "ok"}, "stop", usage=PPLX_USAGE)])
    (chunk,) = await _stream(_provider("perplexity", upstream), _body())
    assert chunk.usage.completion_tokens_details.citation_tokens == 7


async def test_deepseeks_cache_hits_become_cached_tokens_unless_it_says_so_itself() -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105, "prompt_cache_hit_tokens": 64}
    upstream = Upstream(reply=_answer("ok") | {"usage": usage})
    got = (await _send(_provider("deepseek", upstream), _body())).usage
    assert got.prompt_tokens_details.cached_tokens == 64 and not got.extra_json
    both = usage | {"prompt_tokens_details": {"cached_tokens": 60}}
    upstream = Upstream(reply=_answer("ok") | {"usage": both})
    got = (await _send(_provider("deepseek", upstream), _body())).usage
    assert got.prompt_tokens_details.cached_tokens == 60  # the upstream's own detail wins


@pytest.mark.parametrize(
    "target", ["cost.total_cost", "completion_tokens_details", "nope", "usage.prompt_tokens"]
)
def test_a_usage_field_must_name_one_of_the_contracts_counts(target: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check(_section({"kind": "groq", "usage_fields": {"hits": target}}))
    assert caught.value.path == "providers.p.usage_fields.hits"


# ---------------------------------------------------------------- the fake, read by the official SDKs


def test_the_fake_speaks_deepseek_as_the_openai_sdk_reads_it(upstream: FakeUpstream) -> None:
    openai = pytest.importorskip("openai")
    upstream.script(Reply.ok("9.8", reasoning="compare decimals"))
    with openai.OpenAI(api_key="k", base_url=upstream.url + "/v1", max_retries=0) as client:
        message = (
            client.chat.completions.create(
                model="deepseek-reasoner", messages=[{"role": "user", "content": "9.11 or 9.8?"}]
            )
            .choices[0]
            .message
        )
    # As DeepSeek's reasoning-model guide reads it.
    assert (message.content, message.reasoning_content) == ("9.8", "compare decimals")  # type: ignore[attr-defined]


def test_the_fake_speaks_perplexity_as_its_official_sdk_reads_it(upstream: FakeUpstream) -> None:
    perplexity = pytest.importorskip("perplexity")
    upstream.script(
        Reply.ok("stars [1]", extra=RESULTS, usage=PPLX_USAGE),
        Reply.stream(["st", "ars"], extra=RESULTS, usage=PPLX_USAGE, usage_always=True),
    )
    client = perplexity.Perplexity(api_key="k", base_url=upstream.url, max_retries=0)
    try:
        answer = client.chat.completions.create(
            model="sonar", messages=[{"role": "user", "content": "stars?"}]
        )
        assert answer.choices[0].message.content == "stars [1]"
        assert [r.url for r in answer.search_results] == ["https://a.example/mw"]
        assert answer.citations == RESULTS["citations"]
        assert (answer.usage.citation_tokens, answer.usage.cost.total_cost) == (7, 0.008)
        chunks = list(
            client.chat.completions.create(
                model="sonar", messages=[{"role": "user", "content": "s"}], stream=True
            )
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "stars"
        assert chunks[-1].citations == RESULTS["citations"] and chunks[-1].usage.num_search_queries == 1
    finally:
        client.close()
    assert "stream_options" not in upstream.requests[1].body  # the SDK does not send it either
