"""Rate-limit and budget counters: one contract suite run against both backends
(in-process, and a real Redis with a unique key prefix per test), plus the window maths.

Time is always passed in (``now``), so nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from service.counters import (
    BudgetExceeded,
    BudgetScope,
    MemoryCounters,
    RateScope,
    RedisCounters,
    budget_scope,
    budget_window,
    open_counters,
)
from switchyard.config import BudgetConfig

REDIS_URL = os.environ.get("SY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
T0 = 1_700_000_040.0  # the start of a minute bucket
HOLD_S = 300.0

Backend = MemoryCounters | RedisCounters


async def _redis_admin() -> aioredis.Redis:
    admin = aioredis.Redis.from_url(REDIS_URL, decode_responses=True, socket_connect_timeout=2)
    try:
        await admin.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        await admin.aclose()
        pytest.skip(f"Redis not reachable at {REDIS_URL} (set SY_TEST_REDIS_URL): {exc}")
    return admin


@contextlib.asynccontextmanager
async def _redis_prefix() -> AsyncIterator[str]:
    """A fresh key prefix; every key under it is deleted afterwards."""
    admin = aioredis.Redis.from_url(REDIS_URL, decode_responses=True, socket_connect_timeout=2)
    try:
        await admin.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        await admin.aclose()
        pytest.skip(f"Redis not reachable at {REDIS_URL} (set SY_TEST_REDIS_URL): {exc}")
    prefix = f"sytest-{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        keys = [key async for key in admin.scan_iter(match="{" + prefix + "}*", count=500)]
        if keys:
            await admin.delete(*keys)
        await admin.aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    async with _redis_prefix() as prefix:
        yield prefix


@pytest.fixture(params=["memory", "redis"])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        memory = MemoryCounters()
        yield memory
        await memory.aclose()
        return
    async with _redis_prefix() as prefix:
        shared = RedisCounters(REDIS_URL, prefix=prefix)
        try:
            yield shared
        finally:
            await shared.aclose()


def _scope(scope_id: str, limit: float, start: float = T0 - 40, end: float = T0 + 3560) -> BudgetScope:
    return BudgetScope(id=scope_id, limit_usd=limit, window_start=start, window_end=end)


async def _admitted(counters: Backend, scope: RateScope, now: float, attempts: int) -> int:
    results = [await counters.check_rate(scope, now) for _ in range(attempts)]
    return sum(result is None for result in results)


# --- rate limits ------------------------------------------------------------------


async def test_rpm_admits_exactly_n_then_an_honest_retry_after(counters: Backend) -> None:
    scope = RateScope("key:a", requests_per_minute=5)
    now = T0 + 10
    assert await _admitted(counters, scope, now, 5) == 5
    retry = await counters.check_rate(scope, now)
    assert retry is not None
    # The five fall out of the sliding minute gradually after the boundary: at 62 s
    # the estimate is 4, room for one more.
    assert retry == pytest.approx(62.0, abs=0.01)
    assert await counters.check_rate(scope, now + retry - 0.5) is not None
    assert await counters.check_rate(scope, now + retry) is None


async def test_refused_requests_are_not_counted(counters: Backend) -> None:
    scope = RateScope("key:a", requests_per_minute=2)
    assert await _admitted(counters, scope, T0 + 5, 12) == 2
    # Half the previous minute still counts: 2 * 0.5 = 1, room for exactly one more.
    # Had the ten refusals counted, the estimate would be 6.
    assert await _admitted(counters, scope, T0 + 90, 3) == 1


async def test_sliding_window_across_bucket_boundaries(counters: Backend) -> None:
    scope = RateScope("key:a", requests_per_minute=10)
    assert await _admitted(counters, scope, T0 + 50, 10) == 10
    assert await counters.check_rate(scope, T0 + 60) is not None  # previous bucket weighs 1.0
    assert await _admitted(counters, scope, T0 + 90, 10) == 5  # weighs 0.5: 5 + 5
    assert await _admitted(counters, scope, T0 + 120, 10) == 5  # bucket T0+60 now previous: 5 + 5
    assert await _admitted(counters, scope, T0 + 300, 20) == 10  # long quiet: a fresh minute


async def test_tokens_per_minute_via_add_tokens(counters: Backend) -> None:
    scope = RateScope("key:a", tokens_per_minute=100)
    now = T0 + 10
    assert await counters.check_rate(scope, now) is None
    await counters.add_tokens(scope, 60, now)
    assert await counters.check_rate(scope, now) is None  # 60 < 100
    await counters.add_tokens(scope, 50, now)
    retry = await counters.check_rate(scope, now)
    assert retry is not None
    assert retry == pytest.approx(50 + 60 * (1 - 100 / 110), abs=0.01)
    assert await counters.check_rate(scope, now + retry - 0.5) is not None
    assert await counters.check_rate(scope, now + retry) is None


async def test_tokens_reaching_the_limit_exactly_refuse(counters: Backend) -> None:
    scope = RateScope("key:a", requests_per_minute=100, tokens_per_minute=100)
    await counters.add_tokens(scope, 100, T0)
    retry = await counters.check_rate(scope, T0)
    assert retry is not None
    assert retry > 60  # the tokens only start to fade after the boundary


async def test_unlimited_and_separate_rate_scopes(counters: Backend) -> None:
    unlimited = RateScope("key:free")
    assert await _admitted(counters, unlimited, T0, 50) == 50
    await counters.add_tokens(unlimited, 10**9, T0)
    assert await counters.check_rate(unlimited, T0) is None
    odd_ids = ["key:a", "key:a:1", "key:{a}", "key:a b ü", "team:a"]
    for scope_id in odd_ids:
        assert await _admitted(counters, RateScope(scope_id, requests_per_minute=2), T0, 3) == 2


async def test_zero_limit_refuses_everything(counters: Backend) -> None:
    retry = await counters.check_rate(RateScope("key:a", requests_per_minute=0), T0)
    assert retry is not None
    assert retry > 0


# --- budgets ----------------------------------------------------------------------


async def test_reserve_and_settle_arithmetic(counters: Backend) -> None:
    key, team = _scope("key:a", 1.0), _scope("team:t", 5.0)
    first = await counters.reserve([key, team], 0.3, T0, HOLD_S)
    second = await counters.reserve([key], 0.2, T0, HOLD_S)
    assert first.scopes == (key, team)
    assert first.amount == 0.3
    assert first.expires_at == T0 + HOLD_S
    assert await counters.spent(key, T0) == pytest.approx((0.0, 0.5))
    assert await counters.spent(team, T0) == pytest.approx((0.0, 0.3))
    await counters.settle(first, 0.1)
    assert await counters.spent(key, T0) == pytest.approx((0.1, 0.2))
    assert await counters.spent(team, T0) == pytest.approx((0.1, 0.0))
    await counters.settle(second, 0.25)
    assert await counters.spent(key, T0) == pytest.approx((0.35, 0.0))


async def test_refusal_names_the_exhausted_scope_and_reserves_nothing(counters: Backend) -> None:
    key, team = _scope("key:a", 10.0), _scope("team:t", 0.5)
    await counters.set_spent_floor(team, 0.5)
    with pytest.raises(BudgetExceeded) as refused:
        await counters.reserve([key, team], 0.1, T0, HOLD_S)
    assert refused.value.scope == team
    assert refused.value.spent == pytest.approx(0.5)
    assert await counters.spent(key, T0) == (0.0, 0.0)  # all or nothing

    small_key, roomy_team = _scope("key:b", 0.2), _scope("team:u", 10.0)
    held = await counters.reserve([small_key, roomy_team], 0.2, T0, HOLD_S)
    with pytest.raises(BudgetExceeded) as refused:
        await counters.reserve([small_key, roomy_team], 0.1, T0, HOLD_S)
    assert refused.value.scope == small_key
    assert refused.value.spent == pytest.approx(0.2)  # spent + reserved
    assert await counters.spent(roomy_team, T0) == pytest.approx((0.0, 0.2))
    await counters.settle(held, 0.0)
    assert await counters.spent(roomy_team, T0) == (0.0, 0.0)


async def test_admission_is_spent_plus_reserved_below_the_limit(counters: Backend) -> None:
    key = _scope("key:a", 1.0)
    await counters.set_spent_floor(key, 0.9)
    await counters.reserve([key], 0.5, T0, HOLD_S)  # 0.9 < 1.0: admitted, may overshoot by one
    with pytest.raises(BudgetExceeded):
        await counters.reserve([key], 0.01, T0, HOLD_S)


async def test_settling_twice_is_a_no_op(counters: Backend) -> None:
    key = _scope("key:a", 1.0)
    reservation = await counters.reserve([key], 0.5, T0, HOLD_S)
    await counters.settle(reservation, 0.4)
    await counters.settle(reservation, 0.4)
    assert await counters.spent(key, T0) == pytest.approx((0.4, 0.0))


async def test_expired_reservations_stop_counting_but_still_settle_once(counters: Backend) -> None:
    key = _scope("key:a", 1.0)
    stale = await counters.reserve([key], 1.0, T0, hold_s=30)
    with pytest.raises(BudgetExceeded):
        await counters.reserve([key], 0.1, T0 + 29, HOLD_S)
    assert await counters.spent(key, T0 + 30) == (0.0, 0.0)
    fresh = await counters.reserve([key], 0.1, T0 + 30, HOLD_S)
    assert await counters.spent(key, T0 + 30) == pytest.approx((0.0, 0.1))
    # A slow request settling after its hold lapsed is still charged, once.
    await counters.settle(stale, 0.3)
    await counters.settle(stale, 0.3)
    await counters.settle(fresh, 0.1)
    assert await counters.spent(key, T0 + 30) == pytest.approx((0.4, 0.0))


async def test_windows_roll_over_to_a_fresh_budget(counters: Backend) -> None:
    budget = BudgetConfig(max_usd=1.0, reset="1h", calendar_aligned=True)
    first = budget_scope("key:a", budget, anchor=0.0, now=T0)
    spend = await counters.reserve([first], 1.0, T0, HOLD_S)
    await counters.settle(spend, 1.0)
    with pytest.raises(BudgetExceeded):
        await counters.reserve([first], 0.1, T0 + 1, HOLD_S)

    later = first.window_end + 5
    second = budget_scope("key:a", budget, anchor=0.0, now=later)
    assert second.window_start == first.window_end
    fresh = await counters.reserve([second], 0.1, later, HOLD_S)
    await counters.settle(fresh, 0.05)
    assert await counters.spent(second, later) == pytest.approx((0.05, 0.0))
    assert await counters.spent(first, later) == pytest.approx((1.0, 0.0))


async def test_set_spent_floor_only_raises(counters: Backend) -> None:
    key = _scope("key:a", 10.0)
    await counters.set_spent_floor(key, 0.5)
    await counters.set_spent_floor(key, 0.3)
    assert await counters.spent(key, T0) == pytest.approx((0.5, 0.0))
    await counters.set_spent_floor(key, 0.7)
    reservation = await counters.reserve([key], 1.0, T0, HOLD_S)
    await counters.settle(reservation, 0.25)
    assert await counters.spent(key, T0) == pytest.approx((0.95, 0.0))
    other_window = _scope("key:a", 10.0, start=T0 + 3560, end=T0 + 7160)
    assert await counters.spent(other_window, T0) == (0.0, 0.0)


async def test_spent_defaults_to_the_wall_clock(counters: Backend) -> None:
    key = _scope("key:a", 10.0)
    await counters.reserve([key], 0.5, T0, HOLD_S)  # lapsed long ago by the wall clock
    assert await counters.spent(key) == (0.0, 0.0)


LIMIT, COST, RACERS = 1.0, 0.15, 50  # 1.0 / 0.15 is not an integer: ceil = 7


async def _race(backends: list[Backend]) -> None:
    key, team = _scope("key:race", LIMIT), _scope("team:race", 100.0)
    refused_scopes: set[str] = set()

    async def one(i: int) -> bool:
        backend = backends[i % len(backends)]
        try:
            reservation = await backend.reserve([key, team], COST, T0, HOLD_S)
        except BudgetExceeded as exc:
            refused_scopes.add(exc.scope.id)
            return False
        await asyncio.sleep(0)  # let the others interleave while this one "calls upstream"
        await backend.settle(reservation, COST)
        return True

    admitted = sum(await asyncio.gather(*(one(i) for i in range(RACERS))))
    assert admitted == math.ceil(LIMIT / COST)
    assert refused_scopes == {key.id}
    spent, reserved = await backends[0].spent(key, T0)
    assert spent <= LIMIT + COST
    assert spent == pytest.approx(admitted * COST)
    assert reserved == 0.0
    assert await backends[-1].spent(team, T0) == pytest.approx((admitted * COST, 0.0))


async def test_concurrent_reserves_admit_exactly_ceil_limit_over_cost(counters: Backend) -> None:
    await _race([counters])


async def test_two_redis_replicas_race_as_one(redis_prefix: str) -> None:
    replicas = [RedisCounters(REDIS_URL, prefix=redis_prefix) for _ in range(2)]
    try:
        await _race(list(replicas))
    finally:
        for replica in replicas:
            await replica.aclose()


# --- backend specifics ----------------------------------------------------------


async def test_memory_drops_what_is_over() -> None:
    counters = MemoryCounters()
    for i in range(100):
        await counters.check_rate(RateScope(f"key:{i}", requests_per_minute=5), T0)
        reservation = await counters.reserve([_scope(f"key:{i}", 1.0)], 0.1, T0, HOLD_S)
        await counters.settle(reservation, 0.1)
    later = T0 + 3600 + 86400 + 60  # a day past the window's end
    await counters.check_rate(RateScope("key:late", requests_per_minute=5), later)
    assert list(counters._rate) == [("key:late", "requests")]
    assert counters._windows == {}


async def test_open_counters_picks_the_backend() -> None:
    assert isinstance(open_counters(""), MemoryCounters)
    for url in ("redis://127.0.0.1:6379/0", "rediss://example.invalid:6380"):
        backend = open_counters(url)
        assert isinstance(backend, RedisCounters)
        await backend.aclose()
    with pytest.raises(ValueError, match="'http'") as bad:
        open_counters("http://user:hunter2@example.invalid")
    assert "hunter2" not in str(bad.value)
    with pytest.raises(ValueError, match="braces"):
        RedisCounters(REDIS_URL, prefix="sy:{x}:")


# --- windows ----------------------------------------------------------------------


def _ts(*parts: int) -> float:
    return datetime(parts[0], parts[1], parts[2], *parts[3:], tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("reset", "now", "start", "end"),
    [
        ("1h", (2024, 3, 10, 14, 35, 12), (2024, 3, 10, 14), (2024, 3, 10, 15)),
        ("1h", (2024, 12, 31, 23, 59, 59), (2024, 12, 31, 23), (2025, 1, 1, 0)),
        ("1d", (2024, 3, 10, 14, 35), (2024, 3, 10), (2024, 3, 11)),
        ("1w", (2024, 3, 10, 23, 59), (2024, 3, 4), (2024, 3, 11)),  # a Sunday: week began Monday
        ("1w", (2024, 3, 11, 0, 0), (2024, 3, 11), (2024, 3, 18)),  # exactly Monday 00:00
        ("1w", (2024, 12, 31, 12), (2024, 12, 30), (2025, 1, 6)),  # ISO week across the new year
        ("1mo", (2024, 2, 29, 12), (2024, 2, 1), (2024, 3, 1)),
        ("1mo", (2024, 12, 15), (2024, 12, 1), (2025, 1, 1)),
        ("1mo", (2024, 5, 1, 0, 0), (2024, 5, 1), (2024, 6, 1)),  # exactly at the start
    ],
)
def test_calendar_aligned_windows(
    reset: str, now: tuple[int, ...], start: tuple[int, ...], end: tuple[int, ...]
) -> None:
    assert budget_window(reset, True, anchor=0.0, now=_ts(*now)) == (_ts(*start), _ts(*end))


def test_aligned_windows_are_dst_free_utc() -> None:
    # 2024-03-31 and 2024-10-27: European clock changes; UTC days and weeks keep their length.
    for day in (_ts(2024, 3, 31, 12), _ts(2024, 10, 27, 12), _ts(2024, 3, 10, 12)):
        start, end = budget_window("1d", True, 0.0, day)
        assert end - start == 86400
        start, end = budget_window("1w", True, 0.0, day)
        assert end - start == 7 * 86400


@pytest.mark.parametrize(("reset", "length"), [("1h", 3600.0), ("1d", 86400.0), ("1w", 604800.0)])
def test_anchored_fixed_windows(reset: str, length: float) -> None:
    anchor = _ts(2024, 1, 3, 10, 30) + 0.25
    assert budget_window(reset, False, anchor, anchor) == (anchor, anchor + length)
    assert budget_window(reset, False, anchor, anchor - 5000) == (anchor, anchor + length)  # before
    assert budget_window(reset, False, anchor, anchor + 5 * length + 10) == (
        anchor + 5 * length,
        anchor + 6 * length,
    )
    exact = anchor + 3 * length
    assert budget_window(reset, False, anchor, exact) == (exact, exact + length)
    assert budget_window(reset, False, anchor, exact - 0.001) == (exact - length, exact)


@pytest.mark.parametrize(
    ("anchor", "now", "start", "end"),
    [
        # Anchored on the 31st: clamped to short months, back to the 31st when it exists.
        ((2024, 1, 31, 12), (2024, 2, 10), (2024, 1, 31, 12), (2024, 2, 29, 12)),
        ((2024, 1, 31, 12), (2024, 2, 29, 12), (2024, 2, 29, 12), (2024, 3, 31, 12)),  # exact
        ((2024, 1, 31, 12), (2024, 2, 29, 11), (2024, 1, 31, 12), (2024, 2, 29, 12)),
        ((2024, 1, 31, 12), (2024, 4, 15), (2024, 3, 31, 12), (2024, 4, 30, 12)),
        ((2023, 1, 31, 0), (2023, 2, 28, 1), (2023, 2, 28, 0), (2023, 3, 31, 0)),  # not a leap year
        ((2023, 12, 15, 8), (2024, 1, 20), (2024, 1, 15, 8), (2024, 2, 15, 8)),  # across the year
        ((2024, 1, 31, 12), (2023, 6, 1), (2024, 1, 31, 12), (2024, 2, 29, 12)),  # before the anchor
        ((2024, 3, 1), (2026, 3, 1), (2026, 3, 1), (2026, 4, 1)),  # years later, exactly at a start
    ],
)
def test_anchored_monthly_windows(
    anchor: tuple[int, ...], now: tuple[int, ...], start: tuple[int, ...], end: tuple[int, ...]
) -> None:
    assert budget_window("1mo", False, _ts(*anchor), _ts(*now)) == (_ts(*start), _ts(*end))


@pytest.mark.parametrize("reset", ["1h", "1d", "1w", "1mo"])
@pytest.mark.parametrize("aligned", [True, False])
def test_windows_contain_now_and_are_stable_at_their_start(reset: str, aligned: bool) -> None:
    rng = random.Random(7)
    anchor = 1_700_000_000.123456
    for _ in range(200):
        now = anchor + rng.uniform(-1e6, 1e8)
        start, end = budget_window(reset, aligned, anchor, now)
        assert start <= now < end or (not aligned and now < anchor and start == anchor)
        assert budget_window(reset, aligned, anchor, start) == (start, end)
        assert budget_window(reset, aligned, anchor, end)[0] == end


def test_budget_scope_and_unknown_resets() -> None:
    budget = BudgetConfig(max_usd=2.5, reset="1d", calendar_aligned=False)
    anchor = _ts(2024, 1, 1, 6)
    scope = budget_scope("team:t", budget, anchor, _ts(2024, 1, 3, 7))
    assert scope == BudgetScope("team:t", 2.5, _ts(2024, 1, 3, 6), _ts(2024, 1, 4, 6))
    with pytest.raises(ValueError, match="unknown budget reset"):
        budget_window("2d", True, 0.0, T0)


async def test_an_unreachable_redis_is_counters_unavailable_not_a_driver_error() -> None:
    """Every Redis failure leaves RedisCounters as CountersUnavailable (governance answers 503)."""
    import socket

    from service.counters import CountersUnavailable, RedisCounters

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    counters = RedisCounters(f"redis://127.0.0.1:{port}/0")
    try:
        with pytest.raises(CountersUnavailable):
            await counters.check_rate(RateScope("key:x", requests_per_minute=1), 1_000_000.0)
        scope = BudgetScope("key:x", 1.0, 0.0, 86_400.0)
        with pytest.raises(CountersUnavailable):
            await counters.reserve([scope], 0.1, 10.0, 60.0)
    finally:
        await counters.aclose()
