"""The gateway's channel balances calls per call over every address of the service's name, so
replicas behind a headless Service share the load (gRPC's default would pin one)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.backend import GrpcBackend
from switchyard.config import parse_config
from switchyard.grpc_options import MAX_CONNECTION_AGE_MS, server_options


class CountingHealth(health_pb2_grpc.HealthServicer):
    def __init__(self) -> None:
        self.calls = 0

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        self.calls += 1
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


async def test_calls_are_spread_over_every_replica() -> None:
    replicas: list[tuple[grpc.aio.Server, CountingHealth, int]] = []
    for _ in range(2):
        server = grpc.aio.server()
        servicer = CountingHealth()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        replicas.append((server, servicer, port))
    # One name, two addresses: what DNS gives for a headless Service with two ready pods.
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for _, _, port in replicas)
    backend = GrpcBackend(target, [])
    try:
        for _ in range(20):
            assert await backend.ready()
    finally:
        await backend.aclose()
        for server, _, _ in replicas:
            await server.stop(None)
    counts = [servicer.calls for _, servicer, _ in replicas]
    assert sum(counts) == 20 and min(counts) >= 5, counts


def test_old_connections_are_retired_but_calls_in_flight_may_finish() -> None:
    config = parse_config({"timeouts": {"total_s": 90}}, env={})
    options = dict(server_options(config))
    assert options["grpc.max_connection_age_ms"] == MAX_CONNECTION_AGE_MS
    assert options["grpc.max_connection_age_grace_ms"] == 90_000
