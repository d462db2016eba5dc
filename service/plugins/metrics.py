"""Prometheus metrics as a plugin: what every call did, counted once at its end.

The series and their labels are listed in docs/observability.md; names follow the
OpenTelemetry GenAI semantic conventions where one exists (``gen_ai_server_request_duration``,
``gen_ai_server_time_to_first_token``, ``gen_ai_client_token_usage``,
``gen_ai_client_operation_duration``), with the unit in the name, and ``switchyard_*`` elsewhere.

Cost per call is what matters here (the gate is 20 µs of CPU): everything is recorded in
``on_finish`` and ``on_attempt``, never per chunk, into lock-free series
(``switchyard.metrics.CounterVec``/``HistogramVec``) whose children are looked up once per
label combination and kept; queue depths and counts the service already keeps are read at
scrape time, not copied per request.

Cardinality is bounded by design: no request ids or caller strings as labels; model, error
type, key and team values pass through a :class:`~switchyard.metrics.LabelCap`; key and team
labels exist only when ``telemetry.metrics.key_labels`` is on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import Gauge
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.errors import FailureClass, GatewayError
from service.pipeline import EMBEDDING_REQUEST_TYPE, REQUEST_TYPE, STREAM_REQUEST_TYPE, CallContext, Plugin
from service.providers import Prepared
from service.request_log import RequestLogWriter
from service.routing import Target
from switchyard.metrics import (
    CounterChild,
    CounterVec,
    HistogramChild,
    HistogramVec,
    LabelCap,
    OpenStreamsGauge,
    ProcessMetrics,
)
from switchyard.open_streams import OpenStreams
from switchyard.v1 import chat_pb2 as pb

# LLM calls take from tens of milliseconds (a cache, a short answer) to many minutes (reasoning).
LLM_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)
# Switchyard's own share is sub-millisecond when all is well; the top buckets catch trouble.
OVERHEAD_SECONDS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
ROUTES = (REQUEST_TYPE, STREAM_REQUEST_TYPE, EMBEDDING_REQUEST_TYPE)
_STATUS_CLASS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
SUCCESS = "success"


@dataclass(slots=True)
class _Call:
    """What the plugin notes about one call while it runs."""

    attempts: int = 0
    upstream_s: float = 0.0  # time spent in upstream attempts (for a stream: to its first content)
    last_target: Target | None = None
    last_failure: FailureClass | None = None


@dataclass(slots=True, frozen=True)
class _Answered:
    """Children for one (provider, model[, key, team]): tokens by type, and cost."""

    input: HistogramChild
    output: HistogramChild
    cached: HistogramChild
    reasoning: HistogramChild
    cost: CounterChild


class MetricsPlugin(Plugin):
    name = "metrics"
    embeddings = True  # embeddings calls are counted under route "embedding"

    def __init__(
        self,
        metrics: ProcessMetrics,
        streams: OpenStreams,
        request_log: RequestLogWriter | None = None,
    ) -> None:
        config = metrics.config
        registry = metrics.registry
        self._key_labels = config.key_labels
        who = ("key", "team") if config.key_labels else ()
        self._model = LabelCap(config.max_models)
        self._error = LabelCap(config.max_models)
        self._key = LabelCap(config.max_keys)
        self._team = LabelCap(config.max_keys)

        self._requests = CounterVec(
            "switchyard_requests",
            "Chat requests by route, provider, served model, status class and error type.",
            ("route", "provider", "model", "status_class", "error_type", *who),
            registry=registry,
        )
        self._duration = HistogramVec(
            "gen_ai_server_request_duration_seconds",
            "Time from a request's arrival at the service to its last byte (GenAI semconv).",
            ("route", "provider", "model", "status_class"),
            buckets=LLM_SECONDS,
            registry=registry,
        )
        self._ttft = HistogramVec(
            "gen_ai_server_time_to_first_token_seconds",
            "Streams: time from the request's arrival to its first content chunk (GenAI semconv).",
            ("provider", "model"),
            buckets=LLM_SECONDS,
            registry=registry,
        )
        added = HistogramVec(
            "switchyard_added_latency_seconds",
            "Switchyard's own time in a call: its time to answer (to the first chunk, for a "
            "stream) minus the upstream's; calls answered by their first attempt.",
            ("route",),
            buckets=OVERHEAD_SECONDS,
            registry=registry,
        )
        self._added = {route: added.child(route) for route in ROUTES}
        self._tokens = HistogramVec(
            "gen_ai_client_token_usage",
            "Tokens per call by type: input, output, cached_input, reasoning (GenAI semconv; "
            "_sum is the total).",
            ("provider", "model", "token_type", *who),
            buckets=TOKENS,
            registry=registry,
        )
        self._cost = CounterVec(
            "switchyard_cost_usd",
            "Spend in USD from the price table (null-cost calls are in switchyard_unpriced_calls).",
            ("provider", "model", *who),
            registry=registry,
        )
        self._attempts = CounterVec(
            "switchyard_upstream_attempts",
            "Upstream attempts by outcome: success, or the failure class.",
            ("provider", "model", "outcome"),
            registry=registry,
        )
        self._attempt_duration = HistogramVec(
            "gen_ai_client_operation_duration_seconds",
            "Each upstream attempt's duration (for a stream: to its first content; GenAI semconv).",
            ("provider", "model", "outcome"),
            buckets=LLM_SECONDS,
            registry=registry,
        )
        self._retries = CounterVec(
            "switchyard_retries",
            "Another attempt on the same target (the next key, or after a backoff), by reason.",
            ("provider", "reason"),
            registry=registry,
        )
        self._fallbacks = CounterVec(
            "switchyard_fallbacks",
            "Moves from a failed target to the next one in the route plan, by reason.",
            ("provider", "reason"),
            registry=registry,
        )
        self._refusals = CounterVec(
            "switchyard_refusals",
            "Governance refusals by HTTP status (401, 402, 403, 429) and error type.",
            ("status", "type"),
            registry=registry,
        )
        self._unpriced = CounterVec(
            "switchyard_unpriced_calls",
            "Calls whose model has no price (their cost is null).",
            ("model",),
            registry=registry,
        )
        in_flight = Gauge(
            "switchyard_in_flight_requests",
            "Requests in progress (chat and embeddings), by route.",
            ("route",),
            registry=registry,
        )
        self._in_flight = dict.fromkeys(ROUTES, 0)
        for route in ROUTES:
            in_flight.labels(route).set_function(_reader(self._in_flight, route))
        registry.register(OpenStreamsGauge(streams))
        registry.register(_RequestLogGauges(request_log))
        # Children by label values, looked up with one dict access per call.
        self._series: dict[tuple[str, ...], tuple[CounterChild, HistogramChild]] = {}
        self._answered: dict[tuple[str, ...], _Answered] = {}
        self._attempt_series: dict[tuple[str, str, str], tuple[CounterChild, HistogramChild]] = {}

    # -- hooks

    async def on_request(self, ctx: CallContext) -> pb.ChatCompletionResponse | None:
        ctx.slots[self.slot] = _Call()
        self._in_flight[ctx.request_type] += 1
        return None

    async def before_target(self, ctx: CallContext, target: Target, prepared: Prepared) -> None:
        call: _Call = ctx.slots[self.slot]
        if call.last_failure is not None and call.last_target is not None:
            self._fallbacks.child(call.last_target.provider, call.last_failure.value).inc()
            call.last_failure = None

    def start_attempt(self, ctx: CallContext, target: Target, key_index: int) -> None:
        call: _Call = ctx.slots[self.slot]
        if call.last_failure is not None and call.last_target is target:
            self._retries.child(target.provider, call.last_failure.value).inc()
            call.last_failure = None

    def on_attempt(
        self,
        ctx: CallContext,
        target: Target,
        key_index: int,
        error: GatewayError | None,
        elapsed_s: float,
    ) -> None:
        call: _Call = ctx.slots[self.slot]
        call.attempts += 1
        call.upstream_s += elapsed_s
        call.last_target = target
        outcome = SUCCESS
        if error is not None:
            call.last_failure = error.failure
            outcome = error.failure.value
        key = (target.provider, self._model(target.model), outcome)
        series = self._attempt_series.get(key)
        if series is None:
            series = self._attempt_series[key] = (
                self._attempts.child(*key),
                self._attempt_duration.child(*key),
            )
        series[0].inc()
        series[1].observe(elapsed_s)

    async def on_finish(self, ctx: CallContext) -> None:
        now = time.perf_counter()
        call: _Call = ctx.slots[self.slot]
        route = ctx.request_type
        self._in_flight[route] -= 1
        target = ctx.target or call.last_target
        if target is not None:
            provider, model = target.provider, self._model(target.model)
        elif ctx.cache is not None and ctx.cache.provider:  # a cache hit: who made the answer
            provider, model = ctx.cache.provider, self._model(ctx.cache.model)
        else:
            provider, model = "", ""
        status_class = _STATUS_CLASS.get(ctx.status // 100, "5xx")
        who: tuple[str, ...] = ()
        if self._key_labels:
            who = (self._key(ctx.key_id or ""), self._team(ctx.team_id or ""))
        error_type = self._error(ctx.error_type) if ctx.error_type else ""
        key = (route, provider, model, status_class, error_type, *who)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                self._requests.child(*key),
                self._duration.child(route, provider, model, status_class),
            )
        series[0].inc()
        series[1].observe(now - ctx.started)
        if ctx.refused:
            self._refusals.child(str(ctx.status), error_type).inc()
        if ctx.target is None:
            return
        answered_at = ctx.first_chunk_at if ctx.stream else now
        if ctx.stream and answered_at is not None:
            self._ttft.child(provider, model).observe(answered_at - ctx.started)
        if call.attempts == 1 and answered_at is not None:
            self._added[route].observe(max(0.0, answered_at - ctx.started - call.upstream_s))
        usage = ctx.usage
        if usage is not None:
            self._count_usage(usage, ctx.cost, (provider, model, *who), model)

    def _count_usage(self, usage: pb.Usage, cost: float | None, key: tuple[str, ...], model: str) -> None:
        answered = self._answered.get(key)
        if answered is None:
            provider, _, *who = key
            tokens = self._tokens.child
            answered = self._answered[key] = _Answered(
                tokens(provider, model, "input", *who),
                tokens(provider, model, "output", *who),
                tokens(provider, model, "cached_input", *who),
                tokens(provider, model, "reasoning", *who),
                self._cost.child(*key),
            )
        answered.input.observe(usage.prompt_tokens)
        answered.output.observe(usage.completion_tokens)
        if usage.HasField("prompt_tokens_details"):
            details = usage.prompt_tokens_details
            cached = details.cached_tokens or details.cached_read_tokens
            if cached:
                answered.cached.observe(cached)
        if usage.HasField("completion_tokens_details"):
            reasoning = usage.completion_tokens_details.reasoning_tokens
            if reasoning:
                answered.reasoning.observe(reasoning)
        if cost is not None:
            answered.cost.inc(cost)
        else:
            self._unpriced.child(model).inc()


def _reader(counts: dict[str, int], route: str) -> Callable[[], float]:
    return lambda: counts[route]


class _RequestLogGauges(Collector):
    """The request-log writer's own counts, read at scrape time rather than copied per request."""

    def __init__(self, request_log: RequestLogWriter | None) -> None:
        self._log = request_log

    def collect(self) -> Iterable[Metric]:
        writer = self._log
        yield GaugeMetricFamily(
            "switchyard_request_log_queue_depth",
            "Request-log entries waiting to be written.",
            value=writer.queued if writer else 0,
        )
        yield CounterMetricFamily(
            "switchyard_request_log_writes",
            "Request-log entries written to the store.",
            value=writer.written if writer else 0,
        )
        yield CounterMetricFamily(
            "switchyard_request_log_drops",
            "Request-log entries dropped (queue full, or the store failed).",
            value=writer.dropped if writer else 0,
        )
