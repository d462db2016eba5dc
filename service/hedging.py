"""Hedged requests: when a deployment's first target is slow to produce its first token, a
second target starts too, and the first to produce content wins.

- **When.** ``deployments.X.hedge`` (off unless set): after ``after_ms``, or after the first
  target's rolling percentile (``after: p95``) of its time to first token, once
  ``MIN_SAMPLES`` calls have measured it (``after_ms`` until then). The second target is
  another of the deployment's targets (chosen by weight), or, for a one-target deployment, its
  first fallback.
- **The race** (:func:`race`). The first attempt to succeed wins: for a stream, to produce its
  first content chunk; for a unary call, to answer. The loser is cancelled at once, which
  closes its connection, so no orphaned generation runs upstream. A failure does not end the
  race while the other attempt may still win; when both fail, the plan goes on to its
  fallbacks and the caller, if they all fail, gets the first target's error.
- **Accounting.** Both attempts go through the pipeline like any attempt: each is reserved in
  the budget before it starts, and the loser's reservation is released. The loser appears in
  ``extra_fields.attempts`` and the request log as ``hedge_lost``; it is cancelled before it
  produced content, so it has reported no tokens to bill (a provider may still bill the prompt
  it had read; Switchyard cannot see that). Rate limits count the caller's requests, so a
  hedge is not a second request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from switchyard.config import HedgeConfig

T = TypeVar("T")

__all__ = ["MIN_SAMPLES", "HedgeTimes", "RaceLost", "race"]

SAMPLES = 200  # the rolling window of times to first token, per target
MIN_SAMPLES = 20  # a percentile of fewer is noise: the fixed delay applies until then
_RECOMPUTE_EVERY = 10  # observations between two sorts of the window


class HedgeTimes:
    """The recent times to first token of the first targets of hedged deployments."""

    __slots__ = ("_percentiles", "_samples", "_stale")

    def __init__(self, targets: Iterable[tuple[str, str]]) -> None:
        self._samples: dict[tuple[str, str], deque[float]] = {t: deque(maxlen=SAMPLES) for t in targets}
        self._stale: dict[tuple[str, str], int] = dict.fromkeys(self._samples, 0)
        self._percentiles: dict[tuple[tuple[str, str], float], float] = {}

    def observe(self, provider: str, model: str, seconds: float) -> None:
        samples = self._samples.get((provider, model))
        if samples is not None:
            samples.append(seconds)
            self._stale[(provider, model)] += 1

    def delay_s(self, provider: str, model: str, config: HedgeConfig) -> float:
        """How long the first target gets before the second starts."""
        if not config.percentile:
            return config.after_ms / 1000
        key = (provider, model)
        samples = self._samples.get(key)
        if samples is None or len(samples) < MIN_SAMPLES:
            return config.after_ms / 1000
        cached = self._percentiles.get((key, config.percentile))
        if cached is None or self._stale[key] >= _RECOMPUTE_EVERY:
            ordered = sorted(samples)
            cached = ordered[min(len(ordered) - 1, int(len(ordered) * config.percentile / 100))]
            self._percentiles[(key, config.percentile)] = cached
            self._stale[key] = 0
        return cached


class RaceLost(Exception):
    """Neither attempt won: ``error`` is the first target's; ``hedge_started`` says whether the
    second target was tried (so the plan does not try it again)."""

    def __init__(self, error: BaseException, *, hedge_started: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.hedge_started = hedge_started


async def race(
    first: Callable[[], Awaitable[T]],
    second: Callable[[], Awaitable[T]],
    delay_s: float,
    *,
    keep_racing: Callable[[BaseException], bool],
    lost: Callable[[int, T | None], Awaitable[None]],
) -> T:
    """``first()``, and ``second()`` too if ``first`` has not succeeded within ``delay_s``.

    ``keep_racing(error)``: may the other attempt still win after the first one failed with
    ``error``? (A caller error of the first ends the race.) ``lost(index, result)`` is told of
    the loser: 1 for the second, 0 for the first, with its result when both succeeded at once
    (for the caller to close), else None. Raises :class:`RaceLost` when neither won."""
    tasks: list[asyncio.Future[T]] = [asyncio.ensure_future(first())]
    try:
        done, _ = await asyncio.wait(tasks, timeout=delay_s)
        if done:
            try:
                return tasks[0].result()
            except Exception as exc:
                raise RaceLost(exc, hedge_started=False) from None
        tasks.append(asyncio.ensure_future(second()))
        pending = set(tasks)
        first_error: BaseException | None = None
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            winners = [t for t in tasks if t in done and t.exception() is None]
            if winners:
                winner = winners[0]
                for loser in tasks:
                    if loser is winner:
                        continue
                    if loser in pending:
                        loser.cancel()
                        await lost(tasks.index(loser), None)
                    elif loser in done and loser.exception() is None:
                        await lost(tasks.index(loser), loser.result())
                return winner.result()
            if tasks[0] in done:
                first_error = tasks[0].exception()
                assert first_error is not None
                if not keep_racing(first_error):
                    break
        raise RaceLost(first_error or _exception(tasks[1]), hedge_started=True)
    finally:
        cancelled = [t for t in tasks if not t.done()]
        for task in cancelled:
            task.cancel()
        if cancelled:
            await asyncio.gather(*cancelled, return_exceptions=True)


def _exception(task: asyncio.Future[T]) -> BaseException:
    error = task.exception()
    assert error is not None
    return error
