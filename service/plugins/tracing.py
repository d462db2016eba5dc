"""OpenTelemetry traces as a plugin, after the GenAI semantic conventions.

One span per request, ``chat {model}`` (``embeddings {model}`` for an embeddings call; kind
SERVER), whose parent is the caller's W3C ``traceparent`` when one came (REST header or gRPC
metadata; the gateway forwards it), and one child per upstream attempt (kind CLIENT): the
provider, the key's *name*, the retry number, the status. The attempt's own trace context is
sent upstream as ``traceparent`` (``service.providers.upstream_headers``), so a provider that
traces joins the same trace.

Governance is recorded as attributes (the key and team admitted) and a refusal as a span
event (``switchyard.governance.refused``); prompts and completions only with
``telemetry.tracing.include_content``. Nothing here reads a credential: the metadata is
read for ``traceparent``/``tracestate`` only.

The SDK is used without its global provider (``TracerProvider`` is built from config and
passed in), so several services in one process, as in the tests, keep their own exporters.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from service.errors import GatewayError
from service.pipeline import CallContext, Plugin
from service.providers import upstream_headers
from service.providers.canonical import stop_sequences
from service.routing import Target
from switchyard import codec
from switchyard.config import ProviderConfig, TracingConfig
from switchyard.logs import current_trace_id
from switchyard.v1 import chat_pb2 as pb
from switchyard.v1 import embeddings_pb2 as epb

log = logging.getLogger("switchyard.service")

# gen_ai.provider.name values from the semantic conventions, by provider kind.
_GENAI_PROVIDER = {
    "azure": "azure.ai.openai",
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "perplexity": "perplexity",
    "xai": "x_ai",
}
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = frozenset({"traceparent", "tracestate"})


def tracing_endpoint(config: TracingConfig, env: Mapping[str, str] = os.environ) -> str:
    """The configured OTLP endpoint, or the standard variables'; "" means tracing is off."""
    return (
        config.otlp_endpoint
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    )


def build_tracer_provider(
    config: TracingConfig, env: Mapping[str, str] = os.environ
) -> TracerProvider | None:
    """A provider exporting over OTLP in batches, or None when no endpoint is configured."""
    if not tracing_endpoint(config, env):
        return None
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    if config.otlp_endpoint or protocol not in ("grpc", "http/protobuf"):
        protocol = config.protocol
    exporter = _exporter(protocol, config.otlp_endpoint)
    provider = TracerProvider(
        resource=Resource.create({"service.name": config.service_name}),
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporter(protocol: str, endpoint: str) -> SpanExporter:
    # With no endpoint given, each exporter reads the OTEL_EXPORTER_OTLP_* variables itself.
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        if not endpoint:
            return GrpcExporter()
        return GrpcExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    if not endpoint:
        return HttpExporter()
    # The configured endpoint is the collector's base address, as OTEL_EXPORTER_OTLP_ENDPOINT is.
    if not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return HttpExporter(endpoint=endpoint)


@dataclass(slots=True)
class _Trace:
    span: Span
    context: Context | None  # the span's, as the parent of the attempts (None: not recording)
    tracestate: str = ""  # the caller's, passed on upstream with each attempt's traceparent
    attempt: Span | None = None  # the attempt in progress (a stream's stays open to its end)
    retries: dict[str, int] = field(default_factory=dict)  # attempts so far, by target label
    finish_reasons: list[str] = field(default_factory=list)
    response: tuple[str, str] | None = None  # (id, model) of the answer
    completion: list[str] | None = None
    recording: bool = True
    operation: str = "chat"  # gen_ai.operation.name: "chat" or "embeddings"


def _send_upstream(span: Span, tracestate: str) -> None:
    """The W3C traceparent of ``span`` for the upstream request, formatted directly (the
    propagator's ``inject`` would build a context first)."""
    sc = span.get_span_context()
    if sc.is_valid:
        headers = {"traceparent": f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{sc.trace_flags:02x}"}
        if tracestate:
            headers["tracestate"] = tracestate
        upstream_headers.set(headers)


class TracingPlugin(Plugin):
    """Spans cost CPU in the SDK per span and per attribute (start, end, and the OTLP
    encoding on the export thread, about 3 µs an attribute), so attributes are given in one
    call where possible and only those the conventions ask for, or an operator needs, are set."""

    name = "tracing"
    embeddings = True  # an embeddings call is an `embeddings {model}` span, with its attempts

    def __init__(
        self, provider: TracerProvider, config: TracingConfig, providers: Mapping[str, ProviderConfig]
    ) -> None:
        self._tracer: Tracer = provider.get_tracer("switchyard")
        self._content = config.include_content
        kinds = {name: p.kind for name, p in providers.items()}
        self._genai_provider = {name: _GENAI_PROVIDER.get(kind, kind) for name, kind in kinds.items()}
        self._keys = {
            name: tuple(k.name or f"#{i}" for i, k in enumerate(p.keys)) for name, p in providers.items()
        }

    async def on_request(self, ctx: CallContext) -> pb.ChatCompletionResponse | None:
        parent: Context | None = None
        tracestate = ""
        for name, _ in ctx.metadata:
            if name == "traceparent" or name == "tracestate":
                carrier = {n: str(v) for n, v in ctx.metadata if n in _TRACE_HEADERS}
                parent = _PROPAGATOR.extract(carrier)
                tracestate = carrier.get("tracestate", "")
                break
        request = ctx.request
        model = ctx.model_requested
        embedding = isinstance(request, epb.EmbeddingsRequest)
        operation = "embeddings" if embedding else "chat"
        span = self._tracer.start_span(f"{operation} {model}", context=parent, kind=SpanKind.SERVER)
        span_context = span.get_span_context()
        if span_context.is_valid:
            current_trace_id.set(format(span_context.trace_id, "032x"))
        if not span.is_recording():
            # Not sampled: no attributes and no attempt spans, only the decision passed on.
            ctx.slots[self.slot] = _Trace(span, None, tracestate, recording=False)
            return None
        if embedding:
            attributes = _embeddings_attributes(request, model)
        else:
            attributes = _request_attributes(request, model)
        attributes["switchyard.request_id"] = ctx.request_id
        if self._content and not embedding:
            attributes["gen_ai.input.messages"] = _messages_json(request)
        span.set_attributes(attributes)
        ctx.slots[self.slot] = _Trace(
            span,
            set_span_in_context(span),
            tracestate,
            completion=[] if self._content and not embedding else None,
            operation=operation,
        )
        return None

    def start_attempt(self, ctx: CallContext, target: Target, key_index: int) -> None:
        trace: _Trace = ctx.slots[self.slot]
        if not trace.recording:
            _send_upstream(trace.span, trace.tracestate)
            return
        retry = trace.retries.get(target.label, 0)
        trace.retries[target.label] = retry + 1
        keys = self._keys.get(target.provider, ())
        attempt = trace.attempt = self._tracer.start_span(
            f"{trace.operation} {target.model}",
            context=trace.context,
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": trace.operation,
                "gen_ai.provider.name": self._genai_provider.get(target.provider, target.provider),
                "gen_ai.request.model": target.model,
                "switchyard.key.name": keys[key_index] if key_index < len(keys) else f"#{key_index}",
                "switchyard.retry": retry,
            },
        )
        _send_upstream(attempt, trace.tracestate)

    def on_attempt(
        self,
        ctx: CallContext,
        target: Target,
        key_index: int,
        error: GatewayError | None,
        elapsed_s: float,
    ) -> None:
        trace: _Trace = ctx.slots[self.slot]
        attempt = trace.attempt
        upstream_headers.set(None)
        if attempt is None:
            return
        if error is None:
            attempt.set_attribute("http.response.status_code", 200)
            if ctx.stream:
                return  # it stays open until the stream ends (on_finish)
        else:
            attempt.set_attributes(
                {
                    "http.response.status_code": error.status,
                    "error.type": error.type,
                    "switchyard.failure_class": error.failure.value,
                }
            )
            attempt.set_status(Status(StatusCode.ERROR, error.type))
        attempt.end()
        trace.attempt = None

    def on_response(self, ctx: CallContext, response: pb.ChatCompletionResponse) -> None:
        trace: _Trace = ctx.slots[self.slot]
        if not trace.recording:
            return
        for choice in response.choices:
            if choice.finish_reason:
                trace.finish_reasons.append(choice.finish_reason)
            if trace.completion is not None:
                trace.completion.append(choice.message.text)
        trace.response = (response.id, response.model)

    def on_chunk(self, ctx: CallContext, chunk: pb.ChatCompletionChunk) -> None:
        trace: _Trace = ctx.slots[self.slot]
        if not trace.recording:
            return
        if trace.response is None and chunk.model:
            trace.response = (chunk.id, chunk.model)
        for choice in chunk.choices:
            if choice.finish_reason:
                trace.finish_reasons.append(choice.finish_reason)
            if trace.completion is not None:
                trace.completion.append(choice.delta.text)

    async def on_finish(self, ctx: CallContext) -> None:
        trace: _Trace = ctx.slots[self.slot]
        span = trace.span
        if not trace.recording:
            span.end()
            return
        attributes: dict[str, Any] = {}
        target = ctx.target
        if target is not None:
            attributes["gen_ai.provider.name"] = self._genai_provider.get(target.provider, target.provider)
            attributes["switchyard.provider"] = target.provider
        if trace.response is not None:
            attributes["gen_ai.response.id"], attributes["gen_ai.response.model"] = trace.response
        usage = ctx.usage
        if usage is not None:
            attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
        if ctx.cost is not None:
            attributes["switchyard.cost_usd"] = ctx.cost
        if trace.finish_reasons:
            attributes["gen_ai.response.finish_reasons"] = trace.finish_reasons
        if trace.completion is not None:
            attributes["gen_ai.output.messages"] = _completion_json(trace.completion)
        # Governance: who was admitted, as attributes; a refusal, as an event.
        if ctx.key_id:
            attributes["switchyard.key_id"] = ctx.key_id
        if ctx.team_id:
            attributes["switchyard.team_id"] = ctx.team_id
        failed = ctx.status >= 400
        if failed:
            error_type = ctx.error_type or str(ctx.status)
            attributes["error.type"] = error_type
            attributes["http.response.status_code"] = ctx.status
            if ctx.refused:
                span.add_event(
                    "switchyard.governance.refused",
                    {"http.response.status_code": ctx.status, "error.type": error_type},
                )
            span.set_status(Status(StatusCode.ERROR, error_type))
        span.set_attributes(attributes)
        attempt = trace.attempt
        if attempt is not None:  # a stream's winning attempt: it ends with the stream
            if failed:
                attempt.set_attribute("error.type", ctx.error_type or str(ctx.status))
                attempt.set_status(Status(StatusCode.ERROR, ctx.error_type or ""))
            attempt.end()
        span.end()


# Request fields -> GenAI attributes, set when the caller set the field.
_REQUEST_ATTRIBUTES = (
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
    ("seed", "gen_ai.request.seed"),
)


def _request_attributes(request: pb.ChatCompletionRequest, model: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model}
    for field_name, attribute in _REQUEST_ATTRIBUTES:
        if request.HasField(field_name):
            attributes[attribute] = getattr(request, field_name)
    if request.HasField("max_completion_tokens"):
        attributes["gen_ai.request.max_tokens"] = request.max_completion_tokens
    elif request.HasField("max_tokens"):
        attributes["gen_ai.request.max_tokens"] = request.max_tokens
    if request.HasField("n") and request.n != 1:
        attributes["gen_ai.request.choice.count"] = request.n
    if request.WhichOneof("stop"):
        attributes["gen_ai.request.stop_sequences"] = stop_sequences(request)
    return attributes


def _embeddings_attributes(request: epb.EmbeddingsRequest, model: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {"gen_ai.operation.name": "embeddings", "gen_ai.request.model": model}
    if request.HasField("encoding_format"):
        attributes["gen_ai.request.encoding_formats"] = [request.encoding_format]
    if request.HasField("dimensions"):
        attributes["gen_ai.embeddings.dimension.count"] = request.dimensions
    return attributes


def _messages_json(request: pb.ChatCompletionRequest) -> str:
    return orjson.dumps(codec.request_to_dict(request).get("messages", [])).decode()


def _completion_json(parts: list[str]) -> str:
    return orjson.dumps([{"role": "assistant", "content": "".join(parts)}]).decode()
