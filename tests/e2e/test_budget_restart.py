"""A single-process gateway (in-process counters) keeps its budgets across a restart.

In-process counters start empty, so the service recovers each budget window's spend from the
request log the first time it sees the window. Without that, a restart would hand every key a
fresh budget.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.governed import GOVERNED_ENV, admin_headers, chat_body, create_key, governed_config
from tests.fakes.upstream import FakeUpstream, Reply, Usage
from tests.support import start_stack

CHAT = "/openai/deployments/priced/chat/completions?api-version=2024-10-21"
COST = 10 * 0.001 + 50 * 0.002  # priced-model: 10 prompt and 50 completion tokens


def _spend(base_url: str, secret: str, upstream: FakeUpstream) -> int:
    upstream.script(Reply.ok(usage=Usage(10, 50)), match="priced-dep")
    response = httpx.post(
        f"{base_url}{CHAT}", json=chat_body(max_tokens=50), headers={"api-key": secret}, timeout=10
    )
    return response.status_code


def test_budget_spend_survives_a_restart(upstream: FakeUpstream, tmp_path: Path) -> None:
    config = governed_config(upstream.url, tmp_path)
    first = start_stack("inprocess", config, tmp_path, GOVERNED_ENV)
    try:
        secret, record = create_key(first.base_url, budget={"max_usd": 0.5, "reset": "1d"})
        assert [_spend(first.base_url, secret, upstream) for _ in range(3)] == [200, 200, 200]
    finally:
        first.stop()  # SIGTERM: the request log is flushed before the process exits
    assert first.processes[0].returncode == 0

    second = start_stack("inprocess", config, tmp_path, GOVERNED_ENV)
    try:
        view = httpx.get(f"{second.base_url}/api/keys/{record['id']}", headers=admin_headers(), timeout=10)
        assert view.json()["budget_usage"]["spent_usd"] == pytest.approx(3 * COST)
        statuses = [_spend(second.base_url, secret, upstream) for _ in range(4)]
        # 0.33 spent: two more calls take it to 0.55 (over by less than one call), then 402.
        assert statuses == [200, 200, 402, 402]
    finally:
        second.stop()
