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
from collections.abc import Iterable, Mapping, Sized

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from switchyard.config import MetricsConfig

__all__ = ["CONTENT_TYPE", "LabelCap", "OpenStreamsGauge", "ProcessMetrics", "serve_metrics"]

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
