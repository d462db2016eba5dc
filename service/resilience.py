"""Retries within one target, and fallbacks across targets, decided by FailureClass.

- Within a target: TRANSIENT failures are retried on the same key
  after ``min(initial * 2**n, max) * jitter(0.8..1.2)``. A TIMEOUT moves on to the
  next target at once (an upstream silent for ``ttft_s`` rarely answers a retry, which
  would multiply the caller's wait) unless ``retries.retry_timeouts`` asks for retries.
  RATE_LIMIT and CREDENTIAL move to another eligible key at once; with no other key, a rate limit waits
  for Retry-After (if it is not too long) and a credential failure ends the target.
- Across targets: a CALLER failure of the primary ends the request (no
  fallback), except ``context_length_exceeded``, which moves to the deployment's
  ``context_fallbacks`` (never its ordinary fallbacks); anything else moves on to
  the next target. When every target
  fails, the caller gets the *primary's* error, and every attempt is recorded.
- Circuit breakers (``service/health.py``, when on): every attempt's outcome is
  recorded; a target whose circuit is open is skipped (a ``circuit_open`` attempt),
  and a target whose circuit opens during a call is not retried further when a
  fallback remains. When *every* target of the plan is open, the primary is tried
  anyway, with its usual retries: a request never fails without reaching an upstream,
  and the configured order (not a guess at which cool-down is shortest) decides.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from service.errors import CONTEXT_LENGTH_EXCEEDED, FailureClass, GatewayError
from service.health import Admission, Health
from service.hedging import RaceLost, race
from service.routing import RoutePlan, Router, Target
from switchyard.config import ProviderConfig, RetryConfig
from switchyard.request_id import current_request_id
from switchyard.v1 import chat_pb2 as pb

T = TypeVar("T")
log = logging.getLogger("switchyard.service")


class NoKeyAvailable(GatewayError):
    def __init__(self, target: Target) -> None:
        super().__init__(
            502,
            "no_keys_available",
            f"provider {target.provider!r} has no usable key for model {target.model!r}",
            failure=FailureClass.CONFIG,
            provider=target.provider,
            model=target.model,
        )


class RetryPolicy:
    def __init__(self, config: RetryConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng or random.Random()

    def backoff_s(self, retry: int) -> float:
        base = min(self.config.backoff_initial_ms * (2**retry), self.config.backoff_max_ms)
        return base * self._rng.uniform(0.8, 1.2) / 1000.0


async def call_target(
    target: Target,
    provider: ProviderConfig,
    router: Router,
    policy: RetryPolicy,
    attempt: Callable[[int], Awaitable[T]],
    attempts: list[pb.Attempt],
    *,
    fallback_follows: bool = False,
) -> T:
    """Run ``attempt(key_index)`` against one target until it succeeds or retries run out.

    ``fallback_follows``: another target comes after this one, so once this target's
    circuit opens there is no point retrying it."""
    health = router.health
    excluded: set[int] = set()
    retry = 0
    by_latency = target.routing == "latency"
    while True:
        key_index = router.choose_key(provider, target.model, excluded, latency=by_latency)
        if key_index is None:
            raise NoKeyAvailable(target)
        key_probe = health is not None and health.take_key(target.provider, key_index) is Admission.PROBE
        started = time.perf_counter()
        try:
            result = await attempt(key_index)
        except GatewayError as err:
            if health is not None:
                health.record(target.provider, target.model, key_index, err.failure)
            attempts.append(err.to_attempt())
            # Status and class only: upstream messages may quote credentials.
            log.warning(
                "upstream attempt failed: %s status=%s type=%s request_id=%s",
                target.label,
                err.status,
                err.type,
                current_request_id.get(),
            )
            if err.failure in (FailureClass.RATE_LIMIT, FailureClass.CREDENTIAL):
                excluded.add(key_index)
                if router.choose_key(provider, target.model, excluded) is not None:
                    continue  # another key is ready now; rotating is not a retry
                if err.failure is FailureClass.CREDENTIAL:
                    raise
                excluded.discard(key_index)  # the only key left: wait for it
            if not err.failure.retryable or retry >= policy.config.max_retries:
                raise
            if err.failure is FailureClass.TIMEOUT and not policy.config.retry_timeouts:
                raise
            if fallback_follows and health is not None and health.target_open(target.provider, target.model):
                raise  # this failure opened the circuit: go straight to the fallback
            delay = policy.backoff_s(retry)
            if err.retry_after_s is not None:
                if err.retry_after_s > policy.config.max_retry_after_s:
                    raise
                delay = max(delay, err.retry_after_s) if err.retry_after_s > 0 else 0.0
            retry += 1
            await asyncio.sleep(delay)
        else:
            elapsed = time.perf_counter() - started
            router.latency.observe(target.provider, target.model, elapsed)
            router.hedge_times.observe(target.provider, target.model, elapsed)
            if by_latency:
                router.key_latency.observe(target.provider, f"key{key_index}", elapsed)
            if health is not None:
                health.record(target.provider, target.model, key_index, None)
            return result
        finally:
            if key_probe and health is not None:
                # A probe that ended without a verdict (a caller error, a cancel) goes to the next call.
                health.release_key(target.provider, key_index)


async def call_with_fallbacks(
    plan: RoutePlan,
    try_target: Callable[[Target, bool], Awaitable[T]],
    attempts: list[pb.Attempt],
    health: Health | None = None,
    *,
    hedge_delay_s: float | None = None,
    hedge_lost: Callable[[Target, Target, T | None], Awaitable[None]] | None = None,
) -> T:
    """Try the plan's targets in order; re-raise the primary's error when all fail.

    ``try_target(target, fallback_follows)``; ``health``: skip targets whose circuit is open.
    With ``plan.hedge`` and ``hedge_delay_s``, the primary races the hedge target
    (service/hedging.py); ``hedge_lost(loser, winner, loser_result)`` is told of the loser."""
    for ref, why in plan.skipped:
        attempts.append(pb.Attempt(provider="", model=ref, error_type="fallback_skipped", message=why))
    primary_error: GatewayError | None = None
    targets = plan.targets
    last = len(targets) - 1
    primary_skip: pb.Attempt | None = None
    hedged: Target | None = None  # the hedge target, once tried in a race
    for index, target in enumerate(targets):
        if target == hedged:
            continue
        admission = Admission.ADMITTED
        if health is not None:
            admission = health.admit_target(target.provider, target.model)
            if admission is Admission.DENIED:
                skip = _circuit_open(target, health)
                attempts.append(skip)
                if index == 0:
                    primary_skip = skip
                continue
        try:
            if index == 0 and _may_hedge(plan, hedge_delay_s, health):
                try:
                    return await _hedged(plan, try_target, hedge_delay_s or 0.0, hedge_lost)
                except RaceLost as lost:
                    if lost.hedge_started:
                        hedged = plan.hedge
                    raise lost.error from None
            return await try_target(target, index < last)
        except GatewayError as err:
            if isinstance(err, NoKeyAvailable):
                attempts.append(err.to_attempt())
            if primary_error is None:
                primary_error = err
            if index == 0 and err.code == CONTEXT_LENGTH_EXCEEDED and plan.context_targets:
                # A caller error a bigger model can fix: the context fallbacks, never the
                # ordinary ones. If they fail too, the caller gets their error.
                context = RoutePlan(plan.context_targets)
                return await call_with_fallbacks(context, try_target, attempts, health)
            if index == 0 and not err.failure.falls_back:
                raise
        finally:
            if admission is Admission.PROBE and health is not None:
                health.release_target(target.provider, target.model)
    if primary_error is None:
        # Every target is open. Failing without trying would be worse than no breaker.
        assert primary_skip is not None  # plan.targets is never empty
        primary_skip.message += "; every target is open, so it is tried anyway"
        return await try_target(targets[0], False)
    raise primary_error


def _may_hedge(plan: RoutePlan, delay_s: float | None, health: Health | None) -> bool:
    hedge = plan.hedge
    if hedge is None or delay_s is None:
        return False
    return health is None or not health.target_open(hedge.provider, hedge.model)


async def _hedged(
    plan: RoutePlan,
    try_target: Callable[[Target, bool], Awaitable[T]],
    delay_s: float,
    hedge_lost: Callable[[Target, Target, T | None], Awaitable[None]] | None,
) -> T:
    primary, hedge = plan.targets[0], plan.hedge
    assert hedge is not None
    pair = (primary, hedge)

    async def lost(index: int, result: T | None) -> None:
        if hedge_lost is not None:
            await hedge_lost(pair[index], pair[1 - index], result)

    def keep_racing(error: BaseException) -> bool:
        # A caller error of the primary ends the race: the request itself is at fault.
        return isinstance(error, GatewayError) and error.failure.falls_back

    return await race(
        lambda: try_target(primary, True),
        lambda: try_target(hedge, True),
        delay_s,
        keep_racing=keep_racing,
        lost=lost,
    )


def _circuit_open(target: Target, health: Health) -> pb.Attempt:
    open_for_s = health.open_for_s(target.provider, target.model)
    return pb.Attempt(
        provider=target.provider,
        model=target.model,
        error_type="circuit_open",
        message=f"skipped: its circuit is open for {open_for_s:.1f}s more",
    )
