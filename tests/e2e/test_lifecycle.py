"""Starting, restricting and stopping Switchyard processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.fakes.upstream import FakeUpstream, Reply
from tests.support import Stack, base_config, free_port, secret_env, start_stack

USER = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def restricted(upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = base_config(upstream_server.url, free_port(), free_port())
    config["routing"]["restrict_to_declared"] = True
    config["logging"]["raw_request"] = False
    running = start_stack("inprocess", config, tmp_path_factory.mktemp("restricted"))
    yield running
    running.stop()


def test_restricted_gateway_refuses_undeclared_deployments(restricted: Stack, upstream: FakeUpstream) -> None:
    for path in (
        "/openai/deployments/undeclared/chat/completions",
        "/openai/deployments/openai/gpt-x/chat/completions",
    ):
        response = httpx.post(restricted.base_url + path, json={"messages": USER})
        assert response.status_code == 404, response.text
        assert response.json()["type"] == "not_found"
    assert upstream.requests == []


def test_restricted_gateway_serves_declared_deployments_and_skips_undeclared_fallbacks(
    restricted: Stack, upstream: FakeUpstream
) -> None:
    upstream.script(*[Reply.status(500)] * 3, match="chat-prod")
    response = httpx.post(
        restricted.base_url + "/openai/deployments/chat/chat/completions",
        json={"messages": USER, "fallbacks": ["openai/not-declared", "rotating"]},
    )
    assert response.status_code == 200, response.text
    extra = response.json()["extra_fields"]
    assert extra["model_deployment"] == "rotating-dep"
    skipped = [a for a in extra["attempts"] if a["error_type"] == "fallback_skipped"]
    assert [a["model"] for a in skipped] == ["openai/not-declared"]
    # raw_request/raw_response are off here.
    assert "raw_request" not in extra and "raw_response" not in extra


@pytest.mark.parametrize("mode", ["inprocess", "split"])
def test_sigterm_finishes_in_flight_requests(mode: str, upstream: FakeUpstream, tmp_path: Path) -> None:
    stack = start_stack(mode, base_config(upstream.url, free_port(), free_port()), tmp_path)
    try:
        upstream.script(Reply.slow(1.0, Reply.ok("finished late")), match="graceful")
        result: dict[str, httpx.Response] = {}

        def call() -> None:
            result["response"] = httpx.post(
                stack.base_url + "/openai/deployments/graceful/chat/completions",
                json={"messages": USER},
                timeout=10,
            )

        caller = threading.Thread(target=call)
        caller.start()
        assert upstream.wait_for_requests(1, timeout=5)
        for proc in stack.processes:
            proc.send_signal(signal.SIGTERM)
        caller.join(timeout=10)
        response = result["response"]
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "finished late"
        for proc in stack.processes:
            assert proc.wait(timeout=15) == 0, stack.logs()
    finally:
        stack.stop()


def test_gateway_without_its_service_answers_503_in_the_error_shape(tmp_path: Path) -> None:
    config = base_config("http://127.0.0.1:9", free_port(), free_port())  # nothing listens on the gRPC port
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    base_url = f"http://127.0.0.1:{config['server']['http_port']}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "gateway", "--config", str(config_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=secret_env(),
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(base_url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "gateway did not start"
                time.sleep(0.1)
        assert health.status_code == 200  # alive...
        assert httpx.get(base_url + "/ready", timeout=5).status_code == 503  # ...but not ready
        response = httpx.post(
            base_url + "/openai/deployments/x/chat/completions", json={"messages": USER}, timeout=30
        )
        assert response.status_code == 503
        body = response.json()
        assert body["type"] == "service_unavailable"
        assert body["status_code"] == 503
        assert body["error"]["message"]
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.parametrize(("max_message_mib", "status"), [(64, 200), (4, 413)])
def test_the_grpc_message_limit_between_processes(
    upstream: FakeUpstream, tmp_path: Path, max_message_mib: int, status: int
) -> None:
    config = base_config(upstream.url, free_port(), free_port())
    config["server"]["max_body_bytes"] = 12 * 1024 * 1024
    config["server"]["max_message_bytes"] = max_message_mib * 1024 * 1024
    stack = start_stack("split", config, tmp_path)
    try:
        image = "data:image/png;base64," + "A" * (6 * 1024 * 1024)  # a large inline image, as apps send
        message = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}}]}
        response = httpx.post(
            stack.base_url + "/openai/deployments/big-image/chat/completions",
            json={"messages": [message]},
            timeout=30,
        )
        assert response.status_code == status, response.text[:500]
        if status == 200:  # over gRPC's default 4 MiB, so the explicit limit is what let it through
            assert upstream.requests[0].body["messages"][0]["content"][0]["image_url"]["url"] == image
        else:
            assert response.json()["type"] == "message_too_large"
            assert upstream.requests == []
    finally:
        stack.stop()


def test_a_provider_without_keys_is_reported_at_start(upstream: FakeUpstream, tmp_path: Path) -> None:
    config = base_config(upstream.url, free_port(), free_port())
    config["providers"]["openai"]["keys"] = [{"value": "${SY_TEST_UNSET_KEY:-}"}]
    stack = start_stack("inprocess", config, tmp_path)
    try:
        assert "provider 'openai' has no keys configured" in stack.logs()
        response = httpx.post(
            stack.base_url + "/v1/chat/completions", json={"model": "openai/x", "messages": USER}
        )
        assert response.status_code == 502
        assert response.json()["type"] == "no_keys_available"
        assert upstream.requests == []
    finally:
        stack.stop()


def test_gateway_service_flag_names_the_service(upstream: FakeUpstream, tmp_path: Path) -> None:
    """``gateway --service host:port --http-port N`` reaches a service its config does not name."""
    grpc_port, http_port = free_port(), free_port()
    config = base_config(upstream.url, free_port(), free_port())  # nothing listens on these
    config["store"] = {"url": f"sqlite:///{tmp_path / 'switchyard.db'}"}
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    base = [sys.executable, "-m", "cli"]
    procs = [
        subprocess.Popen(
            [*base, "service", "--config", str(config_path), "--grpc-port", str(grpc_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=secret_env(),
        ),
        subprocess.Popen(
            [
                *base,
                "gateway",
                "--config",
                str(config_path),
                "--http-port",
                str(http_port),
                "--service",
                f"127.0.0.1:{grpc_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=secret_env(),
        ),
    ]
    try:
        base_url = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(base_url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the gateway never reached the service"
            assert all(proc.poll() is None for proc in procs)
            time.sleep(0.1)
        upstream.script(Reply.ok("via --service"), match="flagged")
        response = httpx.post(
            base_url + "/openai/deployments/flagged/chat/completions", json={"messages": USER}, timeout=10
        )
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "via --service"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)
