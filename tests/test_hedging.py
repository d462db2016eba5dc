"""Hedged requests (service/hedging.py), in process: the race, its delay, and what the caller
and the accounting see."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest

from service.engine import ChatEngine
from service.hedging import MIN_SAMPLES, HedgeTimes
from service.pipeline import ChatError, Plugin
from switchyard.config import ConfigError, HedgeConfig
from tests.inprocess import Upstream, delta, engine, engine_config, request
from tests.test_pipeline import Recorder

SLOW_S = 2.0
AFTER_MS = 50


class Slow:
    """An async upstream handler that answers after ``delay_s`` and notes whether it was cancelled."""

    def __init__(self, delay_s: float, response: httpx.Response) -> None:
        self.delay_s = delay_s
        self.response = response
        self.started = 0
        self.cancelled = 0

    async def __call__(self, _request: httpx.Request) -> httpx.Response:
        self.started += 1
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return self.response


def answer(text: str) -> httpx.Response:
    body = {
        "id": "r",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
    }
    return httpx.Response(200, json=body)


def streamed(text: str) -> httpx.Response:
    events = [delta(role="assistant", text=""), delta(text), delta(finish="stop")]
    raw = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    return httpx.Response(200, content=raw)


class Hosts:
    """Routes each provider host to its handler (async handlers allowed)."""

    def __init__(self, **handlers: Any) -> None:
        self.handlers = handlers

    async def __call__(self, req: httpx.Request) -> httpx.Response:
        handler = self.handlers[req.url.host.split(".")[0]]
        result = handler(req)
        return await result if asyncio.iscoroutine(result) else result


def hedged_engine(hosts: Hosts, plugins: list[Plugin] | None = None, **hedge: Any) -> ChatEngine:
    config = {
        "deployments": {
            "hedged": {
                "targets": [{"provider": "primary", "model": "m"}],
                "fallbacks": ["backup/m"],
                "hedge": hedge or {"after_ms": AFTER_MS},
            }
        }
    }
    sy = engine(Upstream(), plugins or [], config, max_retries=0)
    for provider in sy._providers.values():  # route through the async handlers
        provider._transport = httpx.MockTransport(hosts)  # type: ignore[attr-defined]
    return sy


async def test_a_slow_primary_is_hedged_and_the_loser_cancelled() -> None:
    slow, fast = Slow(SLOW_S, answer("slow")), Slow(0.0, answer("fast"))
    sy = hedged_engine(Hosts(primary=slow, backup=fast))
    started = time.monotonic()
    response = await sy.create(request(model="hedged"))
    assert time.monotonic() - started < SLOW_S / 2
    assert response.choices[0].message.text == "fast"
    assert response.extra_fields.provider == "backup"
    assert (slow.started, slow.cancelled) == (1, 1)  # its connection was closed at once
    outcomes = {(a.provider, a.error_type) for a in response.extra_fields.attempts}
    assert outcomes == {("primary", "hedge_lost"), ("backup", "hedge_won")}


async def test_the_hedge_is_reserved_like_any_attempt_and_the_loser_released() -> None:
    journal: list[str] = []
    slow, fast = Slow(SLOW_S, answer("slow")), Slow(0.0, answer("fast"))
    sy = hedged_engine(Hosts(primary=slow, backup=fast), [Recorder("r", journal)])
    await sy.create(request(model="hedged"))
    targets = [entry for entry in journal if entry.startswith(("r.before", "r.after"))]
    # Both targets are reserved (the budget's before_target); the loser's is released on its
    # cancellation, the winner's kept.
    assert sorted(targets) == sorted(
        ["r.before:primary", "r.before:backup", "r.after:backup:ok", "r.after:primary:error"]
    )


async def test_a_primary_that_answers_within_the_delay_is_never_hedged() -> None:
    quick, backup = Slow(0.0, answer("quick")), Slow(0.0, answer("backup"))
    sy = hedged_engine(Hosts(primary=quick, backup=backup))
    response = await sy.create(request(model="hedged"))
    assert response.choices[0].message.text == "quick"
    assert backup.started == 0
    assert not response.extra_fields.attempts


async def test_a_stream_is_won_by_the_first_to_produce_content() -> None:
    slow, fast = Slow(SLOW_S, streamed("slow")), Slow(0.0, streamed("fast"))
    sy = hedged_engine(Hosts(primary=slow, backup=fast))
    chunks = [c async for c in sy.create_stream(request(model="hedged", stream=True))]
    assert "".join(ch.delta.text for c in chunks for ch in c.choices) == "fast"
    assert slow.cancelled == 1


async def test_a_hedge_that_fails_leaves_the_primary_to_answer() -> None:
    primary = Slow(0.2, answer("primary"))
    failing = Slow(0.0, httpx.Response(503, json={"error": {"message": "down"}}))
    sy = hedged_engine(Hosts(primary=primary, backup=failing))
    response = await sy.create(request(model="hedged"))
    assert response.choices[0].message.text == "primary"
    assert failing.started == 1


async def test_a_caller_error_of_the_primary_ends_the_race() -> None:
    bad = Slow(0.1, httpx.Response(400, json={"error": {"message": "bad request"}}))
    slow = Slow(SLOW_S, answer("late"))
    sy = hedged_engine(Hosts(primary=bad, backup=slow))
    with pytest.raises(ChatError) as caught:
        await sy.create(request(model="hedged"))
    assert caught.value.body.status_code == 400
    assert slow.cancelled == 1


async def test_when_both_fail_the_caller_gets_the_primarys_error() -> None:
    down = Slow(0.1, httpx.Response(503, json={"error": {"message": "primary down"}}))
    also = Slow(0.0, httpx.Response(500, json={"error": {"message": "backup down"}}))
    sy = hedged_engine(Hosts(primary=down, backup=also))
    with pytest.raises(ChatError) as caught:
        await sy.create(request(model="hedged"))
    assert caught.value.body.status_code == 503
    assert also.started == 1  # tried once, in the race, not again as a fallback


def test_the_percentile_delay_needs_enough_samples() -> None:
    times = HedgeTimes([("p", "m")])
    config = HedgeConfig(after_ms=1000, percentile=95)
    assert times.delay_s("p", "m", config) == 1.0
    for i in range(MIN_SAMPLES * 5):
        times.observe("p", "m", (i % 100) / 100)
    assert times.delay_s("p", "m", config) == pytest.approx(0.95, abs=0.02)
    assert times.delay_s("p", "m", HedgeConfig(after_ms=300)) == 0.3
    times.observe("other", "x", 1.0)  # untracked: ignored, nothing grows


@pytest.mark.parametrize(
    ("hedge", "message"),
    [({"after": "fast"}, "percentile"), ({"after_ms": -1}, "non-negative"), ({"every": 1}, "every")],
)
def test_bad_hedge_settings_are_config_errors(hedge: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        engine_config(
            {
                "deployments": {
                    "d": {
                        "targets": [{"provider": "primary", "model": "m"}],
                        "fallbacks": ["backup/m"],
                        "hedge": hedge,
                    }
                }
            }
        )


def test_a_hedge_needs_something_to_hedge_with() -> None:
    with pytest.raises(ConfigError, match="second target"):
        engine_config(
            {"deployments": {"d": {"targets": [{"provider": "primary", "model": "m"}], "hedge": {}}}}
        )
