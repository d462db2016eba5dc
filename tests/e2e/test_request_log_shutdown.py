"""The request log survives a graceful stop: every request is in the database after SIGTERM.

The writer is configured so that nothing reaches the store while the stack runs
(``flush_interval_s: 60``, ``batch_size: 10000``); everything must be written by the
flush on shutdown (``Governance.aclose`` after the gRPC server drained). The SQLite file
is then read directly with the stdlib ``sqlite3``, so the check does not depend on the
service's own query code. Runs in one process (``serve``) and split (``service`` +
``gateway``: the gateway is stopped first, then the service).
"""

from __future__ import annotations

import base64
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.governed import GOVERNED_ENV, SEEDED_KEY, SEEDED_KEY_ID, chat_body, governed_config
from tests.fakes.upstream import FakeUpstream, Reply, Usage
from tests.support import Stack, start_stack

CHAT = "/openai/deployments/{}/chat/completions?api-version=2024-10-21"
NARROW_KEY = "sk-bf-" + base64.urlsafe_b64encode(b"narrow-key-for-shutdown-tests-012").decode().rstrip("=")
NARROW_KEY_ID = "vk-narrow"
ENV = {**GOVERNED_ENV, "SY_TEST_NARROW_VK": NARROW_KEY}


def shutdown_config(upstream_url: str, workdir: Path, **request_logs: Any) -> dict[str, Any]:
    """The governed config, plus a key limited to ``narrow-*`` models, with a writer that holds
    everything until shutdown (unless ``request_logs`` says otherwise)."""
    config = governed_config(
        upstream_url,
        workdir,
        request_logs={"flush_interval_s": 60, "batch_size": 10_000, **request_logs},
    )
    config["virtual_keys"].append(
        {"id": NARROW_KEY_ID, "value": "${SY_TEST_NARROW_VK}", "allowed_models": ["narrow-*"]}
    )
    return config


def db_path(stack: Stack) -> Path:
    return stack.config_path.with_name("switchyard.db")


def rows(stack: Stack) -> list[dict[str, Any]]:
    """Every ``request_logs`` row, read straight from the SQLite file."""
    with sqlite3.connect(f"file:{db_path(stack)}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM request_logs")]


def stop_gracefully(stack: Stack) -> None:
    """SIGTERM each process, front to back (split: the gateway, then once it has exited the
    service), and require exit code 0 from each."""
    order = list(stack.processes)
    if stack.mode == "split":  # started as [service, gateway]: the gateway goes first
        order = list(reversed(order))
    for proc in order:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        assert code == 0, f"exit code {code}:\n{stack.logs()}"


def stream(http: httpx.Client, deployment: str, headers: dict[str, str], text: str = "hi") -> tuple[int, str]:
    """POST a streamed chat; (status, the concatenated content deltas)."""
    with http.stream(
        "POST", CHAT.format(deployment), json=chat_body(text, stream=True), headers=headers
    ) as response:
        if response.status_code != 200:
            response.read()
            return response.status_code, ""
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]", events
    pieces = [orjson.loads(e) for e in events[:-1]]
    return 200, "".join(c["choices"][0]["delta"].get("content") or "" for c in pieces if c.get("choices"))


@pytest.fixture(params=["inprocess", "split"])
def held_stack(request: pytest.FixtureRequest, upstream: FakeUpstream, tmp_path: Path) -> Iterator[Stack]:
    """A fresh governed stack whose request-log writer holds every entry until shutdown."""
    stack = start_stack(request.param, shutdown_config(upstream.url, tmp_path), tmp_path, ENV)
    try:
        yield stack
    finally:
        stack.stop()


def test_sigterm_flushes_every_request_log_entry(held_stack: Stack, upstream: FakeUpstream) -> None:
    """30 requests (unary, streamed, refused 401/403, an upstream 400) are all in the database after
    SIGTERM, with their status, model, type and key, though none was written while running."""
    seeded = {"api-key": SEEDED_KEY}
    narrow = {"api-key": NARROW_KEY}
    expected: Counter[tuple[Any, ...]] = Counter()

    def expect(status: int, model: str, request_type: str, key_id: str | None, error: str | None) -> None:
        expected[(status, model, request_type, key_id, error)] += 1

    upstream.script(Reply.status(400), match="sd-bad")
    upstream.script(*[Reply.ok(usage=Usage(7, 3))] * 17, match="sd-unary")
    with httpx.Client(base_url=held_stack.base_url, timeout=30) as http:
        for i in range(17):
            model = f"sd-unary-{i % 3}"
            response = http.post(CHAT.format(model), json=chat_body(f"n{i}"), headers=seeded)
            assert response.status_code == 200, response.text
            expect(200, model, "chat_completion", SEEDED_KEY_ID, None)
        assert http.post(CHAT.format("sd-bad"), json=chat_body(), headers=seeded).status_code == 400
        expect(400, "sd-bad", "chat_completion", SEEDED_KEY_ID, "invalid_request_error")
        for i in range(5):
            assert stream(http, f"sd-stream-{i % 2}", seeded) == (200, "Hello world")
            expect(200, f"sd-stream-{i % 2}", "chat_completion_stream", SEEDED_KEY_ID, None)
        for _ in range(2):
            assert http.post(CHAT.format("sd-anon"), json=chat_body()).status_code == 401
            expect(401, "sd-anon", "chat_completion", None, "missing_credentials")
        bad_key = {"api-key": "sk-bf-" + "Z" * 43}
        assert http.post(CHAT.format("sd-badkey"), json=chat_body(), headers=bad_key).status_code == 401
        expect(401, "sd-badkey", "chat_completion", None, "invalid_credentials")
        assert stream(http, "sd-forbidden", narrow)[0] == 403
        expect(403, "sd-forbidden", "chat_completion_stream", NARROW_KEY_ID, "model_not_allowed")
        assert http.post(CHAT.format("sd-forbidden"), json=chat_body(), headers=narrow).status_code == 403
        expect(403, "sd-forbidden", "chat_completion", NARROW_KEY_ID, "model_not_allowed")
        for _ in range(2):
            assert http.post(CHAT.format("narrow-ok"), json=chat_body(), headers=narrow).status_code == 200
            expect(200, "narrow-ok", "chat_completion", NARROW_KEY_ID, None)
    assert sum(expected.values()) == 30
    assert rows(held_stack) == []  # held by the writer: the interval is a minute away

    stop_gracefully(held_stack)

    stored = rows(held_stack)
    assert len(stored) == 30, f"{len(stored)} of 30 entries survived the stop:\n{held_stack.logs()}"
    assert len({r["id"] for r in stored}) == 30
    got = Counter(
        (r["status"], r["model_requested"], r["request_type"], r["key_id"], r["error_type"]) for r in stored
    )
    assert got == expected
    unary_ok = [r for r in stored if r["model_requested"].startswith("sd-unary")]
    assert {(r["prompt_tokens"], r["completion_tokens"], r["provider"]) for r in unary_ok} == {
        (7, 3, "azure")
    }
    assert all(r["content_json"] is None for r in stored)  # content is off by default
    assert "could not be written" not in held_stack.logs()


@pytest.mark.parametrize("include_content", [True, False])
def test_include_content_stores_prompt_and_completion(
    include_content: bool, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """With ``request_logs.include_content: true`` the prompt messages and the completion text
    (unary and streamed) are stored in ``content_json``; by default the column stays NULL."""
    # A short interval: this test is about what an entry holds, not about the shutdown flush.
    config = shutdown_config(
        upstream.url, tmp_path, include_content=include_content, flush_interval_s=0.05, batch_size=200
    )
    stack = start_stack("inprocess", config, tmp_path, ENV)
    try:
        seeded = {"api-key": SEEDED_KEY}
        with httpx.Client(base_url=stack.base_url, timeout=30) as http:
            response = http.post(
                CHAT.format("content-unary"), json=chat_body("the secret recipe"), headers=seeded
            )
            assert response.status_code == 200
            assert response.json()["choices"][0]["message"]["content"] == "echo: the secret recipe"
            upstream.script(Reply.stream(["stre", "amed ", "answer"]), match="content-stream")
            assert stream(http, "content-stream", seeded, "tell me a story") == (200, "streamed answer")
        deadline = time.monotonic() + 10
        while len(stored := rows(stack)) < 2:
            assert time.monotonic() < deadline, f"entries not written: {stored}"
            time.sleep(0.02)
        by_model = {r["model_requested"]: r for r in stored}
        assert set(by_model) == {"content-unary", "content-stream"}
        if not include_content:
            assert all(r["content_json"] is None for r in by_model.values())
            raw = db_path(stack).read_bytes()
            assert b"secret recipe" not in raw and b"tell me a story" not in raw
            return
        unary = orjson.loads(by_model["content-unary"]["content_json"])
        assert unary["messages"] == [{"role": "user", "content": "the secret recipe"}]
        assert unary["completion"] == "echo: the secret recipe"
        streamed = orjson.loads(by_model["content-stream"]["content_json"])
        assert streamed["messages"] == [{"role": "user", "content": "tell me a story"}]
        assert streamed["completion"] == "streamed answer"
    finally:
        stack.stop()
