"""Circuit breakers end to end: a primary that fails, is skipped, is probed and gets its traffic back."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.upstream import FakeUpstream, Reply
from tests.support import OPEN_MODE_ADMIN_TOKEN, Stack, base_config, free_port, start_stack

COOLDOWN_S = 1.0


@pytest.fixture(scope="module")
def circuit_stack(upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = base_config(upstream_server.url, free_port(), free_port())
    # Three failures in a row open (one call: max_retries 2); a short cool-down keeps the test quick.
    config["resilience"] = {
        "circuit": {
            "consecutive_failures": 3,
            "failure_rate": 0,
            "cooldown_s": COOLDOWN_S,
            "max_cooldown_s": 4,
        }
    }
    stack = start_stack("inprocess", config, Path(tmp_path_factory.mktemp("circuit")))
    try:
        yield stack
    finally:
        stack.stop()


def _chat(client: httpx.Client) -> httpx.Response:
    response = client.post(
        "/openai/deployments/chat/chat/completions?api-version=2024-10-21",
        json={"messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200, response.text
    return response


def _served_by(upstream: FakeUpstream) -> list[str]:
    return [r.deployment or r.model or "" for r in upstream.requests]


def _circuit(client: httpx.Client) -> dict[str, object]:
    stats = client.get("/api/stats", headers={"authorization": f"Bearer {OPEN_MODE_ADMIN_TOKEN}"})
    assert stats.status_code == 200, stats.text
    (circuit,) = [c for c in stats.json()["circuits"] if c.get("model") == "chat-prod"]
    return circuit


def _gauge(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    match = re.search(r'^switchyard_circuit_state\{[^}]*model="chat-prod"[^}]*\} (\S+)$', text, re.M)
    assert match, "no switchyard_circuit_state series for chat-prod"
    return float(match.group(1))


def test_a_failing_primary_is_skipped_then_probed_and_gets_its_traffic_back(
    circuit_stack: Stack, upstream: FakeUpstream
) -> None:
    with httpx.Client(base_url=circuit_stack.base_url, timeout=10) as client:
        upstream.script(*[Reply.status(503)] * 3, match="chat-prod")
        first = _chat(client)
        assert _served_by(upstream) == ["chat-prod"] * 3 + ["gpt-fb-config"]
        assert first.json()["extra_fields"]["provider"] == "openai"

        circuit = _circuit(client)
        assert (circuit["provider"], circuit["state"]) == ("azure", "open")
        assert circuit["consecutive_failures"] == 3
        assert int(str(circuit["open_until_ms"])) > time.time() * 1000
        assert _gauge(client) == 1

        # Open: straight to the fallback, the skip reported, no call to the primary.
        upstream.reset()
        opened_at = time.monotonic()
        skipped = _chat(client)
        assert _served_by(upstream) == ["gpt-fb-config"]
        (attempt,) = skipped.json()["extra_fields"]["attempts"]
        assert (attempt["provider"], attempt["model"], attempt["error_type"]) == (
            "azure",
            "chat-prod",
            "circuit_open",
        )

        # After the cool-down the primary, healthy again, gets one probe and its traffic back.
        time.sleep(max(0.0, COOLDOWN_S + 0.1 - (time.monotonic() - opened_at)))
        upstream.reset()
        probed = _chat(client)
        assert _served_by(upstream) == ["chat-prod"]
        assert probed.json()["extra_fields"]["provider"] == "azure"
        assert "attempts" not in probed.json()["extra_fields"]
        assert _circuit(client)["state"] == "closed"
        assert _gauge(client) == 0
        upstream.reset()
        _chat(client)
        assert _served_by(upstream) == ["chat-prod"]
