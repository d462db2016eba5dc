"""Time windows: budget windows (hour, day, week, month; aligned or anchored) and the
sliding one-minute rate window. Pure functions, shared by both counter backends so they
agree to the bit on which window a moment falls in and on every rate estimate.
"""

from __future__ import annotations

import calendar
import math
from datetime import UTC, date, datetime, timedelta

from service.counters.base import BudgetScope
from switchyard.config import BUDGET_RESETS, BudgetConfig

_FIXED_S = {"1h": 3600.0, "1d": 86400.0, "1w": 7 * 86400.0}

RATE_BUCKET_S = 60
# Waiting a hair past the computed instant absorbs float rounding (and turns "drops to
# the limit" into "drops below it" for the strict token check), so a client that
# retries after exactly this long is admitted.
_RETRY_MARGIN_S = 0.001
# The wait reported when a limit of zero can never admit anything.
_NEVER_S = float(RATE_BUCKET_S)


def budget_window(reset: str, calendar_aligned: bool, anchor: float, now: float) -> tuple[float, float]:
    """The budget window (start, end) in unix seconds containing ``now``: start <= now < end.

    Aligned windows start on the UTC hour, day, ISO week (Monday 00:00) or first of the
    month. Anchored windows repeat from ``anchor`` (the key's or team's creation time);
    monthly ones step by calendar months, keeping the anchor's day of month (clamped to
    shorter months: Jan 31 -> Feb 28/29 -> Mar 31) and time of day. Before ``anchor``,
    the first window.
    """
    if reset not in BUDGET_RESETS:
        raise ValueError(f"unknown budget reset {reset!r}; expected one of {', '.join(BUDGET_RESETS)}")
    if calendar_aligned:
        return _aligned(reset, now)
    if reset == "1mo":
        return _anchored_month(anchor, now)
    return _anchored_fixed(_FIXED_S[reset], anchor, now)


def budget_scope(scope_id: str, budget: BudgetConfig, anchor: float, now: float) -> BudgetScope:
    """The ``BudgetScope`` for ``scope_id`` under ``budget`` in the window containing ``now``."""
    start, end = budget_window(budget.reset, budget.calendar_aligned, anchor, now)
    return BudgetScope(id=scope_id, limit_usd=budget.max_usd, window_start=start, window_end=end)


def _aligned(reset: str, now: float) -> tuple[float, float]:
    at = datetime.fromtimestamp(now, UTC)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if reset == "1h":
        start = at.replace(minute=0, second=0, microsecond=0)
        end = start + timedelta(hours=1)
    elif reset == "1d":
        start, end = day, day + timedelta(days=1)
    elif reset == "1w":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(weeks=1)
    else:
        start = day.replace(day=1)
        end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
    return start.timestamp(), end.timestamp()


def _anchored_fixed(length: float, anchor: float, now: float) -> tuple[float, float]:
    n = max(0, math.floor((now - anchor) / length))
    # The division can land one off at an exact boundary; settle it on the same sums we return.
    while n > 0 and anchor + n * length > now:
        n -= 1
    while anchor + (n + 1) * length <= now:
        n += 1
    return anchor + n * length, anchor + (n + 1) * length


def _anchored_month(anchor: float, now: float) -> tuple[float, float]:
    first = datetime.fromtimestamp(anchor, UTC).date()
    at = datetime.fromtimestamp(now, UTC)

    def start(n: int) -> float:
        # Whole days from the anchor (UTC has no DST), so the anchor's own sub-second
        # precision survives and replicas compute bit-identical window starts.
        return anchor + (_add_months(first, n) - first).days * 86400.0

    n = max(0, (at.year - first.year) * 12 + at.month - first.month)
    while n > 0 and start(n) > now:
        n -= 1
    while start(n + 1) <= now:
        n += 1
    return start(n), start(n + 1)


def _add_months(day: date, months: int) -> date:
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def rate_bucket(now: float) -> int:
    """The one-minute bucket ``now`` falls in."""
    return math.floor(now / RATE_BUCKET_S)


def prev_weight(now: float) -> float:
    """How much of the previous bucket still lies inside the sliding minute ending at ``now``."""
    return 1.0 - (now - rate_bucket(now) * RATE_BUCKET_S) / RATE_BUCKET_S


def sliding_estimate(prev: float, cur: float, now: float) -> float:
    """The sliding-minute count: the previous bucket, weighted by overlap, plus the current one.

    The Redis backend's Lua script computes ``prev * w + cur`` with ``w = prev_weight(now)``
    sent from Python, the same double arithmetic as here.
    """
    return prev * prev_weight(now) + cur


def rate_retry_after(
    prev_requests: int,
    cur_requests: int,
    prev_tokens: int,
    cur_tokens: int,
    now: float,
    requests_per_minute: int | None,
    tokens_per_minute: int | None,
) -> float:
    """Seconds until a refused request would be admitted, if nothing else is counted meanwhile.

    Both estimates only fall with time, so the wait is the longer of the two metrics' waits.
    """
    waits = [0.0]
    if requests_per_minute is not None:
        # Admitted while estimate + 1 <= rpm.
        waits.append(
            _wait_until_below(prev_requests, cur_requests, now, requests_per_minute - 1, strict=False)
        )
    if tokens_per_minute is not None:
        # Admitted while estimate < tpm.
        waits.append(_wait_until_below(prev_tokens, cur_tokens, now, tokens_per_minute, strict=True))
    return max(waits) + _RETRY_MARGIN_S


def _wait_until_below(prev: float, cur: float, now: float, threshold: float, *, strict: bool) -> float:
    """Seconds until ``sliding_estimate`` falls to ``threshold`` (strictly below it once the
    retry margin is added), with no new counts.

    The estimate is continuous, piecewise linear and non-increasing: within the current
    bucket the previous bucket's weight runs down to zero; through the next bucket the
    current one's does; after that it is zero.
    """
    if threshold < 0 or (strict and threshold == 0):
        return _NEVER_S
    estimate = sliding_estimate(prev, cur, now)
    if estimate < threshold or (not strict and estimate == threshold):
        return 0.0
    elapsed = now - rate_bucket(now) * RATE_BUCKET_S
    if cur < threshold:
        # Reached before the boundary (so prev > 0): cur + prev * (1 - (elapsed + t) / 60) = threshold.
        return max(0.0, RATE_BUCKET_S * (1.0 - (threshold - cur) / prev) - elapsed)
    # After the boundary: cur * (1 - s / 60) = threshold, with cur >= threshold > 0.
    return (RATE_BUCKET_S - elapsed) + RATE_BUCKET_S * (1.0 - threshold / cur)
