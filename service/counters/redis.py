"""``RedisCounters``: rate limits and budgets shared by every replica through one Redis.

Every check-and-update is one Lua script, which Redis runs atomically, so replicas
enforce one limit with no read-modify-write race.

Time is the ``now`` the caller passes (every caller passes ``time.time()``), not Redis
``TIME``: it decides buckets, windows and reservation expiry, so tests can control it.
Key lifetimes are relative ``EXPIRE`` seconds on the server's clock, long enough
whatever ``now`` says.

Keys, all under the hash tag ``{<prefix>}`` so that multi-scope scripts touch one
cluster slot; the scope id comes last and is used as-is (everything before it has a
fixed shape, so no id can collide with another key):

- ``{p}rate:requests:<bucket>:<id>`` / ``{p}rate:tokens:<bucket>:<id>``: per-minute counts;
- ``{p}spent:<window_start>:<id>``: USD spent in the window (a float string);
- ``{p}held:<window_start>:<id>``: HASH reservation id -> ``"<amount>:<expires_at>"``;
- ``{p}lapsed:<window_start>:<id>``: HASH of reservations that expired unsettled: they no
  longer count, but a late settle still charges (once).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from service.counters.base import BudgetExceeded, BudgetScope, CountersUnavailable, RateScope, Reservation
from service.counters.windows import RATE_BUCKET_S, prev_weight, rate_bucket, rate_retry_after

# Two buckets are ever read (current and previous); keep each a little beyond that.
_RATE_TTL_S = 2 * RATE_BUCKET_S + 10
_SOCKET_TIMEOUT_S = 2.0
# Budget keys outlive the window by a day (a settle straddling the end, reporting). The
# TTL is counted from the write, so a whole window's length covers the rest of it.
_WINDOW_GRACE_S = 86400

_CHECK_RATE = """
local w = tonumber(ARGV[1])
local rpm = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
local function count(key) return tonumber(redis.call('GET', key) or '0') end
local rp, rc, tp, tc = 0, 0, 0, 0
local admit = 1
if rpm >= 0 then
  rp, rc = count(KEYS[1]), count(KEYS[2])
  if rp * w + rc + 1 > rpm then admit = 0 end
end
if tpm >= 0 then
  tp, tc = count(KEYS[3]), count(KEYS[4])
  if tp * w + tc >= tpm then admit = 0 end
end
if admit == 1 and rpm >= 0 then
  redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return {admit, rp, rc, tp, tc}
"""

_ADD_TOKENS = """
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
"""

# Sums a held HASH's live reservations, moving expired ones to the lapsed HASH.
_RESERVED = """
local function reserved(held, lapsed, now, ttl)
  local total = 0
  local entries = redis.call('HGETALL', held)
  for i = 1, #entries, 2 do
    local value = entries[i + 1]
    local sep = string.find(value, ':', 1, true)
    if tonumber(string.sub(value, sep + 1)) <= now then
      redis.call('HDEL', held, entries[i])
      redis.call('HSET', lapsed, entries[i], value)
      redis.call('EXPIRE', lapsed, ttl)
    else
      total = total + tonumber(string.sub(value, 1, sep - 1))
    end
  end
  return total
end
"""

# KEYS: (spent, held, lapsed) per scope. ARGV: now, id, amount, expires_at, then (limit, ttl) per scope.
_RESERVE = (
    _RESERVED
    + """
local now = tonumber(ARGV[1])
local n = #KEYS / 3
for i = 1, n do
  local k, a = 3 * (i - 1), 4 + 2 * (i - 1)
  local used = tonumber(redis.call('GET', KEYS[k + 1]) or '0')
  used = used + reserved(KEYS[k + 2], KEYS[k + 3], now, ARGV[a + 2])
  if used >= tonumber(ARGV[a + 1]) then return {i, string.format('%.17g', used)} end
end
local entry = ARGV[3] .. ':' .. ARGV[4]
for i = 1, n do
  local k, a = 3 * (i - 1), 4 + 2 * (i - 1)
  redis.call('HSET', KEYS[k + 2], ARGV[2], entry)
  redis.call('EXPIRE', KEYS[k + 2], ARGV[a + 2])
end
return {0, ''}
"""
)

# KEYS: (spent, held, lapsed) per scope. ARGV: id, actual, then ttl per scope.
_SETTLE = """
for i = 1, #KEYS / 3 do
  local k = 3 * (i - 1)
  if redis.call('HDEL', KEYS[k + 2], ARGV[1]) + redis.call('HDEL', KEYS[k + 3], ARGV[1]) > 0 then
    redis.call('INCRBYFLOAT', KEYS[k + 1], ARGV[2])
    redis.call('EXPIRE', KEYS[k + 1], ARGV[2 + i])
  end
end
"""

# KEYS: spent, held, lapsed. ARGV: now, ttl.
_SPENT = (
    _RESERVED
    + """
local held = reserved(KEYS[2], KEYS[3], tonumber(ARGV[1]), ARGV[2])
return {redis.call('GET', KEYS[1]) or '0', string.format('%.17g', held)}
"""
)

# KEYS: spent. ARGV: floor, ttl.
_FLOOR = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
"""


class RedisCounters:
    """The shared ``Counters`` backend: one connection pool to the Redis at ``url``."""

    shared = True

    def __init__(self, url: str, prefix: str = "sy:") -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"counter key prefix {prefix!r} must not contain braces (it is the hash tag)")
        self._tag = "{" + prefix + "}"
        # No I/O here: the pool opens connections on first use, inside the running loop.
        # Bounded waits: a hung Redis must fail a request quickly (503), not hold it until its deadline.
        self._client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=_SOCKET_TIMEOUT_S,
            socket_connect_timeout=_SOCKET_TIMEOUT_S,
        )
        self._check_rate = self._client.register_script(_CHECK_RATE)
        self._add_tokens = self._client.register_script(_ADD_TOKENS)
        self._reserve = self._client.register_script(_RESERVE)
        self._settle = self._client.register_script(_SETTLE)
        self._spent = self._client.register_script(_SPENT)
        self._floor = self._client.register_script(_FLOOR)

    async def check_rate(self, scope: RateScope, now: float) -> float | None:
        """Admit and count one request, or return the seconds to wait (see ``Counters``)."""
        rpm, tpm = scope.requests_per_minute, scope.tokens_per_minute
        if rpm is None and tpm is None:
            return None
        bucket = rate_bucket(now)
        keys = [
            self._rate_key("requests", bucket - 1, scope.id),
            self._rate_key("requests", bucket, scope.id),
            self._rate_key("tokens", bucket - 1, scope.id),
            self._rate_key("tokens", bucket, scope.id),
        ]
        # -1: unlimited (0 is a real limit that refuses everything).
        limits = [-1 if limit is None else limit for limit in (rpm, tpm)]
        args: list[str | int] = [repr(prev_weight(now)), *limits, _RATE_TTL_S]
        admit, prev_r, cur_r, prev_t, cur_t = await self._call(self._check_rate, keys=keys, args=args)
        if admit:
            return None
        return rate_retry_after(int(prev_r), int(cur_r), int(prev_t), int(cur_t), now, rpm, tpm)

    async def add_tokens(self, scope: RateScope, tokens: int, now: float) -> None:
        """Count ``tokens`` against the scope's tokens_per_minute (ignored when unlimited)."""
        if scope.tokens_per_minute is None or tokens <= 0:
            return
        key = self._rate_key("tokens", rate_bucket(now), scope.id)
        await self._call(self._add_tokens, keys=[key], args=[int(tokens), _RATE_TTL_S])

    async def reserve(
        self, scopes: Sequence[BudgetScope], amount: float, now: float, hold_s: float
    ) -> Reservation:
        """Reserve ``amount`` in every scope, or raise ``BudgetExceeded`` and reserve nothing."""
        reservation = Reservation(uuid.uuid4().hex, tuple(scopes), amount, now + hold_s)
        keys: list[str] = []
        args: list[str | int] = [repr(now), reservation.id, repr(float(amount)), repr(reservation.expires_at)]
        for scope in scopes:
            keys += self._budget_keys(scope)
            args += [repr(float(scope.limit_usd)), _ttl(scope)]
        refused, used = await self._call(self._reserve, keys=keys, args=args)
        if refused:
            raise BudgetExceeded(scopes[int(refused) - 1], float(used))
        return reservation

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Release the reservation and charge ``actual_usd`` in each of its windows, once."""
        keys: list[str] = []
        args: list[str | int] = [reservation.id, repr(float(actual_usd))]
        for scope in reservation.scopes:
            keys += self._budget_keys(scope)
            args.append(_ttl(scope))
        await self._call(self._settle, keys=keys, args=args)

    async def spent(self, scope: BudgetScope, now: float | None = None) -> tuple[float, float]:
        """(spent, reserved) in the scope's window; reservations lapsed at ``now`` (default:
        the wall clock, which is what callers pass elsewhere) do not count."""
        at = time.time() if now is None else now
        spent, held = await self._call(
            self._spent, keys=self._budget_keys(scope), args=[repr(at), _ttl(scope)]
        )
        return float(spent), float(held)

    async def set_spent_floor(self, scope: BudgetScope, spent: float) -> None:
        """Raise the window's spent figure to at least ``spent``."""
        await self._call(
            self._floor, keys=[self._budget_keys(scope)[0]], args=[repr(float(spent)), _ttl(scope)]
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def _call(self, script: AsyncScript, keys: list[str], args: list[str | int]) -> Any:
        """Run one Lua script; Redis failures become ``CountersUnavailable``, in this one place."""
        try:
            return await script(keys=keys, args=args)
        except (aioredis.RedisError, OSError) as exc:
            raise CountersUnavailable(f"the counter store is unavailable ({type(exc).__name__})") from exc

    def _rate_key(self, metric: str, bucket: int, scope_id: str) -> str:
        return f"{self._tag}rate:{metric}:{bucket}:{scope_id}"

    def _budget_keys(self, scope: BudgetScope) -> list[str]:
        window = repr(float(scope.window_start))
        return [f"{self._tag}{kind}:{window}:{scope.id}" for kind in ("spent", "held", "lapsed")]


def _ttl(scope: BudgetScope) -> int:
    return math.ceil(scope.window_end - scope.window_start) + _WINDOW_GRACE_S
