"""Split mode after a long outage: the gateway uses a restarted service within about a second.

gRPC's default reconnect backoff grows to 120 s, so after a long outage the gateway would sit in
backoff long after the service was back. The outage here is long enough (>= 20 s) that the default
backoff would be several seconds between attempts by the time the service returns.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.fakes.upstream import FakeUpstream
from tests.support import Stack, base_config, free_port, secret_env, start_stack

CHAT = "/openai/deployments/chat/chat/completions?api-version=2024-10-21"
BODY = {"messages": [{"role": "user", "content": "hello"}]}
OUTAGE_S = 21.0
# The target is 1 s; the slack covers this test's own polling and one HTTP round trip.
RECOVERY_LIMIT_S = 1.5
FAST_503_S = 0.5


def _service_serving(target: str) -> bool:
    # A fresh channel per probe: a long-lived one would sit in its own reconnect backoff.
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _restart_service(stack: Stack, workdir: Path) -> subprocess.Popen[bytes]:
    log_path = workdir / "service-restarted.log"
    stack.log_paths.append(log_path)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "service", "--config", str(stack.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=secret_env(),
        )
    stack.processes.append(proc)  # stack.stop() ends it too
    return proc


def test_gateway_recovers_within_a_second_of_the_service_serving_after_a_long_outage(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    stack = start_stack("split", base_config(upstream.url, free_port(), free_port()), tmp_path)
    service = stack.processes[0]
    try:
        with httpx.Client(base_url=stack.base_url, timeout=10) as client:
            assert client.post(CHAT, json=BODY).status_code == 200

            service.kill()
            service.wait(timeout=10)
            outage_end = time.monotonic() + OUTAGE_S
            slowest = 0.0
            while time.monotonic() < outage_end:
                started = time.monotonic()
                response = client.post(CHAT, json=BODY)
                slowest = max(slowest, time.monotonic() - started)
                assert response.status_code == 503, response.text
                assert response.json()["type"] == "service_unavailable"
                time.sleep(0.2)
            assert slowest < FAST_503_S, f"a call during the outage took {slowest:.2f} s"

            restarted = _restart_service(stack, tmp_path)
            deadline = time.monotonic() + 30
            while not _service_serving(stack.grpc_target):
                assert restarted.poll() is None, stack.logs()
                assert time.monotonic() < deadline, "the restarted service never reported SERVING"
                time.sleep(0.02)
            serving_at = time.monotonic()

            while True:
                response = client.post(CHAT, json=BODY)
                recovered_after = time.monotonic() - serving_at
                if response.status_code == 200:
                    break
                assert response.status_code == 503, response.text
                assert recovered_after < 30, "the gateway never used the restarted service"
                time.sleep(0.05)
            assert recovered_after <= RECOVERY_LIMIT_S, (
                f"first successful call {recovered_after:.2f} s after the service reported SERVING"
            )
    finally:
        stack.stop()
    assert "Traceback" not in stack.logs()
