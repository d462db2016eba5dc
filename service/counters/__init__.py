"""Rate-limit and budget counters.

- ``base.py``: the ``Counters`` interface and its value types (scopes, reservations,
  ``BudgetExceeded``);
- ``windows.py``: budget windows (aligned or anchored hour/day/week/month) and the
  sliding one-minute rate estimate, shared by both backends;
- ``memory.py``: ``MemoryCounters``, one process (the default);
- ``redis.py``: ``RedisCounters``, shared by every replica, atomic through Lua scripts.
"""

from __future__ import annotations

from service.counters.base import (
    BudgetExceeded,
    BudgetScope,
    Counters,
    CountersUnavailable,
    RateScope,
    Reservation,
)
from service.counters.memory import MemoryCounters
from service.counters.redis import RedisCounters
from service.counters.windows import budget_scope, budget_window

__all__ = [
    "BudgetExceeded",
    "BudgetScope",
    "Counters",
    "CountersUnavailable",
    "MemoryCounters",
    "RateScope",
    "RedisCounters",
    "Reservation",
    "budget_scope",
    "budget_window",
    "open_counters",
]


def open_counters(redis_url: str) -> Counters:
    """The counters for ``redis_url``: in-process when empty, else the shared Redis ones."""
    if not redis_url:
        return MemoryCounters()
    if redis_url.startswith(("redis://", "rediss://")):
        return RedisCounters(redis_url)
    # Only the scheme: the rest of the URL may carry a password.
    scheme = redis_url.partition("://")[0]
    raise ValueError(f"counters: unsupported Redis URL scheme {scheme!r} (expected redis:// or rediss://)")
