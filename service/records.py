"""The records governance works with: virtual keys, teams and request-log entries.

They are plain frozen dataclasses so the store (``service/store``), the key cache
(``service/governance``) and the admin API (``service/admin``) pass the same
objects around. Times are unix seconds (float, UTC).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from switchyard.config import BudgetConfig, RateLimitConfig


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """A virtual key as stored. The secret itself is never stored: only ``key_hash``."""

    id: str
    name: str
    key_hash: str  # hex SHA-256 of the secret (see service.auth.hash_secret)
    key_prefix: str  # the first characters of the secret, for people to recognise it ("sk-bf-AbCd")
    description: str = ""
    active: bool = True
    expires_at: float | None = None
    allowed_models: tuple[str, ...] = ()  # `provider/model` or deployment ids, `*` globs; empty = all
    allowed_providers: tuple[str, ...] = ()  # empty = all
    budget: BudgetConfig | None = None
    rate_limit: RateLimitConfig | None = None
    team_id: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    revoked_at: float | None = None

    def replace(self, **changes: object) -> VirtualKey:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Team:
    id: str
    name: str = ""
    budget: BudgetConfig | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One request, as the request log keeps it."""

    id: str  # unique (uuid4 hex)
    ts: float  # when the request started
    request_type: str  # chat_completion | chat_completion_stream | embedding
    model_requested: str
    status: int  # the HTTP status the caller got (200 on success)
    latency_ms: int
    key_id: str | None = None  # None: admin or open-mode call
    team_id: str | None = None
    provider: str = ""  # the provider that served it ("" when none did)
    model_served: str = ""
    error_type: str | None = None
    attempts_json: str = "[]"  # failed attempts and skipped fallbacks, as JSON
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None  # None: the model has no price
    content_json: str | None = None  # prompt and completion, only when request_logs.include_content
    request_id: str = ""  # the caller's x-request-id, or the one Switchyard made (not unique)
    # The response cache: "exact" / "semantic" (a hit) or "miss"; None when it did not see the call.
    cache_hit_type: str | None = None
    cache_id: str | None = None  # the entry that answered, or the one a miss is stored under


@dataclass(frozen=True, slots=True)
class LogQuery:
    """A page of the request log, newest first. ``cursor`` is the last page's ``next_cursor``."""

    key_id: str | None = None
    request_id: str | None = None
    model: str | None = None  # matches model_requested or model_served
    provider: str | None = None
    error_type: str | None = None
    team_id: str | None = None
    errors_only: bool = False  # status >= 400
    status: int | None = None
    start: float | None = None  # ts >= start
    end: float | None = None  # ts < end
    limit: int = 100
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class LogPage:
    entries: tuple[LogEntry, ...]
    next_cursor: str | None  # None: no more pages


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Spend and tokens for one key, model and UTC day."""

    key_id: str  # "" for calls without a virtual key
    model: str  # model_served, else model_requested
    day: str  # YYYY-MM-DD (UTC)
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float


@dataclass(frozen=True, slots=True)
class UsageBucket:
    """Requests in one time bucket (or a whole range): ``errors`` are those with status >= 400."""

    start: float
    requests: int
    errors: int
    cost: float
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True, slots=True)
class UsageBreakdown:
    """Requests of one key, team, model or provider ("" for requests without one)."""

    name: str
    requests: int
    errors: int
    cost: float
    total_tokens: int


@dataclass(frozen=True, slots=True)
class UsageOverview:
    """What the console's overview shows, aggregated by the store."""

    buckets: tuple[UsageBucket, ...]  # only buckets with requests, oldest first
    totals: UsageBucket
    by_model: tuple[UsageBreakdown, ...]  # highest cost first
    by_key: tuple[UsageBreakdown, ...]
    by_team: tuple[UsageBreakdown, ...]
    by_provider: tuple[UsageBreakdown, ...]  # most requests first
    top_error_keys: tuple[UsageBreakdown, ...]  # most errors first, errors > 0 only
    top_error_models: tuple[UsageBreakdown, ...]
