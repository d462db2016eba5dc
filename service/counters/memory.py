"""``MemoryCounters``: rate limits and budgets for one process.

Everything runs on one asyncio loop and no method awaits between its check and its
update, so plain dicts give the same atomicity the Redis backend gets from Lua.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from service.counters.base import BudgetExceeded, BudgetScope, RateScope, Reservation
from service.counters.windows import RATE_BUCKET_S, rate_bucket, rate_retry_after, sliding_estimate

# A window's figures outlive its end by a day (as in Redis) so a request that straddles
# the boundary still settles into it and ``spent`` can report the previous window.
WINDOW_GRACE_S = 86400.0
_SWEEP_EVERY_S = float(RATE_BUCKET_S)
_REQUESTS, _TOKENS = "requests", "tokens"


@dataclass(slots=True)
class _Window:
    """One scope's figures in one budget window."""

    end: float
    spent: float = 0.0
    held: dict[str, tuple[float, float]] = field(default_factory=dict)  # id -> (amount, expires_at)
    # Lapsed reservations stop counting but may still settle (a slow request, not a
    # crashed one); kept until the window is dropped so a second settle stays a no-op.
    lapsed: set[str] = field(default_factory=set)

    def reserved(self, now: float) -> float:
        return sum(amount for amount, expires_at in self.held.values() if expires_at > now)

    def purge(self, now: float) -> None:
        for rid in [rid for rid, (_, expires_at) in self.held.items() if expires_at <= now]:
            del self.held[rid]
            self.lapsed.add(rid)


class MemoryCounters:
    """The in-process ``Counters`` backend (the default, for a single gateway process)."""

    shared = False

    def __init__(self) -> None:
        # (scope id, metric) -> {minute bucket: count}; only the current and previous bucket matter.
        self._rate: dict[tuple[str, str], dict[int, int]] = {}
        self._windows: dict[tuple[str, float], _Window] = {}
        self._next_sweep = -math.inf

    async def check_rate(self, scope: RateScope, now: float) -> float | None:
        """Admit and count one request, or return the seconds to wait (see ``Counters``)."""
        rpm, tpm = scope.requests_per_minute, scope.tokens_per_minute
        if rpm is None and tpm is None:
            return None
        self._maybe_sweep(now)
        bucket = rate_bucket(now)
        prev_r = cur_r = prev_t = cur_t = 0
        refused = False
        if rpm is not None:
            requests = self._buckets(scope.id, _REQUESTS, bucket)
            prev_r, cur_r = requests.get(bucket - 1, 0), requests.get(bucket, 0)
            refused = sliding_estimate(prev_r, cur_r, now) + 1 > rpm
        if tpm is not None:
            tokens = self._buckets(scope.id, _TOKENS, bucket)
            prev_t, cur_t = tokens.get(bucket - 1, 0), tokens.get(bucket, 0)
            refused = refused or sliding_estimate(prev_t, cur_t, now) >= tpm
        if refused:
            return rate_retry_after(prev_r, cur_r, prev_t, cur_t, now, rpm, tpm)
        if rpm is not None:
            requests[bucket] = cur_r + 1
        return None

    async def add_tokens(self, scope: RateScope, tokens: int, now: float) -> None:
        """Count ``tokens`` against the scope's tokens_per_minute (ignored when unlimited)."""
        if scope.tokens_per_minute is None or tokens <= 0:
            return
        self._maybe_sweep(now)
        bucket = rate_bucket(now)
        counts = self._buckets(scope.id, _TOKENS, bucket)
        counts[bucket] = counts.get(bucket, 0) + tokens

    async def reserve(
        self, scopes: Sequence[BudgetScope], amount: float, now: float, hold_s: float
    ) -> Reservation:
        """Reserve ``amount`` in every scope, or raise ``BudgetExceeded`` and reserve nothing."""
        self._maybe_sweep(now)
        windows = [self._window(scope) for scope in scopes]
        for scope, window in zip(scopes, windows, strict=True):
            window.purge(now)
            used = window.spent + window.reserved(now)
            if used >= scope.limit_usd:
                raise BudgetExceeded(scope, used)
        reservation = Reservation(uuid.uuid4().hex, tuple(scopes), amount, now + hold_s)
        for window in windows:
            window.held[reservation.id] = (amount, reservation.expires_at)
        return reservation

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Release the reservation and charge ``actual_usd`` in each of its windows, once."""
        for scope in reservation.scopes:
            window = self._windows.get((scope.id, scope.window_start))
            if window is None:
                continue  # dropped a day after it ended: nothing left to charge
            held = window.held.pop(reservation.id, None) is not None
            if held or reservation.id in window.lapsed:
                window.lapsed.discard(reservation.id)
                window.spent += actual_usd

    async def spent(self, scope: BudgetScope, now: float | None = None) -> tuple[float, float]:
        """(spent, reserved) in the scope's window; reservations lapsed at ``now`` (default:
        the wall clock, which is what callers pass elsewhere) do not count."""
        window = self._windows.get((scope.id, scope.window_start))
        if window is None:
            return 0.0, 0.0
        return window.spent, window.reserved(time.time() if now is None else now)

    async def set_spent_floor(self, scope: BudgetScope, spent: float) -> None:
        """Raise the window's spent figure to at least ``spent``."""
        window = self._window(scope)
        window.spent = max(window.spent, spent)

    async def aclose(self) -> None:
        """Nothing to release."""

    def _buckets(self, scope_id: str, metric: str, bucket: int) -> dict[int, int]:
        counts = self._rate.setdefault((scope_id, metric), {})
        for old in [b for b in counts if b < bucket - 1]:
            del counts[old]
        return counts

    def _window(self, scope: BudgetScope) -> _Window:
        key = (scope.id, scope.window_start)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(end=scope.window_end)
        return window

    def _maybe_sweep(self, now: float) -> None:
        """Drop what is over, at most once a minute: scopes that went quiet are never looked
        up again, so pruning on access alone would let memory grow without bound."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_EVERY_S
        bucket = rate_bucket(now)
        for rate_key, counts in list(self._rate.items()):
            if all(b < bucket - 1 for b in counts):
                del self._rate[rate_key]
        for window_key, window in list(self._windows.items()):
            if window.end + WINDOW_GRACE_S < now:
                del self._windows[window_key]
