"""What governance does when its own dependencies fail: clear errors, never a hang or a traceback.

- Shared counters (Redis) down: a call that needs a limit or budget checked fails closed with
  503 ``counters_unavailable``; calls with nothing to check are still served.
- Store down at start: the service exits 1 with a one-line message.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from tests.e2e.governed import GOVERNED_ENV, chat_body, create_key, governed_config
from tests.fakes.upstream import FakeUpstream
from tests.support import free_port, start_stack

CHAT = "/openai/deployments/outage/chat/completions?api-version=2024-10-21"


def test_counters_down_fails_closed_only_for_calls_that_need_them(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    nothing_listens = f"redis://127.0.0.1:{free_port()}/0"
    config = governed_config(upstream.url, tmp_path, store={"redis_url": nothing_listens})
    stack = start_stack("inprocess", config, tmp_path, GOVERNED_ENV)
    try:
        limited, _ = create_key(stack.base_url, rate_limit={"requests_per_minute": 100})
        budgeted, _ = create_key(stack.base_url, budget={"max_usd": 5, "reset": "1d"})
        plain, _ = create_key(stack.base_url)
        for secret in (limited, budgeted):
            response = httpx.post(
                f"{stack.base_url}{CHAT}", json=chat_body(), headers={"api-key": secret}, timeout=20
            )
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["type"] == "counters_unavailable" and body["is_bifrost_error"] is True
        served = httpx.post(
            f"{stack.base_url}{CHAT}", json=chat_body(), headers={"api-key": plain}, timeout=20
        )
        assert served.status_code == 200, served.text
        assert upstream.request_count == 1  # the refused calls never went upstream
    finally:
        stack.stop()
    assert "Traceback" not in stack.logs()


def test_service_with_an_unreachable_store_exits_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"store": {"url": f"postgresql://nobody@127.0.0.1:{free_port()}/x"}}))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "service",
            "--config",
            str(config),
            "--grpc-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot open the store" in done.stderr
    assert "Traceback" not in done.stderr
