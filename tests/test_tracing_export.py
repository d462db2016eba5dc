"""The OTLP exporters Switchyard builds from config, against real receivers on loopback: gRPC
(a TraceService server) and HTTP/protobuf, the latter chosen by the standard OTEL_* variables."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from service.plugins.tracing import build_tracer_provider, tracing_endpoint
from switchyard.config import TracingConfig
from tests.fakes.otlp import FakeOtlpReceiver


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.names: list[str] = []
        self.arrived = threading.Event()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            for scope in resource_spans.scope_spans:
                self.names.extend(span.name for span in scope.spans)
        self.arrived.set()
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def grpc_receiver() -> Iterator[tuple[Receiver, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    receiver = Receiver()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield receiver, port
    server.stop(None)


def test_spans_go_over_otlp_grpc_when_configured(grpc_receiver: tuple[Receiver, int]) -> None:
    receiver, port = grpc_receiver
    config = TracingConfig(otlp_endpoint=f"http://127.0.0.1:{port}", protocol="grpc")
    provider = build_tracer_provider(config, env={})
    assert provider is not None
    provider.get_tracer("test").start_span("chat over grpc").end()
    provider.force_flush()
    assert receiver.arrived.wait(10)
    assert receiver.names == ["chat over grpc"]
    provider.shutdown()


def test_the_standard_variables_turn_tracing_on(monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_tracer_provider(TracingConfig(), env={}) is None  # no endpoint: off
    with FakeOtlpReceiver() as receiver:
        # The exporter reads OTEL_EXPORTER_OTLP_* itself; Switchyard only decides that it is on.
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        assert tracing_endpoint(TracingConfig()) == receiver.url
        provider = build_tracer_provider(TracingConfig())
        assert provider is not None
        provider.get_tracer("test").start_span("chat from env").end()
        provider.force_flush()
        provider.shutdown()
        spans = [s.name for s in receiver.spans]
    assert spans == ["chat from env"]
