"""Time limits end to end (issue 8, section 2): a silent upstream falls back after ``ttft_s``
with one attempt at it, and a stream that stalls after content ends with the error event after
``stream_idle_s``, through real processes (REST in one process, and REST -> gRPC -> service).

The limits are half a second through the deployment targets' own ``timeouts``, while the
providers keep the test config's 2 s (``read_s: 2``) and two retries: without the target's
limit, or with timeouts retried, the silent primary would take 6 s or more."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from tests.fakes.upstream import FakeUpstream, Reply
from tests.support import Stack, base_config, free_port, start_stack

LIMIT_S = 0.5
# Far longer than any limit here: a test that waits for it has failed.
SILENCE_S = 20.0
# Loose, for a shared 2-core machine: a retry or the 2 s provider limit would exceed it.
PROMPT_S = 3.0


def _limited(model: str, fallback: str, **limits: float) -> dict[str, object]:
    return {
        "targets": [{"provider": "azure", "model": model, "timeouts": limits}],
        "fallbacks": [f"openai/{fallback}"],
    }


@pytest.fixture(scope="module", params=["inprocess", "split"])
def timed_stack(
    request: pytest.FixtureRequest, upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    config = base_config(upstream_server.url, free_port(), free_port())
    config["deployments"].update(
        {
            "ttft-dep": _limited("ttft-primary", "ttft-backup", ttft_s=LIMIT_S),
            "idle-dep": _limited("idle-primary", "idle-backup", stream_idle_s=LIMIT_S),
        }
    )
    workdir: Path = tmp_path_factory.mktemp(f"timeouts-{request.param}")
    running = start_stack(request.param, config, workdir)
    yield running
    running.stop()


@pytest.fixture
def sdk(timed_stack: Stack) -> Iterator[openai.AzureOpenAI]:
    client = openai.AzureOpenAI(
        azure_endpoint=timed_stack.base_url,
        api_key="any",
        api_version="2024-10-21",
        max_retries=0,
        timeout=30,
    )
    yield client
    client.close()


def _served_by(upstream: FakeUpstream) -> list[str]:
    return [r.deployment or r.model or "" for r in upstream.requests]


def test_a_silent_primary_falls_back_promptly_with_one_attempt(
    sdk: openai.AzureOpenAI, upstream: FakeUpstream
) -> None:
    upstream.script(Reply.slow(SILENCE_S), match="ttft-primary")
    upstream.script(Reply.ok("rescued"), match="ttft-backup")
    started = time.monotonic()
    completion = sdk.chat.completions.create(model="ttft-dep", messages=[{"role": "user", "content": "hi"}])
    elapsed = time.monotonic() - started
    assert completion.choices[0].message.content == "rescued"
    assert LIMIT_S <= elapsed < PROMPT_S
    assert _served_by(upstream) == ["ttft-primary", "ttft-backup"]
    extra = completion.model_extra or {}
    [attempt] = extra["extra_fields"]["attempts"]
    assert attempt["error_type"] == "timeout"
    assert "ttft_s" in attempt["message"]


def test_a_stream_with_no_first_token_falls_back_promptly(
    sdk: openai.AzureOpenAI, upstream: FakeUpstream
) -> None:
    # The role chunk at once, then silence: a reasoning model that never gets to its answer.
    upstream.script(Reply.hang_stream(None, duration_s=SILENCE_S, interval_s=SILENCE_S), match="ttft-primary")
    upstream.script(Reply.stream(["Hello", " world"]), match="ttft-backup")
    started = time.monotonic()
    stream = sdk.chat.completions.create(
        model="ttft-dep", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert time.monotonic() - started < PROMPT_S
    assert text == "Hello world"
    assert _served_by(upstream) == ["ttft-primary", "ttft-backup"]


def test_a_stream_that_stalls_after_content_ends_with_the_error_event_promptly(
    timed_stack: Stack, upstream: FakeUpstream
) -> None:
    upstream.script(
        Reply.hang_stream("partial", duration_s=SILENCE_S, interval_s=SILENCE_S), match="idle-primary"
    )
    started = time.monotonic()
    with (
        httpx.Client(base_url=timed_stack.base_url, timeout=30) as client,
        client.stream(
            "POST",
            "/openai/deployments/idle-dep/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}], "stream": True},
        ) as response,
    ):
        assert response.status_code == 200
        raw = response.read()
    assert time.monotonic() - started < PROMPT_S
    events = [block.removeprefix(b"data: ") for block in raw.split(b"\n\n") if block]
    assert b"[DONE]" not in events
    *chunks, last = (orjson.loads(e) for e in events)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "partial"
    assert (last["status_code"], last["type"]) == (504, "timeout")
    assert "stream_idle_s" in last["error"]["message"]
    assert _served_by(upstream) == ["idle-primary"]  # content had gone out: no fallback
