"""The embeddings engine in-process: routing, retries, key rotation, fallbacks, the capability
check, governance, cost, validation and ``embed_texts``. The upstream is ``httpx.MockTransport``
answering with the fake's hashed bag-of-words vectors; no sockets, milliseconds per test."""

from __future__ import annotations

import asyncio
import base64
import logging
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.embeddings import EmbeddingsEngine
from service.governance import Governance
from service.pipeline import EMBEDDING_REQUEST_TYPE, CallContext, ChatError, Plugin
from service.plugins import AccessLogPlugin, GovernancePlugin, MetricsPlugin, TracingPlugin
from service.providers import ProviderContext, build_provider
from service.routing import Target
from service.server import start_governance
from switchyard import codec
from switchyard.config import MetricsConfig, TracingConfig, parse_config
from switchyard.metrics import ProcessMetrics
from switchyard.open_streams import OpenStreams
from switchyard.v1 import chat_pb2 as pb
from switchyard.v1 import embeddings_pb2 as epb
from tests.fakes import embeddings as fake

Handler = Callable[[httpx.Request], httpx.Response]
VK_SECRET = "sk-bf-" + "embeddings-test-key-0123456789abcdefghijklmnop"


class Upstream:
    """Answers by host (``https://{provider}.example``): scripted replies first, then the fake's
    embeddings; records every request."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Handler]] = {}
        self.requests: list[httpx.Request] = []

    def script(self, host: str, *handlers: Handler) -> None:
        self.scripts.setdefault(host, []).extend(handlers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.scripts.get(request.url.host.split(".")[0])
        if queue:
            return queue.pop(0)(request)
        body = orjson.loads(request.content)
        answer = fake.answer(body, body.get("model") or "deployment")
        assert not isinstance(answer, str), answer
        return httpx.Response(200, json=answer)

    def hosts(self) -> list[str]:
        return [r.url.host.split(".")[0] for r in self.requests]

    def body(self, index: int = -1) -> dict[str, Any]:
        body: dict[str, Any] = orjson.loads(self.requests[index].content)
        return body


def status(code: int, headers: dict[str, str] | None = None) -> Handler:
    return lambda _r: httpx.Response(code, json={"error": {"message": f"status {code}"}}, headers=headers)


def config(extra: dict[str, Any] | None = None, **sections: Any) -> Any:
    """Providers ``primary``/``backup`` (openai), ``two-keys`` (openai, keys a and b), ``azure``
    and ``claude`` (anthropic: no embeddings)."""
    return parse_config(
        {
            "routing": {"default_provider": "primary"},
            "retries": {"max_retries": 1, "backoff_initial_ms": 1, "backoff_max_ms": 1},
            "providers": {
                **{
                    name: {
                        "kind": "openai",
                        "base_url": f"https://{name}.example/v1",
                        "keys": [{"value": "k"}],
                    }
                    for name in ("primary", "backup")
                },
                "two-keys": {
                    "kind": "openai",
                    "base_url": "https://two-keys.example/v1",
                    "keys": [{"value": "key-a"}, {"value": "key-b"}],
                },
                "azure": {
                    "kind": "azure",
                    "base_url": "https://azure.example",
                    "api_version": "2024-10-21",
                    "keys": [{"value": "az"}],
                },
                "claude": {
                    "kind": "anthropic",
                    "base_url": "https://claude.example",
                    "keys": [{"value": "c"}],
                },
            },
            "deployments": {
                "embed": {
                    "targets": [{"provider": "primary", "model": "text-embedding-3-small"}],
                    "fallbacks": ["backup/text-embedding-3-large"],
                },
                "claude-first": {"targets": [{"provider": "claude", "model": "claude-x"}]},
                "claude-fallback": {
                    "targets": [{"provider": "primary", "model": "text-embedding-3-small"}],
                    "fallbacks": ["claude/claude-x", "backup/text-embedding-ada-002"],
                },
            },
            **sections,
            **(extra or {}),
        },
        env={},
    )


def make_engine(
    upstream: Upstream,
    plugins: list[Plugin] | None = None,
    governance: Governance | None = None,
    **sections: Any,
) -> EmbeddingsEngine:
    cfg = config(**sections)
    context = ProviderContext(transport=httpx.MockTransport(upstream))
    providers = {name: build_provider(p, context) for name, p in cfg.providers.items()}
    price = governance.price_usage if governance is not None else None
    return EmbeddingsEngine(cfg, providers, plugins or [], price=price)


def texts(*values: str, **fields: Any) -> epb.EmbeddingsRequest:
    return epb.EmbeddingsRequest(input_texts=pb.StringList(values=values), **fields)


async def failure(call: Any) -> pb.ErrorBody:
    with pytest.raises(ChatError) as info:
        await call
    return info.value.body


# ---------------------------------------------------------------- routing and the answer


async def test_a_deployment_routes_to_its_target_and_the_answer_is_the_upstreams() -> None:
    upstream = Upstream()
    engine = make_engine(upstream)
    response = await engine.create(texts("hello world", "good morning", model="embed"))

    assert upstream.hosts() == ["primary"]
    sent = upstream.requests[0]
    assert sent.url.path == "/v1/embeddings"
    assert sent.headers["authorization"] == "Bearer k"
    assert orjson.loads(sent.content) == {
        "model": "text-embedding-3-small",
        "input": ["hello world", "good morning"],
    }
    assert [list(item.floats.values) for item in response.data] == [
        fake.embed("hello world"),
        fake.embed("good morning"),
    ]
    extra = response.extra_fields
    assert (extra.request_type, extra.provider, extra.model_requested, extra.model_deployment) == (
        "embedding",
        "primary",
        "embed",
        "text-embedding-3-small",
    )
    assert response.usage.prompt_tokens == response.usage.total_tokens == 4


async def test_azure_gets_its_deployment_path_and_base64_passes_through_as_bytes() -> None:
    upstream = Upstream()
    engine = make_engine(upstream)
    request = texts("café au lait", model="azure/emb-dep", encoding_format="base64", dimensions=64, user="u1")
    response = await engine.create(request)

    sent = upstream.requests[0]
    assert sent.url.path == "/openai/deployments/emb-dep/embeddings"
    assert sent.url.params["api-version"] == "2024-10-21"
    assert sent.headers["api-key"] == "az"
    # Every caller field goes upstream; a `model` the caller named becomes the deployment's (as for chat).
    assert orjson.loads(sent.content) == {
        "model": "emb-dep",
        "input": ["café au lait"],
        "encoding_format": "base64",
        "dimensions": 64,
        "user": "u1",
    }
    (item,) = response.data
    assert item.WhichOneof("vector") == "float32_le"
    assert item.float32_le == struct.pack("<64f", *fake.embed("café au lait", 64))
    # Back to JSON it is the same base64 text the upstream sent.
    out = codec.embeddings_response_to_dict(response)
    assert base64.b64decode(out["data"][0]["embedding"]) == item.float32_le
    assert codec.vector_floats(item) == fake.embed("café au lait", 64)


async def test_token_inputs_are_sent_as_token_arrays() -> None:
    upstream = Upstream()
    engine = make_engine(upstream)
    request = epb.EmbeddingsRequest(
        model="primary/m",
        input_token_lists=epb.TokenIdLists(lists=[epb.TokenIds(values=[1, 2]), epb.TokenIds(values=[3])]),
    )
    response = await engine.create(request)
    assert upstream.body()["input"] == [[1, 2], [3]]
    assert len(response.data) == 2


# ---------------------------------------------------------------- resilience


async def test_a_5xx_is_retried_then_falls_back_and_every_attempt_is_reported() -> None:
    upstream = Upstream()
    upstream.script("primary", status(500), status(503))
    engine = make_engine(upstream)
    response = await engine.create(texts("x", model="embed"))

    assert upstream.hosts() == ["primary", "primary", "backup"]
    assert upstream.body()["model"] == "text-embedding-3-large"
    assert response.extra_fields.provider == "backup"
    assert [(a.provider, a.status_code) for a in response.extra_fields.attempts] == [
        ("primary", 500),
        ("primary", 503),
    ]


async def test_a_caller_error_of_the_primary_does_not_fall_back() -> None:
    upstream = Upstream()
    upstream.script("primary", status(400))
    engine = make_engine(upstream)
    body = await failure(engine.create(texts("x", model="embed")))

    assert upstream.hosts() == ["primary"]
    assert body.status_code == 400
    assert body.extra_fields.request_type == "embedding"
    assert body.extra_fields.model_requested == "embed"


async def test_a_429_rotates_to_the_other_key_at_once() -> None:
    upstream = Upstream()
    upstream.script("two-keys", status(429, {"retry-after": "30"}))
    engine = make_engine(upstream)
    response = await engine.create(texts("x", model="two-keys/m"))

    keys = [r.headers["authorization"] for r in upstream.requests]
    assert len(keys) == 2
    assert set(keys) == {"Bearer key-a", "Bearer key-b"}  # the second attempt used the other key
    assert response.extra_fields.attempts[0].status_code == 429


async def test_a_silent_upstream_times_out_and_falls_back() -> None:
    upstream = Upstream()

    async def silent(_request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        raise AssertionError("not reached")

    engine = make_engine(upstream, timeouts={"ttft_s": 0.05})
    upstream.script("primary", silent)  # type: ignore[arg-type]
    response = await engine.create(texts("x", model="embed"))
    assert response.extra_fields.provider == "backup"
    assert response.extra_fields.attempts[0].error_type == "timeout"


# ---------------------------------------------------------------- the capability


async def test_a_primary_whose_provider_serves_no_embeddings_is_a_400_naming_it() -> None:
    upstream = Upstream()
    engine = make_engine(upstream)
    body = await failure(engine.create(texts("x", model="claude-first")))

    assert upstream.requests == []
    assert body.status_code == 400
    assert body.type == "invalid_request_error"
    assert body.error.param == "model"
    assert "'claude'" in body.error.message
    assert "anthropic" in body.error.message
    assert "'claude-x'" in body.error.message


async def test_a_fallback_whose_provider_serves_no_embeddings_is_skipped_and_reported() -> None:
    upstream = Upstream()
    upstream.script("primary", status(500), status(500))
    engine = make_engine(upstream)
    response = await engine.create(texts("x", model="claude-fallback"))

    assert upstream.hosts() == ["primary", "primary", "backup"]
    skipped = [a for a in response.extra_fields.attempts if a.error_type == "fallback_skipped"]
    assert [a.model for a in skipped] == ["claude/claude-x"]
    assert "does not serve embeddings" in skipped[0].message


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (epb.EmbeddingsRequest(model="embed"), "input"),
        (epb.EmbeddingsRequest(model="embed", input_text=""), "input"),
        (texts(model="embed"), "input"),
        (texts("a", "", model="embed"), "input[1]"),
        (texts(*["t"] * 2049, model="embed"), "input"),
        (texts("a", model="embed", encoding_format="int8"), "encoding_format"),
        (texts("a", model="embed", dimensions=0), "dimensions"),
        (texts("a", model="embed", extra_json="[1]"), "body"),
        (texts("a", model="embed", extra_json="{not json"), "body"),
        (texts("a", model="embed", extra_json='{"a":' + "[" * 70 + "]" * 70 + "}"), "body"),
        (epb.EmbeddingsRequest(model="embed", input_tokens=epb.TokenIds()), "input"),
    ],
)
async def test_bad_values_are_400s_before_any_upstream_call(
    request_: epb.EmbeddingsRequest, param: str
) -> None:
    upstream = Upstream()
    body = await failure(make_engine(upstream).create(request_))
    assert body.status_code == 400, body
    assert body.error.param == param, body
    assert upstream.requests == []


async def test_2048_inputs_are_allowed() -> None:
    upstream = Upstream()
    response = await make_engine(upstream).create(texts(*[f"t{i}" for i in range(2048)], model="embed"))
    assert len(response.data) == 2048


async def test_a_malformed_upstream_answer_is_a_502_that_falls_back() -> None:
    upstream = Upstream()
    bad = {"object": "list", "data": [{"index": 0, "embedding": ["not", "numbers"]}]}
    upstream.script(
        "primary", lambda _r: httpx.Response(200, json=bad), lambda _r: httpx.Response(200, json=bad)
    )
    response = await make_engine(upstream).create(texts("x", model="embed"))
    assert response.extra_fields.provider == "backup"
    assert response.extra_fields.attempts[0].error_type == "upstream_bad_response"


# ---------------------------------------------------------------- plugins and governance


class Journal(Plugin):
    def __init__(self, embeddings: bool) -> None:
        self.embeddings = embeddings
        self.seen: list[str] = []

    async def on_request(self, ctx: CallContext) -> pb.ChatCompletionResponse | None:
        self.seen.append(f"request:{ctx.request_type}")
        return None

    async def before_target(self, ctx: CallContext, target: Target, prepared: Any) -> None:
        self.seen.append(f"before:{target.provider}")

    async def on_finish(self, ctx: CallContext) -> None:
        self.seen.append(f"finish:{ctx.status}:{ctx.usage.prompt_tokens if ctx.usage else None}")


async def test_only_plugins_that_understand_embeddings_see_them() -> None:
    chat_only, both = Journal(embeddings=False), Journal(embeddings=True)
    engine = make_engine(Upstream(), [chat_only, both])
    await engine.create(texts("one two", model="embed"))
    assert chat_only.seen == []
    assert both.seen == [f"request:{EMBEDDING_REQUEST_TYPE}", "before:primary", "finish:200:2"]


@pytest.fixture
async def governance(tmp_path: Path) -> AsyncIterator[Governance]:
    cfg = config(
        auth={"required": True},
        store={"url": f"sqlite:///{tmp_path / 'gov.db'}"},
        request_logs={"flush_interval_s": 0.01, "include_content": True},
        virtual_keys=[
            {
                "id": "vk-embed",
                "name": "embed",
                "value": VK_SECRET,
                "budget": {"max_usd": 1e-9, "reset": "1d"},
            }
        ],
    )
    gov = await start_governance(cfg)
    yield gov
    await gov.aclose()


def governed_engine(upstream: Upstream, governance: Governance) -> EmbeddingsEngine:
    return make_engine(upstream, [GovernancePlugin(governance)], governance)


async def test_governance_admits_prices_logs_and_then_refuses_an_exhausted_budget(
    governance: Governance, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged: list[Any] = []
    monkeypatch.setattr(governance, "record", logged.append)
    upstream = Upstream()
    engine = governed_engine(upstream, governance)
    auth = [("authorization", f"Bearer {VK_SECRET}")]

    response = await engine.create(texts("a b c d", model="embed"), metadata=auth)
    # text-embedding-3-small: $0.02 per million input tokens; the fake counts 4 tokens.
    assert response.usage.cost.total_cost == pytest.approx(4 * 0.02 / 1e6)
    assert response.usage.cost.input_tokens_cost == pytest.approx(4 * 0.02 / 1e6)
    (entry,) = logged
    assert entry.request_type == "embedding"
    assert entry.key_id == "vk-embed"
    assert entry.cost == pytest.approx(4 * 0.02 / 1e6)
    assert entry.prompt_tokens == 4
    assert orjson.loads(entry.content_json) == {"input": ["a b c d"]}  # never the vectors

    # The budget (1e-9 USD) is spent now: the next call is refused before any upstream call.
    calls = len(upstream.requests)
    body = await failure(engine.create(texts("again", model="embed"), metadata=auth))
    assert body.status_code == 402
    assert body.type == "budget_exceeded"
    assert len(upstream.requests) == calls
    assert logged[-1].status == 402 and logged[-1].request_type == "embedding"


async def test_governance_refuses_a_missing_or_unknown_key(governance: Governance) -> None:
    upstream = Upstream()
    engine = governed_engine(upstream, governance)
    missing = await failure(engine.create(texts("x", model="embed")))
    unknown = await failure(
        engine.create(texts("x", model="embed"), metadata=[("api-key", "sk-bf-not-a-key-000000000")])
    )
    assert (missing.status_code, missing.type) == (401, "missing_credentials")
    assert (unknown.status_code, unknown.type) == (401, "invalid_credentials")
    assert "sk-bf-not-a-key" not in unknown.error.message
    assert upstream.requests == []


# ---------------------------------------------------------------- embed_texts (the cache's API)


async def test_embed_texts_returns_vectors_in_order_with_cost_and_runs_no_plugins(
    governance: Governance,
) -> None:
    journal = Journal(embeddings=True)
    upstream = Upstream()
    engine = make_engine(upstream, [journal], governance)
    embedded = await engine.embed_texts("embed", ["how do I reset my password", "weather in paris"])

    assert upstream.body()["encoding_format"] == "base64"  # the cheap form to move and unpack
    assert embedded.vectors == [fake.embed("how do I reset my password"), fake.embed("weather in paris")]
    assert (embedded.provider, embedded.model) == ("primary", "text-embedding-3-small")
    assert embedded.usage.prompt_tokens == 9
    assert embedded.cost == pytest.approx(9 * 0.02 / 1e6)
    assert journal.seen == []  # no credential was needed, nothing was logged

    await engine.embed_texts("embed", ["x"], governed=True)
    assert journal.seen[0] == "request:embedding"


async def test_embed_texts_falls_back_and_raises_the_contract_error() -> None:
    upstream = Upstream()
    upstream.script("primary", status(500), status(500))
    engine = make_engine(upstream)
    embedded = await engine.embed_texts("embed", ["x"])
    assert embedded.provider == "backup"
    assert embedded.cost is None  # no price function: not computed

    with pytest.raises(ChatError) as info:
        await engine.embed_texts("claude-first", ["x"])
    assert info.value.body.status_code == 400


# ---------------------------------------------------------------- telemetry


async def test_metrics_tracing_and_the_access_log_see_embeddings(caplog: pytest.LogCaptureFixture) -> None:
    metrics = ProcessMetrics(MetricsConfig())
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = TracingPlugin(tracer_provider, TracingConfig(include_content=True), config().providers)
    upstream = Upstream()
    upstream.script("primary", status(503), status(503))
    plugins: list[Plugin] = [tracing, MetricsPlugin(metrics, OpenStreams()), AccessLogPlugin()]
    with caplog.at_level(logging.INFO, logger="switchyard.access"):
        await make_engine(upstream, plugins).create(texts("a b", model="embed", dimensions=32))

    exposition = metrics.exposition().decode()
    assert (
        'switchyard_requests_total{error_type="",model="text-embedding-3-large",provider="backup",'
        in exposition
    )
    assert 'route="embedding",status_class="2xx"} 1.0' in exposition
    assert 'switchyard_fallbacks_total{provider="primary",reason="transient"} 1.0' in exposition
    assert 'switchyard_in_flight_requests{route="embedding"} 0.0' in exposition

    spans = {span.name: span for span in exporter.get_finished_spans()}
    server = spans["embeddings embed"]
    assert server.attributes is not None
    assert server.attributes["gen_ai.operation.name"] == "embeddings"
    assert server.attributes["gen_ai.embeddings.dimension.count"] == 32
    assert server.attributes["gen_ai.usage.input_tokens"] == 2
    assert "gen_ai.input.messages" not in server.attributes  # no chat messages to show
    attempts = [s for s in exporter.get_finished_spans() if s.name.startswith("embeddings text-embedding")]
    assert len(attempts) == 3
    assert {(s.attributes or {})["gen_ai.operation.name"] for s in attempts} == {"embeddings"}

    (line,) = [r.getMessage() for r in caplog.records if r.name == "switchyard.access"]
    assert line.startswith("embedding embed -> 200")
