"""Open mode (``auth.required: false``), which the routing suites run in: what it lets through.

Calls without a usable credential are served (SDKs always send *some* key, so an unknown one is
ignored rather than refused), a valid virtual key still gets its own limits, and the start-up log
says loudly that the gateway is open.
"""

from __future__ import annotations

import httpx

from tests.support import OPEN_MODE_ADMIN_TOKEN, Stack

CHAT = "/openai/deployments/open-mode/chat/completions?api-version=2024-10-21"
BODY = {"messages": [{"role": "user", "content": "hi"}]}


def test_open_mode_serves_anonymous_calls_and_still_applies_a_keys_rules(
    stack: Stack, client: httpx.Client
) -> None:
    assert "OPEN MODE" in stack.logs()
    assert client.post(CHAT, json=BODY).status_code == 200
    assert client.post(CHAT, json=BODY, headers={"api-key": "whatever-the-sdk-sends"}).status_code == 200
    admin = {"authorization": f"Bearer {OPEN_MODE_ADMIN_TOKEN}"}
    created = client.post("/api/keys", json={"rate_limit": {"requests_per_minute": 1}}, headers=admin)
    assert created.status_code == 200, created.text
    secret = created.json()["secret"]
    assert client.post(CHAT, json=BODY, headers={"api-key": secret}).status_code == 200
    limited = client.post(CHAT, json=BODY, headers={"api-key": secret})
    assert limited.status_code == 429
    assert limited.json()["type"] == "rate_limit_exceeded"
    # The admin API is never open.
    assert client.get("/api/keys").status_code == 401
