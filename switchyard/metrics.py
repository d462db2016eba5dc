"""One Prometheus registry per process, and its text exposition (``GET /metrics``).

Not prometheus-client's global registry: each process (``serve``, ``service``, ``gateway``)
builds one :class:`ProcessMetrics` from its config and passes it to what records into it,
so tests can run several in one interpreter. The process collectors (RSS, CPU, open fds,
GC) come from the client library.

Configured static labels (``telemetry.metrics.labels``: environment, region…) are added to
every series at scrape time, the process collectors' included, so they cost nothing per
request and cannot be forgotten on a new metric.
"""

from __future__ import annotations

import asyncio
import contextlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from switchyard.config import MetricsConfig

__all__ = [
    "CONTENT_TYPE",
    "CircuitStateGauge",
    "CounterVec",
    "HistogramVec",
    "LabelCap",
    "OpenStreamsGauge",
    "ProcessMetrics",
    "serve_metrics",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ProcessMetrics:
    """The registry the process's metrics are defined on, and its exposition."""

    def __init__(self, config: MetricsConfig) -> None:
        self.config = config
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._exposed: CollectorRegistry | _StaticLabels = self.registry
        if config.labels:
            self._exposed = _StaticLabels(self.registry, config.labels)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self._exposed)  # type: ignore[arg-type]


# ---------------------------------------------------------------- per-call series
#
# prometheus-client's Counter and Histogram take a lock on every increment (a histogram
# observation is two increments): about 1 µs each, some fifteen per call, which alone would
# spend the 20 µs a call may cost. A call's series are only ever updated and scraped on the
# event loop's thread, so the vectors below keep plain numbers, updated without a lock, and
# hand them to prometheus-client as metric families at scrape time (its exposition, its
# format). Children are made once per label combination and kept by the caller.


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramChild:
    __slots__ = ("_bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le="bound").
        self.counts[bisect_left(self._bounds, value)] += 1
        self.count += 1
        self.sum += value


class CounterVec(Collector):
    """A counter with labels; ``name`` without ``_total`` (the exposition adds it)."""

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation, self.labels = name, documentation, tuple(labels)
        self._children: dict[tuple[str, ...], CounterChild] = {}
        registry.register(self)

    def child(self, *values: str) -> CounterChild:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = CounterChild()
        return child

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        yield family

    def describe(self) -> Iterable[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labels)


class HistogramVec(Collector):
    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name, self.documentation, self.labels = name, documentation, tuple(labels)
        self._bounds = tuple(float(b) for b in buckets)
        self._le = [floatToGoString(b) for b in self._bounds] + ["+Inf"]
        self._children: dict[tuple[str, ...], HistogramChild] = {}
        registry.register(self)

    def child(self, *values: str) -> HistogramChild:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = HistogramChild(self._bounds)
        return child

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, child in list(self._children.items()):
            cumulative, buckets = 0, []
            for le, count in zip(self._le, child.counts, strict=True):
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric(values, buckets, child.sum)
        yield family

    def describe(self) -> Iterable[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labels)


class _StaticLabels(Collector):
    """The registry's families, each sample with the static labels added."""

    def __init__(self, registry: CollectorRegistry, labels: Mapping[str, str]) -> None:
        self._registry = registry
        self._labels = dict(labels)

    def collect(self) -> Iterable[Metric]:
        static = self._labels
        for family in self._registry.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [
                Sample(s.name, {**s.labels, **static}, s.value, s.timestamp, s.exemplar, s.native_histogram)
                for s in family.samples
            ]
            yield labelled


class LabelCap:
    """Bounds a label's distinct values: the first ``limit`` seen are kept, later ones are
    "other". The values come from callers and upstreams (models, key ids, error types), so
    without a cap one caller could create series without end."""

    __slots__ = ("_limit", "_seen")

    OTHER = "other"

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        seen = self._seen
        if value in seen:
            return value
        if len(seen) >= self._limit:
            return self.OTHER
        seen.add(value)
        return value


class OpenStreamsGauge(Collector):
    """``switchyard_open_streams``: the streams this process is sending, counted at scrape time."""

    def __init__(self, streams: Sized) -> None:
        self._streams = streams

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "switchyard_open_streams", "Streams being sent to callers.", value=len(self._streams)
        )


class CircuitStateGauge(Collector):
    """``switchyard_circuit_state{provider,model}``: each target's circuit (0 closed, 1 open,
    2 half-open), read at scrape time from ``states`` (the service's health, which this
    floor must not import). Targets that never failed have no circuit and no series."""

    def __init__(self, states: Callable[[], Iterable[tuple[str, str, int]]]) -> None:
        self._states = states

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "switchyard_circuit_state",
            "Circuit breaker state per target: 0 closed, 1 open, 2 half-open (this replica).",
            labels=("provider", "model"),
        )
        for provider, model, state in self._states():
            family.add_metric((provider, model), state)
        yield family


async def serve_metrics(metrics: ProcessMetrics, host: str, port: int) -> asyncio.Server:
    """``GET /metrics`` on its own port, for a process with no REST port (``switchyard service``).

    A few lines of asyncio rather than prometheus-client's threaded server: it binds in the
    caller (so a port in use fails at start, like every other port), serves the static
    labels, and stops with the loop."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            method, _, rest = head.partition(b" ")
            path = rest.partition(b" ")[0].partition(b"?")[0]
            if method == b"GET" and path == b"/metrics":
                body, status = metrics.exposition(), b"200 OK"
                kind = CONTENT_TYPE.encode()
            else:
                body, status, kind = b"not found\n", b"404 Not Found", b"text/plain"
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\ncontent-type: "
                + kind
                + b"\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\nconnection: close\r\n\r\n"
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a scraper that went away or sent nonsense: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)
