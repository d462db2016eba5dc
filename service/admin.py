"""The gRPC ``Admin`` service: virtual keys, teams, the request log, usage and stats, and the
read-only views the web console needs (the redacted config, prices, the usage overview;
converted in ``service/admin_views.py``).

Every call needs an admin credential (checked by ``Governance.require_admin``).
Writes go to the store first (the source of truth), then into this replica's key
cache, so a change takes effect here at once and on other replicas within
``auth.key_cache_ttl_s``. Errors leave as the same rich statuses as chat errors.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from service import admin_views
from service.auth import hash_secret, key_prefix, new_virtual_key
from service.counters import CountersUnavailable
from service.errors import GatewayError, invalid_request
from service.governance import Admission, Governance, refusal
from service.health import Health
from service.plugins.cache import ResponseCache
from service.plugins.cache.stores import CacheStoreError
from service.records import LogEntry, LogQuery, Team, UsageRow, VirtualKey
from service.stats import ServiceStats
from service.store import AlreadyExists, StoreError
from switchyard.config import BUDGET_RESETS, BudgetConfig, Config, RateLimitConfig
from switchyard.errors import encode_status
from switchyard.v1 import admin_pb2 as apb
from switchyard.v1 import admin_pb2_grpc

T = TypeVar("T")
log = logging.getLogger("switchyard.service")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_MAX_PAGE = 1000
_MAX_BUDGET_PAGES = 20  # keys looked at for the overview's budget use: 20,000


class AdminServicer(admin_pb2_grpc.AdminServicer):
    def __init__(
        self,
        governance: Governance,
        stats: ServiceStats | None = None,
        health: Health | None = None,
        cache: ResponseCache | None = None,
        config: Config | None = None,
    ) -> None:
        self._gov = governance
        self._config = config or Config()
        self._stats = stats or ServiceStats()
        self._health = health
        self._response_cache = cache
        self._store = governance.store
        self._cache = governance.keys

    async def _run(self, context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[T]]) -> T:
        """Admin check, then ``work``; any refusal or store failure becomes a rich status."""
        try:
            await self._gov.require_admin(context.invocation_metadata() or ())
            try:
                return await work()
            except StoreError as exc:
                raise GatewayError(503, "store_unavailable", f"the store failed: {exc}") from None
            except CacheStoreError as exc:
                raise GatewayError(503, "cache_unavailable", f"the cache store failed: {exc}") from None
        except GatewayError as err:
            body = err.to_body(model_requested="", request_type="admin", attempts=[])
            await context.abort(*encode_status(body, err.retry_after_s))
            raise AssertionError("unreachable") from None  # abort() always raises

    # ---------------------------------------------------------------- keys

    async def CreateVirtualKey(  # gRPC method names are CamelCase
        self, request: apb.CreateVirtualKeyRequest, context: grpc.aio.ServicerContext
    ) -> apb.VirtualKeyWithSecret:
        async def work() -> apb.VirtualKeyWithSecret:
            key_id = request.id or f"vk_{secrets.token_hex(8)}"
            _check_id(key_id, "id")
            secret = new_virtual_key()
            now = time.time()
            key = VirtualKey(
                id=key_id,
                name=request.name or key_id,
                key_hash=hash_secret(secret),
                key_prefix=key_prefix(secret),
                description=request.description,
                expires_at=request.expires_at if request.HasField("expires_at") else None,
                allowed_models=tuple(request.allowed_models),
                allowed_providers=tuple(request.allowed_providers),
                budget=_budget(request.budget) if request.HasField("budget") else None,
                rate_limit=_rate_limit(request.rate_limit) if request.HasField("rate_limit") else None,
                team_id=await self._team_id(request.team_id) if request.HasField("team_id") else None,
                created_at=now,
                updated_at=now,
            )
            try:
                await self._store.insert_key(key)
            except AlreadyExists:
                raise refusal(409, "already_exists", f"a virtual key with id {key_id!r} exists") from None
            self._cache.put(key)
            return apb.VirtualKeyWithSecret(key=await self._key_view(key), secret=secret)

        return await self._run(context, work)

    async def ListVirtualKeys(  # gRPC method names are CamelCase
        self, request: apb.ListVirtualKeysRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListVirtualKeysResponse:
        async def work() -> apb.ListVirtualKeysResponse:
            size = _page_size(request.page_size)
            after = _decode_token(request.page_token) if request.page_token else None
            keys = await self._store.list_keys(limit=size + 1, after_id=after)
            more = len(keys) > size
            keys = keys[:size]
            return apb.ListVirtualKeysResponse(
                keys=[await self._key_view(k) for k in keys],
                next_page_token=_encode_token(keys[-1].id) if more and keys else "",
            )

        return await self._run(context, work)

    async def GetVirtualKey(  # gRPC method names are CamelCase
        self, request: apb.GetVirtualKeyRequest, context: grpc.aio.ServicerContext
    ) -> apb.VirtualKey:
        async def work() -> apb.VirtualKey:
            return await self._key_view(await self._existing(request.id))

        return await self._run(context, work)

    async def UpdateVirtualKey(  # gRPC method names are CamelCase
        self, request: apb.UpdateVirtualKeyRequest, context: grpc.aio.ServicerContext
    ) -> apb.VirtualKey:
        async def work() -> apb.VirtualKey:
            key = await self._existing(request.id)
            changes: dict[str, object] = {}
            for name in ("name", "description", "active"):
                if request.HasField(name):
                    changes[name] = getattr(request, name)
            if request.HasField("active") and request.active:
                changes["revoked_at"] = None  # re-activating a revoked key is an explicit admin choice
            if request.HasField("expires_at"):
                changes["expires_at"] = request.expires_at
            if request.clear_expiry:
                changes["expires_at"] = None
            if request.HasField("allowed_models"):
                changes["allowed_models"] = tuple(request.allowed_models.values)
            if request.HasField("allowed_providers"):
                changes["allowed_providers"] = tuple(request.allowed_providers.values)
            if request.HasField("budget"):
                changes["budget"] = _budget(request.budget)
            if request.clear_budget:
                changes["budget"] = None
            if request.HasField("rate_limit"):
                changes["rate_limit"] = _rate_limit(request.rate_limit)
            if request.clear_rate_limit:
                changes["rate_limit"] = None
            if request.HasField("team_id"):
                changes["team_id"] = await self._team_id(request.team_id)
            if request.clear_team:
                changes["team_id"] = None
            return await self._key_view(await self._save(key.replace(**changes)))

        return await self._run(context, work)

    async def RevokeVirtualKey(  # gRPC method names are CamelCase
        self, request: apb.RevokeVirtualKeyRequest, context: grpc.aio.ServicerContext
    ) -> apb.VirtualKey:
        async def work() -> apb.VirtualKey:
            key = await self._existing(request.id)
            revoked = key.replace(active=False, revoked_at=key.revoked_at or time.time())
            return await self._key_view(await self._save(revoked))

        return await self._run(context, work)

    async def RotateVirtualKey(  # gRPC method names are CamelCase
        self, request: apb.RotateVirtualKeyRequest, context: grpc.aio.ServicerContext
    ) -> apb.VirtualKeyWithSecret:
        async def work() -> apb.VirtualKeyWithSecret:
            key = await self._existing(request.id)
            secret = new_virtual_key()
            rotated = await self._save(
                key.replace(key_hash=hash_secret(secret), key_prefix=key_prefix(secret))
            )
            return apb.VirtualKeyWithSecret(key=await self._key_view(rotated), secret=secret)

        return await self._run(context, work)

    # ---------------------------------------------------------------- teams

    async def UpsertTeam(  # gRPC method names are CamelCase
        self, request: apb.UpsertTeamRequest, context: grpc.aio.ServicerContext
    ) -> apb.Team:
        async def work() -> apb.Team:
            spec = request.team
            _check_id(spec.id, "team.id")
            now = time.time()
            existing = await self._store.get_team(spec.id)
            team = Team(
                id=spec.id,
                name=spec.name or spec.id,
                budget=_budget(spec.budget) if spec.HasField("budget") else None,
                created_at=existing.created_at if existing else now,
                updated_at=now,
            )
            await self._store.upsert_team(team)
            self._cache.put_team(team)
            return await self._team_view(team)

        return await self._run(context, work)

    async def ListTeams(  # gRPC method names are CamelCase
        self, request: apb.ListTeamsRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListTeamsResponse:
        async def work() -> apb.ListTeamsResponse:
            return apb.ListTeamsResponse(
                teams=[await self._team_view(t) for t in await self._store.list_teams()]
            )

        return await self._run(context, work)

    # ---------------------------------------------------------------- logs, usage, stats

    async def QueryLogs(  # gRPC method names are CamelCase
        self, request: apb.QueryLogsRequest, context: grpc.aio.ServicerContext
    ) -> apb.QueryLogsResponse:
        async def work() -> apb.QueryLogsResponse:
            page = await self._store.query_logs(
                LogQuery(
                    key_id=request.key_id or None,
                    request_id=request.request_id or None,
                    model=request.model or None,
                    provider=request.provider or None,
                    error_type=request.error_type or None,
                    team_id=request.team_id or None,
                    errors_only=request.errors_only,
                    status=request.status if request.HasField("status") else None,
                    start=request.start_time if request.HasField("start_time") else None,
                    end=request.end_time if request.HasField("end_time") else None,
                    limit=_page_size(request.page_size),
                    cursor=request.page_token or None,
                )
            )
            return apb.QueryLogsResponse(
                entries=[_log_view(e) for e in page.entries], next_page_token=page.next_cursor or ""
            )

        return await self._run(context, work)

    async def UsageSummary(  # gRPC method names are CamelCase
        self, request: apb.UsageSummaryRequest, context: grpc.aio.ServicerContext
    ) -> apb.UsageSummaryResponse:
        async def work() -> apb.UsageSummaryResponse:
            rows = await self._store.usage_summary(
                start=request.start_time if request.HasField("start_time") else None,
                end=request.end_time if request.HasField("end_time") else None,
                key_id=request.key_id or None,
            )
            return apb.UsageSummaryResponse(rows=[_usage_view(r) for r in rows])

        return await self._run(context, work)

    async def GetStats(  # gRPC method names are CamelCase
        self, request: apb.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> apb.Stats:
        async def work() -> apb.Stats:
            gov = self._gov
            stats = apb.Stats(
                unpriced_requests=gov.unpriced_requests,
                unpriced_models=sorted(gov.unpriced_models),
                malformed_stream_chunks=self._stats.malformed_stream_chunks,
                streams_ended_at_shutdown=self._stats.streams_ended_at_shutdown,
                circuits=_circuits(self._health),
            )
            if gov.logs is not None:
                stats.request_logs_dropped = gov.logs.dropped
                stats.request_logs_written = gov.logs.written
                stats.request_logs_queued = gov.logs.queued
                stats.request_log_write_errors = gov.logs.write_errors
            return stats

        return await self._run(context, work)

    async def GetLogEntry(  # gRPC method names are CamelCase
        self, request: apb.GetLogEntryRequest, context: grpc.aio.ServicerContext
    ) -> apb.LogEntry:
        async def work() -> apb.LogEntry:
            entry = await self._store.get_log(request.id) if request.id else None
            if entry is None:
                raise refusal(404, "not_found", f"no request-log entry with id {request.id!r}")
            return _log_view(entry)

        return await self._run(context, work)

    async def UsageOverview(  # gRPC method names are CamelCase
        self, request: apb.UsageOverviewRequest, context: grpc.aio.ServicerContext
    ) -> apb.UsageOverviewResponse:
        async def work() -> apb.UsageOverviewResponse:
            end = request.end_time if request.HasField("end_time") else time.time()
            start = (
                request.start_time if request.HasField("start_time") else end - admin_views.DEFAULT_RANGE_S
            )
            if start >= end:
                raise invalid_request("`start_time` must be before `end_time`", "start_time")
            if request.bucket_s < 0 or request.top < 0:
                param = "bucket_s" if request.bucket_s < 0 else "top"
                raise invalid_request(f"`{param}` must not be negative", param)
            bucket_s = admin_views.bucket_seconds(start, end, request.bucket_s)
            top = admin_views.top_rows(request.top)
            overview = await self._store.usage_overview(
                start=start,
                end=end,
                bucket_s=bucket_s,
                key_id=request.key_id or None,
                team_id=request.team_id or None,
                top=top,
            )
            view = admin_views.overview_view(overview, start, end, bucket_s)
            if not (request.key_id or request.team_id):
                view.budgets.extend(await self._budget_uses(top))
            return view

        return await self._run(context, work)

    async def GetConfigView(  # gRPC method names are CamelCase
        self, request: apb.GetConfigViewRequest, context: grpc.aio.ServicerContext
    ) -> apb.ConfigView:
        async def work() -> apb.ConfigView:
            return admin_views.config_view(self._config, self._gov.prices)

        return await self._run(context, work)

    async def ListModels(  # gRPC method names are CamelCase
        self, request: apb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListModelsResponse:
        async def work() -> apb.ListModelsResponse:
            return apb.ListModelsResponse(prices=admin_views.price_views(self._gov.prices))

        return await self._run(context, work)

    # ---------------------------------------------------------------- response cache

    def _response(self) -> ResponseCache:
        if self._response_cache is None:
            raise refusal(404, "cache_disabled", "the response cache is off (cache.enabled)")
        return self._response_cache

    async def ClearCacheEntry(  # gRPC method names are CamelCase
        self, request: apb.ClearCacheEntryRequest, context: grpc.aio.ServicerContext
    ) -> apb.ClearCacheResponse:
        async def work() -> apb.ClearCacheResponse:
            if not request.cache_id:
                raise invalid_request("`cache_id` is required", "cache_id")
            deleted = await self._response().delete(request.cache_id)
            return apb.ClearCacheResponse(deleted=int(deleted))

        return await self._run(context, work)

    async def ClearCachePartition(  # gRPC method names are CamelCase
        self, request: apb.ClearCachePartitionRequest, context: grpc.aio.ServicerContext
    ) -> apb.ClearCacheResponse:
        async def work() -> apb.ClearCacheResponse:
            if not request.partition:
                raise invalid_request(
                    "`partition` is required: key:<virtual key id>, team:<team id> or shared", "partition"
                )
            cache_key = request.cache_key if request.HasField("cache_key") else None
            return apb.ClearCacheResponse(deleted=await self._response().clear(request.partition, cache_key))

        return await self._run(context, work)

    async def GetCacheStats(  # gRPC method names are CamelCase
        self, request: apb.GetCacheStatsRequest, context: grpc.aio.ServicerContext
    ) -> apb.CacheStats:
        async def work() -> apb.CacheStats:
            cache = self._response_cache
            if cache is None:
                return apb.CacheStats(enabled=False)
            entries, size, vectors = await cache.usage()
            counts = cache.counts
            return apb.CacheStats(
                enabled=True,
                store=cache.store.name,
                entries=entries,
                bytes=size,
                exact_hits=counts.exact_hits,
                semantic_hits=counts.semantic_hits,
                misses=counts.misses,
                writes=counts.writes,
                write_failures=counts.write_failures,
                writes_dropped=counts.writes_dropped,
                semantic_entries=vectors,
            )

        return await self._run(context, work)

    # ---------------------------------------------------------------- helpers

    async def _budget_uses(self, top: int) -> list[apb.BudgetUse]:
        """Every key and team with a budget, the most used first, ``top`` of each kind."""
        keys: list[apb.BudgetUse] = []
        after: str | None = None
        for _ in range(_MAX_BUDGET_PAGES):  # bounded: an overview must answer fast
            page = await self._store.list_keys(limit=_MAX_PAGE, after_id=after)
            for key in page:
                if key.budget is not None and key.active:
                    use = apb.BudgetUse(kind="key", id=key.id, name=key.name, budget=_budget_view(key.budget))
                    await self._fill_usage(use.usage, Admission(None, key=key))
                    keys.append(use)
            if len(page) < _MAX_PAGE:
                break
            after = page[-1].id
        teams: list[apb.BudgetUse] = []
        for team in await self._store.list_teams():
            if team.budget is not None:
                use = apb.BudgetUse(kind="team", id=team.id, name=team.name, budget=_budget_view(team.budget))
                await self._fill_usage(use.usage, Admission(None, team=team))
                teams.append(use)

        def used(use: apb.BudgetUse) -> float:
            spent = use.usage.spent_usd if use.HasField("usage") else 0.0
            return spent / use.budget.max_usd if use.budget.max_usd > 0 else float(spent > 0)

        return [
            *sorted(teams, key=used, reverse=True)[:top],
            *sorted(keys, key=used, reverse=True)[:top],
        ]

    async def _existing(self, key_id: str) -> VirtualKey:
        key = await self._store.get_key(key_id) if key_id else None
        if key is None:
            raise refusal(404, "not_found", f"no virtual key with id {key_id!r}")
        return key

    async def _save(self, key: VirtualKey) -> VirtualKey:
        key = key.replace(updated_at=time.time())
        await self._store.update_key(key)
        self._cache.put(key)
        return key

    async def _team_id(self, team_id: str) -> str:
        if await self._store.get_team(team_id) is None:
            raise invalid_request(
                f"unknown team {team_id!r}: create it first (PUT /api/teams/{{id}})", "team_id"
            )
        return team_id

    async def _key_view(self, key: VirtualKey) -> apb.VirtualKey:
        view = apb.VirtualKey(
            id=key.id,
            name=key.name,
            description=key.description,
            active=key.active,
            allowed_models=key.allowed_models,
            allowed_providers=key.allowed_providers,
            key_prefix=key.key_prefix,
            created_at=key.created_at,
            updated_at=key.updated_at,
        )
        if key.expires_at is not None:
            view.expires_at = key.expires_at
        if key.revoked_at is not None:
            view.revoked_at = key.revoked_at
        if key.team_id is not None:
            view.team_id = key.team_id
        if key.rate_limit is not None:
            limit = key.rate_limit
            if limit.requests_per_minute is not None:
                view.rate_limit.requests_per_minute = limit.requests_per_minute
            if limit.tokens_per_minute is not None:
                view.rate_limit.tokens_per_minute = limit.tokens_per_minute
            view.rate_limit.SetInParent()
        if key.budget is not None:
            view.budget.CopyFrom(_budget_view(key.budget))
            await self._fill_usage(view.budget_usage, Admission(None, key=key))
        return view

    async def _team_view(self, team: Team) -> apb.Team:
        view = apb.Team(id=team.id, name=team.name, created_at=team.created_at, updated_at=team.updated_at)
        if team.budget is not None:
            view.budget.CopyFrom(_budget_view(team.budget))
            await self._fill_usage(view.budget_usage, Admission(None, team=team))
        return view

    async def _fill_usage(self, usage: apb.BudgetUsage, owner: Admission) -> None:
        """The budget's current window, left unset when the counters cannot be read: the record
        itself (and a new key's secret, shown only once) must still reach the caller."""
        for scope in self._gov.budget_scopes(owner):
            try:
                spent, reserved = await self._gov.budget_usage(scope)
            except CountersUnavailable as exc:
                log.warning("budget usage of %s not shown: %s", scope.id, exc)
                return
            usage.SetInParent()  # present even when every figure is 0
            usage.spent_usd, usage.reserved_usd = spent, reserved
            usage.window_start, usage.window_end = scope.window_start, scope.window_end


def _check_id(value: str, param: str) -> None:
    if not _ID.match(value):
        raise invalid_request(
            f"`{param}` must be 1-128 characters: letters, digits, '.', '_', ':' or '-'", param
        )


def _budget(spec: apb.Budget) -> BudgetConfig:
    if spec.max_usd < 0:
        raise invalid_request("`budget.max_usd` must not be negative", "budget.max_usd")
    reset = spec.reset or "1mo"
    if reset not in BUDGET_RESETS:
        raise invalid_request(f"`budget.reset` must be one of {', '.join(BUDGET_RESETS)}", "budget.reset")
    # Unset means calendar-aligned, the same default as the config file and the CLI.
    aligned = spec.calendar_aligned if spec.HasField("calendar_aligned") else True
    return BudgetConfig(max_usd=spec.max_usd, reset=reset, calendar_aligned=aligned)


def _budget_view(budget: BudgetConfig) -> apb.Budget:
    return apb.Budget(max_usd=budget.max_usd, reset=budget.reset, calendar_aligned=budget.calendar_aligned)


def _rate_limit(spec: apb.RateLimit) -> RateLimitConfig:
    values: dict[str, int] = {}
    for name in ("requests_per_minute", "tokens_per_minute"):
        if spec.HasField(name):
            value = getattr(spec, name)
            if value < 1:
                raise invalid_request(f"`rate_limit.{name}` must be at least 1", f"rate_limit.{name}")
            values[name] = value
    return RateLimitConfig(**values)


def _page_size(requested: int) -> int:
    if requested < 0:
        raise invalid_request("`page_size` must not be negative", "page_size")
    return min(requested or 100, _MAX_PAGE)


def _encode_token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise invalid_request("`page_token` is not one this API returned", "page_token") from None


def _log_view(entry: LogEntry) -> apb.LogEntry:
    view = apb.LogEntry(
        id=entry.id,
        ts=entry.ts,
        request_type=entry.request_type,
        request_id=entry.request_id,
        key_id=entry.key_id or "",
        team_id=entry.team_id or "",
        model_requested=entry.model_requested,
        provider=entry.provider,
        model_served=entry.model_served,
        status=entry.status,
        error_type=entry.error_type or "",
        attempts_json=entry.attempts_json,
        prompt_tokens=entry.prompt_tokens,
        completion_tokens=entry.completion_tokens,
        total_tokens=entry.total_tokens,
        latency_ms=entry.latency_ms,
    )
    if entry.cost is not None:
        view.cost = entry.cost
    if entry.content_json is not None:
        view.content_json = entry.content_json
    if entry.cache_hit_type is not None:
        view.cache_hit_type = entry.cache_hit_type
        view.cache_id = entry.cache_id or ""
    return view


def _usage_view(row: UsageRow) -> apb.UsageRow:
    return apb.UsageRow(
        key_id=row.key_id,
        model=row.model,
        day=row.day,
        requests=row.requests,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        total_tokens=row.total_tokens,
        cost=row.cost,
    )


def _circuits(health: Health | None) -> list[apb.Circuit]:
    if health is None:
        return []
    now_ms = time.time() * 1000
    return [
        apb.Circuit(
            provider=view.provider,
            model=view.model,
            key=view.key,
            state=view.state.name.lower(),
            consecutive_failures=view.consecutive_failures,
            window_failures=view.window_failures,
            window_requests=view.window_requests,
            open_until_ms=round(now_ms + view.open_for_s * 1000) if view.open_for_s else 0,
            open_for_s=round(view.open_for_s, 3),
        )
        for view in health.views()
    ]
