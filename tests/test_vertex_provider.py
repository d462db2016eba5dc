"""The Vertex AI adapter (kind ``vertex``), in process, against the fake Vertex AI and its token endpoint:
config, the service account's OAuth token (fetched, shared, reused, refreshed), the URLs of both
publishers, Claude through Anthropic's translation, and secrets kept out of bodies and errors.

The Gemini body, answers and streams are ``wire.py``'s, tested in ``test_gemini_provider.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.errors import FailureClass, GatewayError, UpstreamError
from service.providers import ProviderContext, build_provider, check
from service.providers.google.auth import ServiceAccountToken
from service.providers.google.vertex import VertexProvider
from service.routing import Target
from switchyard import codec
from switchyard.config import ConfigError, KeyConfig, ProviderConfig, Secret, parse_config
from switchyard.v1 import chat_pb2 as pb
from tests.fakes import anthropic as ant
from tests.fakes.gemini import FakeGemini, Reply

PROJECT, LOCATION = "test-project", "europe-west4"
CLAUDE = "claude-sonnet-4-5@20250929"


def sa_key(fake: FakeGemini) -> KeyConfig:
    return KeyConfig(secret=Secret(json.dumps(fake.service_account())))


def vertex(fake: FakeGemini, key: KeyConfig | None = None, **options: Any) -> VertexProvider:
    config = ProviderConfig(
        name="vertex",
        kind="vertex",
        base_url=fake.url,
        keys=(key or sa_key(fake),),
        options={"project": PROJECT, "location": LOCATION, **options},
    )
    provider = build_provider(config, ProviderContext(keep_raw=True))
    assert isinstance(provider, VertexProvider)
    return provider


def request(**fields: Any) -> pb.ChatCompletionRequest:
    return codec.request_from_dict({"model": "x", "messages": [{"role": "user", "content": "hi"}], **fields})


async def send(p: VertexProvider, model: str = "gemini-2.5-pro", **fields: Any) -> pb.ChatCompletionResponse:
    return await p.send(p.prepare(request(**fields), Target("vertex", model), stream=False), p.config.keys[0])


async def stream(
    p: VertexProvider, model: str = "gemini-2.5-pro", **fields: Any
) -> list[pb.ChatCompletionChunk]:
    prepared = p.prepare(request(**fields), Target("vertex", model), stream=True)
    return [chunk async for chunk in p.stream(prepared, p.config.keys[0])]


def bearer(fake: FakeGemini, i: int) -> str:
    return (fake.requests[i].header("authorization") or "").removeprefix("Bearer ")


# ------------------------------------------------------------------ config


def _section(**section: Any) -> Any:
    raw = {"providers": {"v": {"kind": "vertex", **section}}, "routing": {"default_provider": "v"}}
    return parse_config(raw, env={}).providers


@pytest.mark.parametrize(
    ("location", "base_url"),
    [
        ("us-central1", "https://us-central1-aiplatform.googleapis.com"),
        ("global", "https://aiplatform.googleapis.com"),
        ("eu", "https://aiplatform.eu.rep.googleapis.com"),
    ],
)
def test_the_endpoint_follows_the_location_unless_base_url_is_set(location: str, base_url: str) -> None:
    provider = build_provider(_section(project="p", location=location)["v"], ProviderContext())
    assert provider.config.base_url == base_url
    prepared = provider.prepare(request(), Target("v", "gemini-2.5-pro"), stream=False)
    assert provider.url(prepared, KeyConfig(secret=Secret("t"))) == (  # type: ignore[attr-defined]
        f"{base_url}/v1/projects/p/locations/{location}/publishers/google/models/gemini-2.5-pro:generateContent"
    )


@pytest.mark.parametrize("missing", ["project", "location"])
def test_project_and_location_are_required(missing: str) -> None:
    section = {"project": "p", "location": "us-central1"}
    del section[missing]
    with pytest.raises(ConfigError) as caught:
        check(_section(**section))
    assert caught.value.path == f"providers.v.{missing}"


def test_a_key_is_service_account_json_or_its_file(gemini: FakeGemini, tmp_path: Path) -> None:
    info = gemini.service_account()
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    env = {"SA_JSON": json.dumps(info), "SA_FILE": str(path)}
    raw = {
        "providers": {
            "v": {
                "kind": "vertex",
                "project": "p",
                "location": "us-central1",
                "keys": [{"value": "${SA_JSON}"}, {"value": "${SA_FILE}"}],
            }
        },
        "routing": {"default_provider": "v"},
    }
    config = parse_config(raw, env=env).providers["v"]
    provider = build_provider(config, ProviderContext())
    assert len(provider._tokens) == 2  # type: ignore[attr-defined]
    assert info["private_key"] not in str(config) and info["private_key"] not in repr(provider.config)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/no/such/file.json", "readable file"),
        ("{not json", "not valid service-account JSON"),
        ('{"type": "authorized_user", "client_id": "x"}', "must be a service-account key"),
        ('{"type": "service_account", "client_email": "a@b", "token_uri": "http://t"}', "no private_key"),
    ],
)
def test_a_bad_key_fails_at_start_naming_it(value: str, message: str) -> None:
    config = ProviderConfig(
        name="v",
        kind="vertex",
        base_url="http://x",
        keys=(KeyConfig(secret=Secret(value)),),
        options={"project": "p", "location": "l"},
    )
    with pytest.raises(ConfigError, match=message) as caught:
        build_provider(config, ProviderContext())
    assert caught.value.path == "providers.v.keys[0].value"


def test_a_private_key_that_does_not_parse_fails_without_showing_it(gemini: FakeGemini) -> None:
    info = gemini.service_account()
    info["private_key"] = (
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n"
    )
    with pytest.raises(ConfigError) as caught:
        vertex(gemini, KeyConfig(secret=Secret(json.dumps(info))))
    assert "c2VjcmV0" not in str(caught.value) and "private_key" in str(caught.value)


# ------------------------------------------------------------------ the token


async def test_the_token_is_fetched_once_and_reused(gemini: FakeGemini) -> None:
    p = vertex(gemini)
    await send(p)
    await send(p)
    [
        chunk
        async for chunk in p.stream(
            p.prepare(request(), Target("vertex", "gemini-2.5-pro"), stream=True), p.config.keys[0]
        )
    ]
    assert len(gemini.token_requests) == 1
    tokens = {bearer(gemini, i) for i in range(3)}
    assert len(tokens) == 1 and tokens <= gemini.issued_tokens
    await p.aclose()


async def test_concurrent_requests_share_one_refresh(gemini: FakeGemini) -> None:
    p = vertex(gemini)
    answers = await asyncio.gather(*(send(p) for _ in range(8)))
    assert [a.choices[0].message.text for a in answers] == ["echo: hi"] * 8
    assert len(gemini.token_requests) == 1
    await p.aclose()


async def test_a_token_near_its_expiry_is_replaced(gemini: FakeGemini) -> None:
    gemini.token_ttl_s = 200  # less than the refresh margin: never worth keeping
    try:
        p = vertex(gemini, token_refresh_margin_s=300)
        await send(p)
        await send(p)
        assert len(gemini.token_requests) == 2
        assert bearer(gemini, 0) != bearer(gemini, 1)
        await p.aclose()
    finally:
        gemini.token_ttl_s = 3600


async def test_the_token_source_refreshes_by_the_clock(gemini: FakeGemini) -> None:
    now = [time.time()]
    source = ServiceAccountToken(gemini.service_account(), margin_s=300, clock=lambda: now[0])
    first = await source.get(provider="v", model="m")
    now[0] += 3600 - 301  # still 301 s left: kept
    assert await source.get(provider="v", model="m") == first
    now[0] += 2  # 299 s left: inside the margin
    second = await source.get(provider="v", model="m")
    assert second != first and {first, second} <= gemini.issued_tokens
    assert (source.refreshes, len(gemini.token_requests)) == (2, 2)
    source.close()


async def test_a_refused_grant_is_a_credential_failure_without_the_key(gemini: FakeGemini) -> None:
    info = gemini.service_account()
    p = vertex(gemini, KeyConfig(secret=Secret(json.dumps(info))))
    gemini.fail_next_token()
    with pytest.raises(UpstreamError) as caught:
        await send(p)
    err = caught.value
    assert (err.status, err.type, err.failure) == (401, "authentication_error", FailureClass.CREDENTIAL)
    assert "invalid_grant" in err.message and info["client_email"] in err.message
    assert info["private_key"][40:80] not in err.message
    assert not gemini.requests  # no model call without a token
    assert (await send(p)).choices[0].message.text == "echo: hi"  # the next attempt fetches again
    await p.aclose()


async def test_a_token_vertex_refuses_is_dropped(gemini: FakeGemini) -> None:
    p = vertex(gemini)
    gemini.script(Reply.error("UNAUTHENTICATED", "Request had invalid authentication credentials."))
    with pytest.raises(UpstreamError) as caught:
        await send(p)
    assert (caught.value.status, caught.value.failure) == (401, FailureClass.CREDENTIAL)
    await send(p)
    assert len(gemini.token_requests) == 2
    await p.aclose()


async def test_an_unreachable_token_endpoint_is_transient(gemini: FakeGemini) -> None:
    info = gemini.service_account()
    info["token_uri"] = "http://127.0.0.1:9/token"
    p = vertex(gemini, KeyConfig(secret=Secret(json.dumps(info))))
    with pytest.raises(UpstreamError) as caught:
        await send(p)
    assert (caught.value.status, caught.value.type, caught.value.failure) == (
        502,
        "upstream_unreachable",
        FailureClass.TRANSIENT,
    )
    assert not caught.value.from_upstream
    await p.aclose()


# ------------------------------------------------------------------ Gemini on Vertex


async def test_gemini_on_vertex(gemini: FakeGemini) -> None:
    p = vertex(gemini)
    gemini.script(Reply.ok("hello from vertex"))
    answer = await send(p, "google/gemini-2.5-pro", temperature=0.2)
    assert answer.choices[0].message.text == "hello from vertex"
    chunks = await stream(p, "gemini-2.5-flash")
    assert "".join(c.choices[0].delta.text for c in chunks if c.choices) == "echo: hi"
    unary, streamed = gemini.requests
    base = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models"
    assert unary.path == f"{base}/gemini-2.5-pro:generateContent"
    assert (streamed.path, streamed.query) == (
        f"{base}/gemini-2.5-flash:streamGenerateContent",
        {"alt": "sse"},
    )
    assert unary.body == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"temperature": 0.2},
    }
    await p.aclose()


# ------------------------------------------------------------------ Claude on Vertex


async def test_claude_on_vertex_reuses_the_anthropic_translation(gemini: FakeGemini) -> None:
    p = vertex(gemini, anthropic_default_max_tokens=1000)
    gemini.script(
        ant.Reply.ok("Bonjour", thinking="In French.", usage=ant.Usage(12, 3, cache_read_input_tokens=5))
    )
    answer = await send(
        p, CLAUDE, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    )
    message = answer.choices[0].message
    assert (message.text, message.reasoning, answer.choices[0].finish_reason) == (
        "Bonjour",
        "In French.",
        "stop",
    )
    assert (answer.usage.prompt_tokens, answer.usage.prompt_tokens_details.cached_tokens) == (17, 5)
    chunks = await stream(p, f"anthropic/{CLAUDE}")
    assert "".join(c.choices[0].delta.text for c in chunks if c.choices) == "echo: hi"
    assert chunks[-1].usage.total_tokens > 0
    unary, streamed = gemini.requests
    base = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/anthropic/models/{CLAUDE}"
    assert (unary.path, streamed.path) == (f"{base}:rawPredict", f"{base}:streamRawPredict")
    assert unary.body == {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "system": [{"type": "text", "text": "Be brief."}],
        "max_tokens": 1000,
        "anthropic_version": "vertex-2023-10-16",
    }
    assert streamed.body["stream"] is True
    assert bearer(gemini, 0) in gemini.issued_tokens
    await p.aclose()


async def test_claudes_errors_come_in_both_shapes(gemini: FakeGemini) -> None:
    p = vertex(gemini)
    gemini.script(
        ant.Reply.error("overloaded_error"),
        Reply.error("RESOURCE_EXHAUSTED", "Quota exceeded", retry_delay="9s"),
    )
    with pytest.raises(UpstreamError) as caught:
        await send(p, CLAUDE)
    assert (caught.value.status, caught.value.failure, caught.value.error_type) == (
        529,
        FailureClass.TRANSIENT,
        "overloaded_error",
    )
    with pytest.raises(UpstreamError) as caught:
        await send(p, CLAUDE)
    assert (caught.value.status, caught.value.failure, caught.value.retry_after_s) == (
        429,
        FailureClass.RATE_LIMIT,
        9.0,
    )
    await p.aclose()


async def test_claude_on_vertex_refuses_what_anthropic_cannot_honour(gemini: FakeGemini) -> None:
    p = vertex(gemini)
    with pytest.raises(GatewayError) as caught:
        p.prepare(request(n=2), Target("vertex", CLAUDE), stream=False)
    assert (caught.value.status, caught.value.param) == (400, "n")
    with pytest.raises(GatewayError) as caught:
        p.prepare(request(), Target("vertex", "meta/llama-3.3-70b"), stream=False)
    assert (caught.value.status, caught.value.param) == (400, "model")
    await p.aclose()


async def test_a_broken_claude_stream_is_broken(gemini: FakeGemini) -> None:
    p = vertex(gemini)
    gemini.script(ant.Reply.broken(3, ant.Reply.ok("one two three four five")))
    with pytest.raises(UpstreamError) as caught:
        await stream(p, CLAUDE)
    assert caught.value.type == "upstream_stream_broken"
    await p.aclose()


# ------------------------------------------------------------------ secrets


async def test_no_secret_reaches_bodies_or_errors(gemini: FakeGemini) -> None:
    info = gemini.service_account()
    p = vertex(gemini, KeyConfig(secret=Secret(json.dumps(info))))
    answer = await send(p)
    token = bearer(gemini, 0)
    raw = answer.extra_fields.raw_request_json + answer.extra_fields.raw_response_json
    gemini.script(Reply.error("PERMISSION_DENIED", "Permission denied on resource project test-project."))
    with pytest.raises(UpstreamError) as caught:
        await send(p)
    text = (
        raw
        + caught.value.message
        + str(
            orjson.dumps(
                codec.error_to_dict(
                    caught.value.to_body(
                        model_requested="m",
                        request_type="chat_completion",
                        attempts=[caught.value.to_attempt()],
                    )
                )
            )
        )
    )
    for secret in (token, info["private_key"][40:90], info["private_key_id"]):
        assert secret not in text
    await p.aclose()
