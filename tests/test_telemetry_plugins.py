"""The telemetry plugins in-process: what the metrics count, the span tree and its attributes,
the access line and the log formats. An engine on ``httpx.MockTransport``; no sockets."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from service.engine import ChatError
from service.governance import refusal
from service.pipeline import CallContext, Plugin
from service.plugins import AccessLogPlugin, MetricsPlugin, TracingPlugin
from switchyard.config import MetricsConfig, TracingConfig, parse_config
from switchyard.logs import JsonFormatter, TextFormatter, current_trace_id
from switchyard.metrics import CounterVec, HistogramVec, LabelCap, ProcessMetrics
from switchyard.open_streams import OpenStreams
from switchyard.request_id import current_request_id
from switchyard.v1 import chat_pb2 as pb
from tests.inprocess import Upstream, delta, engine, engine_config, ok, request, sse, status, usage


def samples(metrics: ProcessMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(metrics: ProcessMetrics, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples(metrics).items() if n == name and wanted <= ls)


class Refuser(Plugin):
    """Governance's part in these tests: a 429 refusal for calls whose user is "flood"."""

    async def on_request(self, ctx: CallContext) -> pb.ChatCompletionResponse | None:
        ctx.key_id, ctx.team_id = "vk-1", "team-1"
        if ctx.request.user == "flood":
            raise refusal(429, "rate_limited", "too many requests")
        return None


def metrics_plugin(**config: Any) -> tuple[ProcessMetrics, MetricsPlugin]:
    metrics = ProcessMetrics(MetricsConfig(**config))
    return metrics, MetricsPlugin(metrics, OpenStreams())


# ---------------------------------------------------------------- metrics


async def test_retries_fallbacks_attempts_and_the_answer_are_counted() -> None:
    upstream = Upstream()
    upstream.replies["primary"] = [status(503), status(503)]
    upstream.replies["backup"] = [ok()]
    metrics, plugin = metrics_plugin()
    sy = engine(upstream, [plugin, Refuser()])
    await sy.create(request(fallbacks=["backup/m2"]))
    assert value(metrics, "switchyard_upstream_attempts_total", provider="primary", outcome="transient") == 2
    assert value(metrics, "switchyard_retries_total", provider="primary", reason="transient") == 1
    assert value(metrics, "switchyard_fallbacks_total", provider="primary", reason="transient") == 1
    assert value(metrics, "switchyard_upstream_attempts_total", provider="backup", outcome="success") == 1
    served = {"provider": "backup", "model": "m2", "status_class": "2xx", "error_type": ""}
    assert value(metrics, "switchyard_requests_total", route="chat_completion", **served) == 1
    assert value(metrics, "gen_ai_client_token_usage_sum", token_type="input", provider="backup") == 2
    # Three attempts: added latency is measured only on calls their first attempt answered.
    assert value(metrics, "switchyard_added_latency_seconds_count") == 0
    assert value(metrics, "switchyard_unpriced_calls_total", model="m2") == 1  # no governance: no price
    assert value(metrics, "switchyard_in_flight_requests", route="chat_completion") == 0


async def test_a_refusal_is_counted_by_status_and_type_and_a_stream_by_its_first_token() -> None:
    upstream = Upstream()
    upstream.replies["primary"] = [
        sse(delta("", role="assistant"), delta("hi"), delta(finish="stop"), usage())
    ]
    metrics, plugin = metrics_plugin()
    sy = engine(upstream, [plugin, Refuser()])
    with pytest.raises(ChatError):
        await sy.create(request(user="flood"))
    assert value(metrics, "switchyard_refusals_total", status="429", type="rate_limited") == 1
    refused = {"status_class": "4xx", "error_type": "rate_limited", "provider": ""}
    assert value(metrics, "switchyard_requests_total", **refused) == 1
    chunks = [c async for c in sy.create_stream(request(stream=True))]
    assert chunks
    assert value(metrics, "gen_ai_server_time_to_first_token_seconds_count", provider="primary") == 1
    assert value(metrics, "switchyard_added_latency_seconds_count", route="chat_completion_stream") == 1
    assert (
        value(metrics, "switchyard_requests_total", route="chat_completion_stream", status_class="2xx") == 1
    )


async def test_caller_strings_cannot_grow_the_series_without_end() -> None:
    upstream = Upstream()
    upstream.replies["primary"] = [ok()]
    metrics, plugin = metrics_plugin(max_models=2, key_labels=True, max_keys=1)
    sy = engine(upstream, [plugin, Refuser()])
    for model in ("a", "b", "c", "d"):
        await sy.create(request(model=model))
    models = {
        dict(labels)["model"] for name, labels in samples(metrics) if name == "switchyard_requests_total"
    }
    assert models == {"a", "b", "other"}
    keys = {dict(labels)["key"] for name, labels in samples(metrics) if name == "switchyard_requests_total"}
    assert keys == {"vk-1"}


def test_label_cap_keeps_the_first_values() -> None:
    cap = LabelCap(2)
    assert [cap(v) for v in ("x", "y", "z", "x", "w")] == ["x", "y", "other", "x", "other"]


def test_series_expose_inclusive_buckets_and_static_labels() -> None:
    metrics = ProcessMetrics(MetricsConfig(labels={"environment": "prod"}))
    histogram = HistogramVec("t_seconds", "doc", ("route",), (0.1, 1.0), metrics.registry)
    counter = CounterVec("t_calls", "doc", ("route",), metrics.registry)
    child = histogram.child("r")
    for observed in (0.1, 0.5, 2.0):
        child.observe(observed)
    counter.child("r").inc(3)
    found = samples(metrics)
    labels = {"route": "r", "environment": "prod"}

    def at(name: str, **extra: str) -> float:
        return found[(name, frozenset({**labels, **extra}.items()))]

    assert at("t_seconds_bucket", le="0.1") == 1  # le is inclusive
    assert at("t_seconds_bucket", le="1.0") == 2
    assert at("t_seconds_bucket", le="+Inf") == 3
    assert at("t_seconds_count") == 3 and at("t_seconds_sum") == pytest.approx(2.6)
    assert at("t_calls_total") == 3
    assert all(("environment", "prod") in ls for _, ls in found)  # process collectors included
    assert any(name == "process_cpu_seconds_total" for name, _ in found)


def test_families_are_exposed_before_anything_is_counted() -> None:
    metrics, _plugin = metrics_plugin()
    text = metrics.exposition().decode()
    for family in (
        "switchyard_requests_total counter",
        "gen_ai_server_request_duration_seconds histogram",
        "switchyard_refusals_total counter",
        "switchyard_in_flight_requests gauge",
    ):
        assert f"# TYPE {family}\n" in text


# ---------------------------------------------------------------- tracing


def tracing(include_content: bool = False) -> tuple[InMemorySpanExporter, TracingPlugin]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = TracingConfig(include_content=include_content)
    return exporter, TracingPlugin(provider, config, engine_config().providers)


async def test_a_stream_span_tree_with_content_when_asked_for() -> None:
    upstream = Upstream()
    seen: list[httpx.Request] = []

    def answer(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return sse(delta("", role="assistant"), delta("Hel"), delta("lo", "stop"), usage())(req)

    upstream.replies["primary"] = [status(500), answer]
    exporter, plugin = tracing(include_content=True)
    sy = engine(upstream, [plugin, Refuser()])
    metadata = [
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("tracestate", "k=v"),
    ]
    chunks = [c async for c in sy.create_stream(request(stream=True), metadata=metadata)]
    assert chunks
    spans = exporter.get_finished_spans()
    (chat,) = [s for s in spans if s.kind is SpanKind.SERVER]
    failed, won = sorted((s for s in spans if s.kind is SpanKind.CLIENT), key=lambda s: s.start_time or 0)
    assert f"{chat.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert chat.parent is not None and f"{chat.parent.span_id:016x}" == "b7ad6b7169203331"
    assert failed.parent == chat.context and won.parent == chat.context
    assert failed.status.status_code is StatusCode.ERROR and failed.attributes["switchyard.retry"] == 0
    assert won.attributes["switchyard.retry"] == 1 and won.attributes["switchyard.key.name"] == "key0"
    # A stream's winning attempt lasts until the stream is over.
    assert won.end_time is not None and chat.end_time is not None and won.end_time <= chat.end_time
    attributes = chat.attributes or {}
    assert orjson.loads(str(attributes["gen_ai.input.messages"])) == [{"role": "user", "content": "hi"}]
    assert orjson.loads(str(attributes["gen_ai.output.messages"])) == [
        {"role": "assistant", "content": "Hello"}
    ]
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["switchyard.key_id"] == "vk-1"
    sent = seen[0].headers
    assert sent["traceparent"] == f"00-{won.context.trace_id:032x}-{won.context.span_id:016x}-01"
    assert sent["tracestate"] == "k=v"


async def test_no_content_by_default_and_a_refusal_is_an_event() -> None:
    upstream = Upstream()
    upstream.replies["primary"] = [ok()]
    exporter, plugin = tracing()
    sy = engine(upstream, [plugin, Refuser()])
    await sy.create(request())
    with pytest.raises(ChatError):
        await sy.create(request(user="flood"))
    answered, refused = exporter.get_finished_spans()[-1], exporter.get_finished_spans()[-2]
    if answered.status.status_code is StatusCode.ERROR:
        answered, refused = refused, answered
    assert "gen_ai.input.messages" not in (answered.attributes or {})
    assert "gen_ai.output.messages" not in (answered.attributes or {})
    (event,) = refused.events
    assert event.name == "switchyard.governance.refused"
    assert dict(event.attributes or {}) == {"http.response.status_code": 429, "error.type": "rate_limited"}


async def test_an_unsampled_call_records_nothing_but_passes_the_decision_on() -> None:
    upstream = Upstream()
    seen: list[httpx.Request] = []

    def answer(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return ok()(req)

    upstream.replies["primary"] = [answer]
    exporter, plugin = tracing()
    sy = engine(upstream, [plugin, Refuser()])
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"  # the caller did not sample
    await sy.create(request(), metadata=[("traceparent", caller)])
    assert exporter.get_finished_spans() == ()
    trace_id, span_id, flags = seen[0].headers["traceparent"].split("-")[1:]
    assert trace_id == "0af7651916cd43dd8448eb211c80319c" and flags == "00" and span_id != "b7ad6b7169203331"


# ---------------------------------------------------------------- logs


def record(message: str = "hello", **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("switchyard.access", logging.INFO, __file__, 1, message, (), None)
    rec.__dict__.update(extra)
    return rec


def test_json_lines_carry_the_request_and_trace_ids_and_the_fields() -> None:
    request_token = current_request_id.set("req-42")
    trace_token = current_trace_id.set("ab" * 16)
    try:
        line = JsonFormatter().format(record(status=200, key_id="vk-1", provider=None))
    finally:
        current_request_id.reset(request_token)
        current_trace_id.reset(trace_token)
    entry = orjson.loads(line)
    assert entry["message"] == "hello" and entry["level"] == "info" and entry["logger"] == "switchyard.access"
    assert entry["request_id"] == "req-42" and entry["trace_id"] == "ab" * 16
    assert entry["status"] == 200 and entry["key_id"] == "vk-1"
    assert entry["time"].endswith("Z") and "T" in entry["time"]


def test_text_lines_stay_readable() -> None:
    line = TextFormatter().format(record("chat_completion m -> 200", status=200, provider=None, latency_ms=3))
    assert line.endswith("switchyard.access: chat_completion m -> 200 status=200 latency_ms=3")


async def test_the_access_line_is_one_per_call(caplog: pytest.LogCaptureFixture) -> None:
    upstream = Upstream()
    upstream.replies["primary"] = [ok()]
    sy = engine(upstream, [AccessLogPlugin(), Refuser()])
    with caplog.at_level(logging.INFO, logger="switchyard.access"):
        await sy.create(request())
    (line,) = [r for r in caplog.records if r.name == "switchyard.access"]
    fields = line.__dict__["fields"]
    assert fields["status"] == 200 and fields["provider"] == "primary" and fields["key_id"] == "vk-1"
    assert fields["prompt_tokens"] == 2 and fields["attempts"] == 1


def test_telemetry_config_errors_name_the_key() -> None:
    for raw, key in (
        ({"telemetry": {"metrics": {"labels": {"model": "x"}}}}, "telemetry.metrics.labels.model"),
        ({"telemetry": {"metrics": {"labels": {"bad-name": "x"}}}}, "telemetry.metrics.labels.bad-name"),
        ({"telemetry": {"tracing": {"protocol": "thrift"}}}, "telemetry.tracing.protocol"),
        ({"telemetry": {"tracing": {"sample_ratio": 2}}}, "telemetry.tracing.sample_ratio"),
        ({"telemetry": {"metrics_port": 70000}}, "telemetry.metrics_port"),
        ({"logging": {"format": "xml"}}, "logging.format"),
    ):
        with pytest.raises(ValueError, match=f"config error at {key.replace('.', '[.]')}"):
            parse_config(raw, env={})
