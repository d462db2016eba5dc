"""gRPC channel and server options shared by the service and the gateway."""

from __future__ import annotations

from switchyard.config import Config


def grpc_options(config: Config) -> list[tuple[str, int]]:
    """Explicit message-size limits and keepalive, the same on both ends."""
    size = config.server.max_message_bytes
    return [
        ("grpc.max_send_message_length", size),
        ("grpc.max_receive_message_length", size),
        # Long unary generations send no frames for minutes; keep the connection alive.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
