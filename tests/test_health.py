"""Circuit breakers (service/health.py) through the engine, with a fake upstream and a fake clock."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from service.engine import ChatEngine, ChatError
from service.health import CircuitState, Health
from service.providers import ProviderContext, build_provider
from service.routing import Router
from switchyard.config import CircuitConfig, ConfigError, parse_config
from tests.inprocess import Handler, Upstream, ok, request, status


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _config(circuit: dict[str, Any] | None = None, keys: int = 1) -> Any:
    return parse_config(
        {
            "routing": {"default_provider": "primary"},
            "retries": {"max_retries": 2, "backoff_initial_ms": 1, "backoff_max_ms": 1},
            "resilience": {
                "circuit": {
                    "consecutive_failures": 3,
                    "failure_rate": 0,
                    "cooldown_s": 5,
                    "max_cooldown_s": 15,
                    **(circuit or {}),
                }
            },
            "providers": {
                name: {
                    "kind": "openai",
                    "base_url": f"https://{name}.example/v1",
                    "keys": [{"value": f"k{i}", "name": f"key{i}"} for i in range(keys)],
                }
                for name in ("primary", "backup")
            },
        },
        env={},
    )


def _engine(upstream: Any, clock: Clock, circuit: dict[str, Any] | None = None, keys: int = 1) -> ChatEngine:
    config = _config(circuit, keys)
    context = ProviderContext(transport=httpx.MockTransport(upstream))
    providers = {name: build_provider(p, context) for name, p in config.providers.items()}
    health = Health(config.resilience.circuit, config.providers, clock)
    return ChatEngine(config, providers, router=Router(config, health=health))


def _with_fallback() -> Any:
    return request(fallbacks=["backup/m"])


def _state(engine: ChatEngine, provider: str = "primary", model: str = "m") -> CircuitState:
    assert engine.health is not None
    circuit = engine.health.targets.get((provider, model))
    return CircuitState.CLOSED if circuit is None else circuit.state


def _script(upstream: Upstream, host: str, *handlers: Handler) -> None:
    upstream.replies[host] = list(handlers)


async def _open_primary(engine: ChatEngine, upstream: Upstream) -> None:
    """One call with max_retries 2 is 3 failures: the threshold."""
    _script(upstream, "primary", status(503))
    _script(upstream, "backup", ok("from backup"))
    await engine.create(_with_fallback())
    assert _state(engine) is CircuitState.OPEN
    upstream.seen.clear()


async def test_consecutive_failures_open_the_circuit_and_the_target_is_skipped() -> None:
    upstream, clock = Upstream(), Clock()
    engine = _engine(upstream, clock)
    _script(upstream, "primary", status(503))
    _script(upstream, "backup", ok("from backup"))
    await engine.create(_with_fallback())
    assert upstream.seen == ["primary"] * 3 + ["backup"]
    assert _state(engine) is CircuitState.OPEN

    upstream.seen.clear()
    response = await engine.create(_with_fallback())
    assert response.choices[0].message.text == "from backup"
    assert upstream.seen == ["backup"], "an open target is not called"
    (skip,) = response.extra_fields.attempts
    assert (skip.provider, skip.model, skip.error_type) == ("primary", "m", "circuit_open")
    assert "5.0s" in skip.message


async def test_below_the_threshold_nothing_opens_and_a_success_resets_the_count() -> None:
    upstream, clock = Upstream(), Clock()
    engine = _engine(upstream, clock)
    # Two failures then a success, twice: never three in a row.
    _script(upstream, "primary", status(503), status(503), ok(), status(503), status(503), ok())
    await engine.create(request())
    await engine.create(request())
    assert _state(engine) is CircuitState.CLOSED


async def test_the_failure_rate_over_the_window_opens_the_circuit() -> None:
    upstream, clock = Upstream(), Clock()
    engine = _engine(
        upstream,
        clock,
        {"consecutive_failures": 0, "failure_rate": 0.5, "min_requests": 6, "window_s": 10},
        # No retries: one attempt per call, so the rate is exact.
    )
    engine._retry.config = engine._retry.config.__class__(max_retries=0)
    _script(upstream, "backup", ok())
    # A target's window starts at its first failure (until then it has no circuit at all).
    outcomes = [status(503), ok(), status(503), ok(), ok()]
    for handler in outcomes:
        _script(upstream, "primary", handler)
        await engine.create(_with_fallback())
        clock.now += 1
    assert _state(engine) is CircuitState.CLOSED, "2 failures of 5: under min_requests"
    _script(upstream, "primary", status(503))
    await engine.create(_with_fallback())
    assert _state(engine) is CircuitState.OPEN, "3 of 6 is 50 %"


async def test_failures_that_left_the_window_no_longer_count() -> None:
    upstream, clock = Upstream(), Clock()
    engine = _engine(
        upstream, clock, {"consecutive_failures": 0, "failure_rate": 0.5, "min_requests": 4, "window_s": 10}
    )
    engine._retry.config = engine._retry.config.__class__(max_retries=0)
    _script(upstream, "backup", ok())
    for _ in range(3):
        _script(upstream, "primary", status(503))
        await engine.create(_with_fallback())
    clock.now += 30  # those three are gone
    for handler in (ok(), ok(), ok(), status(503)):
        _script(upstream, "primary", handler)
        await engine.create(_with_fallback())
    assert _state(engine) is CircuitState.CLOSED, "1 of 4 in the window"


async def test_after_the_cool_down_one_probe_closes_the_circuit_and_traffic_returns() -> None:
    upstream, clock = Upstream(), Clock()
    engine = _engine(upstream, clock)
    await _open_primary(engine, upstream)
    clock.now += 4.9
    await engine.create(_with_fallback())
    assert upstream.seen == ["backup"], "still cooling down"

    clock.now += 0.2
    upstream.seen.clear()
    _script(upstream, "primary", ok("primary again"))
    response = await engine.create(_with_fallback())
    assert response.choices[0].message.text == "primary again"
    assert upstream.seen == ["primary"]
    assert not response.extra_fields.attempts
    assert _state(engine) is CircuitState.CLOSED


async def test_a_failed_probe_reopens_with_a_doubled_capped_cool_down() -> None:
    upstream, clock = Upstream(), Clock()
    engine = _engine(upstream, clock)
    await _open_primary(engine, upstream)
    assert engine.health is not None
    circuit = engine.health.targets[("primary", "m")]
    for expected in (10.0, 15.0, 15.0):  # 5 -> 10 -> capped at 15
        clock.now = circuit.open_until
        upstream.seen.clear()
        await engine.create(_with_fallback())
        assert upstream.seen == ["primary", "backup"], "one probe, not retried: the fallback follows"
        assert circuit.state is CircuitState.OPEN
        assert circuit.open_until - clock.now == pytest.approx(expected)
    clock.now = circuit.open_until
    _script(upstream, "primary", ok())
    await engine.create(_with_fallback())
    assert circuit.state is CircuitState.CLOSED
    assert circuit.cooldown_s == 0, "a later opening starts from cooldown_s again"


async def test_only_one_of_concurrent_calls_probes() -> None:
    clock = Clock()
    release = asyncio.Event()
    seen: list[str] = []
    fail = True

    async def handler(req: httpx.Request) -> httpx.Response:
        host = req.url.host.split(".")[0]
        seen.append(host)
        if host == "primary":
            if fail:
                return status(503)(req)
            await release.wait()
        return ok(host)(req)

    engine = _engine(handler, clock)
    await engine.create(_with_fallback())  # three 503s: open
    fail = False
    clock.now += 5
    seen.clear()
    calls = [asyncio.create_task(engine.create(_with_fallback())) for _ in range(5)]
    await asyncio.sleep(0.05)
    assert seen.count("primary") == 1
    assert _state(engine) is CircuitState.HALF_OPEN
    release.set()
    answers = [r.choices[0].message.text for r in await asyncio.gather(*calls)]
    assert sorted(answers) == ["backup"] * 4 + ["primary"]
    assert _state(engine) is CircuitState.CLOSED


async def test_a_probe_cancelled_or_ending_in_a_caller_error_hands_the_probe_on() -> None:
    upstream, clock = Upstream(), Clock()
    engine = _engine(upstream, clock)
    await _open_primary(engine, upstream)
    clock.now += 5
    _script(upstream, "primary", status(400))
    with pytest.raises(ChatError):
        await engine.create(_with_fallback())
    assert _state(engine) is CircuitState.OPEN, "a 400 says nothing about the provider"
    upstream.seen.clear()
    _script(upstream, "primary", ok())
    await engine.create(_with_fallback())
    assert upstream.seen == ["primary"], "the next call probes at once"
    assert _state(engine) is CircuitState.CLOSED


async def test_caller_errors_never_count() -> None:
    upstream, clock = Upstream(), Clock()
    engine = _engine(upstream, clock)
    _script(upstream, "primary", status(400))
    for _ in range(10):
        with pytest.raises(ChatError):
            await engine.create(_with_fallback())
    assert engine.health is not None
    assert not engine.health.targets and not engine.health.keys


async def test_credential_failures_open_the_key_only() -> None:
    clock = Clock()
    seen: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        key = req.headers["authorization"].removeprefix("Bearer ")
        seen.append(key)
        return status(401)(req) if key == "k0" else ok(key)(req)

    engine = _engine(handler, clock, keys=2)
    for _ in range(30):
        response = await engine.create(request())
        assert response.choices[0].message.text == "k1"
    assert seen.count("k0") == 3, "k0 is no longer chosen once its circuit opened"
    assert _state(engine) is CircuitState.CLOSED
    assert engine.health is not None
    assert engine.health.keys[("primary", 0)].state is CircuitState.OPEN
    views = {(v.provider, v.model, v.key): v for v in engine.health.views()}
    assert views[("primary", "", "key0")].state is CircuitState.OPEN
    assert set(views) == {("primary", "", "key0")}, "a key (or target) that never failed has no circuit"


async def test_when_every_key_is_open_the_one_cooling_down_soonest_is_used() -> None:
    clock = Clock()
    seen: list[str] = []
    broken = True

    def handler(req: httpx.Request) -> httpx.Response:
        key = req.headers["authorization"].removeprefix("Bearer ")
        seen.append(key)
        return status(401)(req) if broken else ok(key)(req)

    engine = _engine(handler, clock, keys=2)
    for _ in range(3):
        with pytest.raises(ChatError):
            await engine.create(request())
        clock.now += 1
    assert engine.health is not None
    keys = engine.health.keys
    assert keys[("primary", 0)].state is keys[("primary", 1)].state is CircuitState.OPEN
    broken = False
    soonest = min((0, 1), key=lambda i: keys[("primary", i)].open_until)
    response = await engine.create(request())
    assert response.choices[0].message.text == f"k{soonest}"


async def test_when_every_target_is_open_the_primary_is_tried_anyway() -> None:
    upstream, clock = Upstream(), Clock()
    engine = _engine(upstream, clock)
    _script(upstream, "primary", status(503))
    _script(upstream, "backup", status(503))
    with pytest.raises(ChatError):
        await engine.create(_with_fallback())
    assert _state(engine) is _state(engine, "backup") is CircuitState.OPEN

    upstream.seen.clear()
    _script(upstream, "primary", ok("primary"))
    response = await engine.create(_with_fallback())
    assert response.choices[0].message.text == "primary"
    assert upstream.seen == ["primary"]
    skips = [(a.provider, a.error_type) for a in response.extra_fields.attempts]
    assert skips == [("primary", "circuit_open"), ("backup", "circuit_open")]
    assert "tried anyway" in response.extra_fields.attempts[0].message
    assert _state(engine) is CircuitState.CLOSED, "its success closes the circuit"


async def test_a_single_target_that_is_open_is_still_tried_with_its_retries() -> None:
    upstream, clock = Upstream(), Clock()
    engine = _engine(upstream, clock)
    _script(upstream, "primary", status(503))
    with pytest.raises(ChatError):
        await engine.create(request())
    assert _state(engine) is CircuitState.OPEN
    upstream.seen.clear()
    _script(upstream, "primary", status(503), ok())
    response = await engine.create(request())
    assert upstream.seen == ["primary", "primary"], "no worse than no breaker: retried as usual"
    assert response.choices[0].message.text == "hello"


async def test_off_means_no_circuits_at_all() -> None:
    config = _config({"enabled": False})
    upstream = Upstream()
    context = ProviderContext(transport=httpx.MockTransport(upstream))
    providers = {name: build_provider(p, context) for name, p in config.providers.items()}
    engine = ChatEngine(config, providers)
    assert engine.health is None
    _script(upstream, "primary", status(503))
    _script(upstream, "backup", ok())
    for _ in range(3):
        await engine.create(_with_fallback())
    assert upstream.seen.count("primary") == 9


def test_the_default_clock_is_monotonic() -> None:
    import time

    assert Health(CircuitConfig()).clock is time.monotonic


@pytest.mark.parametrize(
    ("circuit", "key"),
    [
        ({"failure_rate": 1.5}, "resilience.circuit.failure_rate"),
        ({"cooldown_s": 10, "max_cooldown_s": 5}, "resilience.circuit.max_cooldown_s"),
        ({"window_s": 0}, "resilience.circuit.window_s"),
        ({"cooldown": 1}, "resilience.circuit.cooldown"),
        ({"enabled": "yes"}, "resilience.circuit.enabled"),
    ],
)
def test_bad_circuit_config_names_the_key(circuit: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_config({"resilience": {"circuit": circuit}}, env={})


def test_circuit_config_defaults() -> None:
    circuit = parse_config({}, env={}).resilience.circuit
    assert circuit == CircuitConfig(
        enabled=True,
        consecutive_failures=5,
        failure_rate=0.5,
        window_s=30.0,
        min_requests=10,
        cooldown_s=5.0,
        max_cooldown_s=60.0,
    )
