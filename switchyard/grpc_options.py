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


# Client side: calls are balanced per call over every address the service's name resolves to
# (a headless Kubernetes Service gives one per pod). gRPC's default, pick_first, would send all
# of a gateway's calls to the one pod it connected to first. One address: the same as before.
BALANCING_OPTIONS: list[tuple[str, str]] = [
    ("grpc.service_config", '{"loadBalancingConfig": [{"round_robin": {}}]}'),
]

# Server side: a connection older than this is asked to go away (GOAWAY), so gateways
# re-resolve the service's name and spread onto pods added since they connected. Calls in
# flight may finish: the grace is the longest a call may take (timeouts.total_s).
MAX_CONNECTION_AGE_MS = 5 * 60 * 1000


def server_options(config: Config) -> list[tuple[str, int]]:
    return [
        ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
        ("grpc.max_connection_age_grace_ms", int(config.timeouts.total_s * 1000)),
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
