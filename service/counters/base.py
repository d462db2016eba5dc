"""Rate-limit and budget counters: the interface both backends implement.

- ``MemoryCounters`` (``service/counters/memory.py``): one process, the default.
- ``RedisCounters`` (``service/counters/redis.py``): shared by every replica; every
  check-and-update is one Lua script, so it is atomic with no read-modify-write race.

Budgets are *reserved* before the upstream call (the worst-case cost) and
*settled* after it with the real cost, so concurrent requests cannot all pass a
nearly spent budget: a request is admitted while spent + reserved < limit, which
bounds any overshoot to one request's worth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RateScope:
    """One rate-limited subject (e.g. ``key:app-a``) and its per-minute limits (None: unlimited)."""

    id: str
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class BudgetScope:
    """One budget (e.g. ``key:app-a`` or ``team:search``) in its current window."""

    id: str
    limit_usd: float
    window_start: float  # unix seconds; see service.counters.windows.budget_window
    window_end: float


@dataclass(frozen=True, slots=True)
class Reservation:
    """What ``reserve`` set aside; pass it back to ``settle`` exactly once."""

    id: str
    scopes: tuple[BudgetScope, ...]
    amount: float
    expires_at: float  # after this a crashed holder's reservation stops counting


class BudgetExceeded(Exception):
    """A scope had no budget left. (A plain class: a frozen dataclass cannot take the traceback
    Python sets on an exception as it passes through a ``with`` block.)"""

    def __init__(self, scope: BudgetScope, spent: float) -> None:
        super().__init__(f"budget {scope.id} exhausted ({spent:.6f} of {scope.limit_usd:.6f} USD)")
        self.scope = scope
        self.spent = spent  # spent + reserved when refused


class CountersUnavailable(Exception):
    """The shared counter store (Redis) could not be reached or failed; ``str()`` is safe to show."""


class Counters(Protocol):
    # True when the figures live outside this process (Redis) and so survive its restart.
    shared: bool

    async def check_rate(self, scope: RateScope, now: float) -> float | None:
        """Admit one request: None if admitted (the request is counted), else seconds to wait.

        A request is refused when the sliding one-minute request count has reached
        ``requests_per_minute``, or the tokens recorded by ``add_tokens`` in the sliding
        minute have reached ``tokens_per_minute``. A refused request is not counted.
        """

    async def add_tokens(self, scope: RateScope, tokens: int, now: float) -> None:
        """Record tokens a finished request used (they count against tokens_per_minute)."""

    async def reserve(
        self, scopes: Sequence[BudgetScope], amount: float, now: float, hold_s: float
    ) -> Reservation:
        """Atomically: if every scope has spent + reserved < limit, reserve ``amount`` in all of
        them; otherwise raise BudgetExceeded for the first scope that is exhausted and reserve
        nothing. ``hold_s``: how long the reservation may stay unsettled before it lapses."""

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Release the reservation and add ``actual_usd`` to the spend of each of its scopes
        (in the windows it was reserved in). Settling twice is a no-op."""

    async def spent(self, scope: BudgetScope) -> tuple[float, float]:
        """(spent, reserved) in the scope's current window."""

    async def set_spent_floor(self, scope: BudgetScope, spent: float) -> None:
        """Raise the window's spent figure to at least ``spent`` (startup recovery from the request
        log, so a restart of a single-process gateway does not reset budgets)."""

    async def aclose(self) -> None: ...
