"""Latency-aware choice among a deployment's targets (``routing: latency``): power of two
choices on a moving average of each target's time to answer, with weights, circuit state and a
little exploration."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import httpx

from service.routing import EXPLORE, Latency, Router
from tests.inprocess import Upstream, engine, engine_config, ok, request

TWO = {
    "deployments": {
        "chat": {
            "routing": "latency",
            "targets": [{"provider": "primary", "model": "a"}, {"provider": "backup", "model": "b"}],
        },
        "weighted": {
            "targets": [{"provider": "primary", "model": "a"}, {"provider": "backup", "model": "b"}],
        },
    }
}


def router(seed: int = 7) -> Router:
    return Router(engine_config(TWO), rng=random.Random(seed))


def picks(r: Router, ref: str, n: int = 2000) -> Counter[str]:
    return Counter(r.resolve(ref).model for _ in range(n))  # type: ignore[union-attr]


def test_the_faster_target_gets_most_calls_and_the_slower_is_still_measured() -> None:
    r = router()
    r.latency.observe("primary", "a", 2.0)
    r.latency.observe("backup", "b", 0.2)
    chosen = picks(r, "chat")
    # The slower one only through exploration: about half of 1 in EXPLORE.
    assert chosen["b"] > 0.9 * 2000
    assert 0 < chosen["a"] < 2 * 2000 / EXPLORE
    # A weighted deployment is not affected by what latency routing measured.
    weighted = picks(r, "weighted")
    assert 800 < weighted["a"] < 1200


def test_a_target_never_measured_is_tried_and_averages_follow_recent_calls() -> None:
    r = router()
    r.latency.observe("primary", "a", 0.5)
    assert picks(r, "chat", 200)["b"] > 150  # b unmeasured: it counts as fastest
    latency = Latency([("p", "m")])
    latency.observe("p", "m", 1.0)
    for _ in range(10):
        latency.observe("p", "m", 0.1)
    assert latency.seconds("p", "m") < 0.15  # recovered within a few calls
    latency.observe("p", "other", 5.0)  # not a latency-routed target: not tracked
    assert latency.seconds("p", "other") == 0.0


async def test_through_the_engine_a_slow_target_loses_its_traffic() -> None:
    upstream = Upstream()

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.02)
        return ok("slow")(request)

    upstream.replies["primary"] = [slow]  # type: ignore[list-item]
    upstream.replies["backup"] = [ok("fast")]
    sy = engine(upstream, [], TWO)
    answers = Counter()
    for _ in range(60):
        response = await sy.create(request(model="chat"))
        answers[response.choices[0].message.text] += 1
    assert answers["fast"] > 45, answers


async def test_a_latency_routed_deployment_also_prefers_the_faster_key() -> None:
    upstream = Upstream()

    async def by_key(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] == "Bearer slow-key":
            await asyncio.sleep(0.02)
            return ok("slow key")(request)
        return ok("fast key")(request)

    upstream.replies["primary"] = [by_key]  # type: ignore[list-item]
    two_keys = {
        "kind": "openai",
        "base_url": "https://primary.example/v1",
        "keys": [{"value": "slow-key"}, {"value": "fast-key"}],
    }
    config = {
        "providers": {"primary": two_keys},
        "deployments": {
            "keyed": {"routing": "latency", "targets": [{"provider": "primary", "model": "a"}]},
            "plain": {"targets": [{"provider": "primary", "model": "a"}]},
        },
    }
    sy = engine(upstream, [], config)
    answers: Counter[str] = Counter()
    for _ in range(60):
        response = await sy.create(request(model="keyed"))
        answers[response.choices[0].message.text] += 1
    assert answers["fast key"] > 45, answers
    # A weighted deployment on the same provider still spreads over both keys.
    plain: Counter[str] = Counter()
    for _ in range(40):
        response = await sy.create(request(model="plain"))
        plain[response.choices[0].message.text] += 1
    assert plain["slow key"] >= 8, plain
