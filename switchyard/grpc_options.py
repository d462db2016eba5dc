"""gRPC channel and server options shared by the service and the gateway."""

from __future__ import annotations

from switchyard.config import Config

# Client side only (the gateway's channel to the service). gRPC's default reconnect backoff
# grows from 1 s to 120 s, so after a long outage the gateway left ever longer gaps between
# attempts and found the restarted service seconds late. Capped at 0.5 s (gRPC adds +-20 %
# jitter), the channel retries often enough that a restarted service is in use within 1 s;
# an attempt against a port nothing listens on costs next to nothing. Calls during an outage
# still fail at once: they are not wait_for_ready, and pick_first reports TRANSIENT_FAILURE
# between attempts. (Kicking the channel with get_state(try_to_connect=True) after a failed
# call does not skip a pending backoff, measured on grpcio 1.85, so the cap is what counts.)
RECONNECT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


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
