"""Governance: who may call, what they may reach, what they may spend, and what each call cost.

The engine calls it at four points of every request (the order of Bifrost's
governance plugin):

1. :meth:`Governance.admit` before routing: credential -> identity -> virtual key
   (active, not expired) -> rate limits. Refusals are 401/403/429.
2. :meth:`Governance.check_plan` after routing: the primary target must be allowed
   for the key (403 otherwise); fallbacks it may not use are skipped and reported.
3. :meth:`Governance.reserve` before each target is called: the worst-case cost is
   reserved against the key's and team's budgets (402 when exhausted), and
   :meth:`Governance.settle` books the real cost after.
4. :meth:`Governance.record` at the end: the request-log entry (off the hot path).

Virtual keys and teams are read from an in-memory cache (``KeyCache``) that a
background task keeps in step with the store, so no request waits on the database
except the first use of a key this replica has never seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from service.auth import Authenticator, AuthError, Identity, hash_secret, key_prefix, read_credential
from service.counters import (
    BudgetExceeded,
    BudgetScope,
    Counters,
    CountersUnavailable,
    RateScope,
    Reservation,
)
from service.counters.windows import budget_scope
from service.errors import FailureClass, GatewayError
from service.key_cache import KeyCache
from service.pricing import PriceTable, estimate_prompt_tokens
from service.records import LogEntry, Team, VirtualKey
from service.request_log import RequestLogWriter
from service.routing import RoutePlan, Target
from service.store import AlreadyExists, Store, StoreError
from switchyard.config import BudgetConfig, Config, ModelPrice
from switchyard.v1 import chat_pb2 as pb
from switchyard.v1 import embeddings_pb2 as epb

log = logging.getLogger("switchyard.service")

# A reservation outlives any unary call (timeouts.total_s) and most streams; a stream
# running longer still settles its real cost, it just stops holding budget meanwhile.
_MIN_HOLD_S = 2 * 3600
_RECOVERY_MEMORY = 10_000
_SCOPE_CACHE_LIMIT = 10_000


class Refused(GatewayError):
    """A governance refusal: the caller's problem, so never retried and never a fallback.

    ``admission`` is who was refused, once the virtual key is known (an inactive, expired
    or rate-limited key), so the request log files the refusal under that key and team.
    """

    admission: Admission | None = None
    refusal = True


def refusal(
    status: int,
    type_: str,
    message: str,
    *,
    code: str | None = None,
    retry_after_s: float | None = None,
    admission: Admission | None = None,
) -> Refused:
    err = Refused(status, type_, message, failure=FailureClass.CALLER, code=code, retry_after_s=retry_after_s)
    err.admission = admission
    return err


@dataclass(frozen=True, slots=True)
class Admission:
    """Who a request runs as. ``key`` is None for admin and open-mode calls."""

    identity: Identity | None
    key: VirtualKey | None = None
    team: Team | None = None

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key else None

    @property
    def team_id(self) -> str | None:
        return self.team.id if self.team else None


OPEN = Admission(None)


class Governance:
    def __init__(
        self,
        config: Config,
        store: Store,
        counters: Counters,
        prices: PriceTable,
        logs: RequestLogWriter | None,
    ) -> None:
        self._config = config
        self._required = config.auth.required
        self._auth = Authenticator(config.auth)
        self.store = store
        self.counters = counters
        self.prices = prices
        self.logs = logs
        self.keys = KeyCache(store, config.auth.key_cache_ttl_s)
        self._hold_s = max(_MIN_HOLD_S, config.timeouts.total_s)
        self._reserve_tokens = config.pricing.reserve_max_tokens
        # Budget windows whose spend this process recovers (or recovered) from the request log.
        self._recovering: dict[tuple[str, float], asyncio.Future[None]] = {}
        self._scopes: dict[tuple[str, BudgetConfig, float], BudgetScope] = {}
        # Shared counters (Redis) outlive this process; in-process ones start empty.
        self._recover_spend = not counters.shared
        self.unpriced_requests = 0
        self.unpriced_models: set[str] = set()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        await self._seed()
        await self.keys.load()
        self.keys.start()
        if self.logs is not None:
            self.logs.start()
        if not self._required:
            log.warning(
                "auth.required is false: OPEN MODE, requests without a credential are served with no limits"
            )
        elif not (self._config.auth.admin_token or self._auth.accepts_jwts or self.keys.count):
            log.warning(
                "auth is required but no credential can pass: no admin token, no JWT key and no virtual"
                " key. Set SWITCHYARD_ADMIN_TOKEN (auth.admin_token) and create keys with it."
            )

    async def aclose(self) -> None:
        """After in-flight calls finished: flush the request log, then close connections."""
        await self.keys.aclose()
        if self.logs is not None:
            await self.logs.aclose()
        await self.counters.aclose()
        await self.store.aclose()

    async def _seed(self) -> None:
        """Teams and keys from the config file, when the store does not have them yet."""
        now = time.time()
        for team_config in self._config.teams.values():
            if await self.store.get_team(team_config.id) is None:
                await self.store.upsert_team(
                    Team(team_config.id, team_config.name, team_config.budget, now, now)
                )
        for spec in self._config.virtual_keys:
            if await self.store.get_key(spec.id) is not None:
                continue  # the store is the source of truth once a key is there
            key = VirtualKey(
                id=spec.id,
                name=spec.name,
                key_hash=hash_secret(spec.secret.value),
                key_prefix=key_prefix(spec.secret.value),
                description=spec.description,
                active=spec.active,
                expires_at=spec.expires_at,
                allowed_models=spec.allowed_models,
                allowed_providers=spec.allowed_providers,
                budget=spec.budget,
                rate_limit=spec.rate_limit,
                team_id=spec.team_id,
                created_at=now,
                updated_at=now,
            )
            with contextlib.suppress(AlreadyExists):  # another replica seeded it first
                await self.store.insert_key(key)

    # ---------------------------------------------------------------- 1. admission

    def identify(self, metadata: Iterable[tuple[str, str | bytes]], now: float) -> Identity | None:
        """The caller's verified identity; None without a credential. Raises 401 refusals."""
        token = read_credential(metadata)
        if token is None:
            return None
        try:
            return self._auth.identify(token, now)
        except AuthError as exc:
            raise refusal(401, "invalid_credentials", str(exc)) from None

    async def require_admin(self, metadata: Iterable[tuple[str, str | bytes]]) -> Identity:
        now = time.time()
        identity = self.identify(metadata, now)
        if identity is None:
            raise refusal(401, "missing_credentials", "an admin credential is required")
        if not identity.is_admin:
            if await self._find_key(identity, now) is None:
                raise refusal(401, "invalid_credentials", "unknown virtual key")
            raise refusal(403, "admin_required", "this call needs an admin credential, not a virtual key")
        return identity

    async def admit(self, metadata: Iterable[tuple[str, str | bytes]]) -> Admission:
        now = time.time()
        try:
            identity = self.identify(metadata, now)
        except GatewayError:
            if not self._required:
                return OPEN  # open mode ignores credentials it cannot use (SDKs always send one)
            raise
        if identity is None:
            if not self._required:
                return OPEN
            raise refusal(
                401,
                "missing_credentials",
                "no credential: send `Authorization: Bearer <key>`, `api-key: <key>` or `x-bf-vk: <key>`",
            )
        if identity.is_admin:
            return Admission(identity)
        key = await self._find_key(identity, now)
        if key is None:
            if not self._required:
                return OPEN
            raise refusal(401, "invalid_credentials", "unknown virtual key")
        admission = Admission(identity, key, self.keys.team(key.team_id))
        if not key.active or key.revoked_at is not None:
            raise refusal(
                403, "virtual_key_inactive", f"virtual key {key.id!r} is not active", admission=admission
            )
        if key.expires_at is not None and key.expires_at <= now:
            raise refusal(
                403, "virtual_key_expired", f"virtual key {key.id!r} has expired", admission=admission
            )
        await self._check_rate(admission, now)
        return admission

    async def _find_key(self, identity: Identity, now: float) -> VirtualKey | None:
        try:
            if identity.key_hash:
                return await self.keys.by_hash(identity.key_hash, now)
            return await self.keys.by_id(identity.key_id, now)
        except StoreError as exc:
            log.error("virtual key lookup failed: %s", exc)
            raise GatewayError(
                503, "store_unavailable", "the key store is unavailable", failure=FailureClass.CONFIG
            ) from None

    async def _check_rate(self, admission: Admission, now: float) -> None:
        key = admission.key
        assert key is not None
        scope = _rate_scope(key)
        if scope is None:
            return
        with _counters_errors():
            wait = await self.counters.check_rate(scope, now)
        if wait is not None:
            raise refusal(
                429,
                "rate_limit_exceeded",
                f"virtual key {key.id!r} is over its rate limit; retry in {wait:.1f}s",
                code="virtual_key_rate_limit",
                retry_after_s=wait,
                admission=admission,
            )

    # ---------------------------------------------------------------- 2. what the key may reach

    def check_plan(self, admission: Admission, plan: RoutePlan) -> RoutePlan:
        key = admission.key
        if key is None or not (key.allowed_models or key.allowed_providers):
            return plan
        primary, *fallbacks = plan.targets
        denied = _not_allowed(key, primary)
        if denied is not None:
            type_, what = denied
            raise refusal(403, type_, f"virtual key {key.id!r} may not use {what}")
        allowed = [primary]
        skipped = list(plan.skipped)
        for target in fallbacks:
            denied = _not_allowed(key, target)
            if denied is None:
                allowed.append(target)
            else:
                skipped.append(
                    (target.ref or target.label, f"not allowed for this virtual key ({denied[1]})")
                )
        return RoutePlan(tuple(allowed), tuple(skipped))

    # ---------------------------------------------------------------- 3. budgets and cost

    async def reserve(
        self,
        admission: Admission,
        target: Target,
        request: pb.ChatCompletionRequest | epb.EmbeddingsRequest,
        body_size: int,
    ) -> Reservation | None:
        scopes = self._budget_scopes(admission, time.time())
        if not scopes:
            return None
        if self._recover_spend:
            await self._recover(scopes)
        price = self.prices.lookup(target.base_model or target.model, target.provider)
        amount = 0.0
        if price is not None:
            max_out = _max_output_tokens(request)
            if max_out is None:
                max_out = self._reserve_tokens
            amount = self.prices.worst_case_usd(price, estimate_prompt_tokens(body_size), max_out)
        try:
            with _counters_errors():
                return await self.counters.reserve(scopes, amount, time.time(), self._hold_s)
        except BudgetExceeded as exc:
            owner = "team" if exc.scope.id.startswith("team:") else "virtual key"
            raise refusal(
                402,
                "budget_exceeded",
                f"the {owner} budget is exhausted until the window resets "
                f"(spent {exc.spent:.4f} of {exc.scope.limit_usd:.4f} USD)",
                code="team_budget_exceeded" if owner == "team" else "key_budget_exceeded",
                retry_after_s=max(0.0, exc.scope.window_end - time.time()),
            ) from None

    async def settle(
        self, admission: Admission, reservation: Reservation | None, cost: float | None, tokens: int
    ) -> None:
        if reservation is not None:
            await self.counters.settle(reservation, cost or 0.0)
        key = admission.key
        if key is not None and tokens:
            scope = _rate_scope(key)
            if scope is not None and scope.tokens_per_minute is not None:
                await self.counters.add_tokens(scope, tokens, time.time())

    def price_usage(self, usage: pb.Usage, target: Target, served_model: str) -> float | None:
        """Fill ``usage.cost``; the total in USD, or None when the model has no price."""
        price = self._price(target, served_model)
        if price is None:
            return None
        usage.cost.CopyFrom(self.prices.cost(price, usage))
        return usage.cost.total_cost

    def _price(self, target: Target, served_model: str) -> ModelPrice | None:
        for model in (target.base_model, served_model, target.model):
            if model:
                price = self.prices.lookup(model, target.provider)
                if price is not None:
                    return price
        self.unpriced_requests += 1
        name = f"{target.provider}/{target.base_model or served_model or target.model}"
        if name not in self.unpriced_models and len(self.unpriced_models) < 1000:
            self.unpriced_models.add(name)
            log.warning("no price for %s: its cost is reported as null (add it under pricing.models)", name)
        return None

    def budget_scopes(self, admission: Admission) -> list[BudgetScope]:
        return self._budget_scopes(admission, time.time())

    def _budget_scopes(self, admission: Admission, now: float) -> list[BudgetScope]:
        scopes: list[BudgetScope] = []
        key, team = admission.key, admission.team
        if key is not None and key.budget is not None:
            scopes.append(self._scope(f"key:{key.id}", key.budget, key.created_at, now))
        if team is not None and team.budget is not None:
            scopes.append(self._scope(f"team:{team.id}", team.budget, team.created_at, now))
        return scopes

    def _scope(self, scope_id: str, budget: BudgetConfig, anchor: float, now: float) -> BudgetScope:
        """The scope's current window; kept until it ends, since the date arithmetic is not free."""
        cache_key = (scope_id, budget, anchor)
        scope = self._scopes.get(cache_key)
        if scope is None or not scope.window_start <= now < scope.window_end:
            if len(self._scopes) >= _SCOPE_CACHE_LIMIT:
                self._scopes.clear()
            scope = self._scopes[cache_key] = budget_scope(scope_id, budget, anchor, now)
        return scope

    async def budget_usage(self, scope: BudgetScope) -> tuple[float, float]:
        """(spent, reserved) in the scope's current window, as the budget check sees it."""
        if self._recover_spend:
            await self._recover((scope,))
        return await self.counters.spent(scope)

    async def _recover(self, scopes: Sequence[BudgetScope]) -> None:
        """In-process counters start empty: take each window's spend from the request log, once.

        Concurrent first requests share one lookup, so none of them reserves before it is done.
        """
        for scope in scopes:
            marker = (scope.id, scope.window_start)
            task = self._recovering.get(marker)
            if task is None:
                if len(self._recovering) >= _RECOVERY_MEMORY:
                    # Forgetting a finished recovery only costs a repeat lookup (the floor is a max).
                    self._recovering = {m: t for m, t in self._recovering.items() if not t.done()}
                task = self._recovering[marker] = asyncio.ensure_future(self._recover_scope(scope))
            await asyncio.shield(task)

    async def _recover_scope(self, scope: BudgetScope) -> None:
        kind, _, scope_id = scope.id.partition(":")
        try:
            if kind == "team":
                spent = await self.store.spend_since(team_id=scope_id, since=scope.window_start)
            else:
                spent = await self.store.spend_since(key_id=scope_id, since=scope.window_start)
        except StoreError as exc:
            log.warning("could not recover the spend of %s from the request log: %s", scope.id, exc)
            return
        await self.counters.set_spent_floor(scope, spent)

    # ---------------------------------------------------------------- 4. the request log

    @property
    def keeps_logs(self) -> bool:
        return self.logs is not None

    def record(self, entry: LogEntry) -> None:
        if self.logs is not None:
            self.logs.submit(entry)

    @property
    def include_content(self) -> bool:
        return self._config.request_logs.include_content


@contextlib.contextmanager
def _counters_errors() -> Iterator[None]:
    """The shared counters are down: fail closed (503), since a limit that cannot be checked
    must not be skipped. Calls without limits or budgets never touch the counters."""
    try:
        yield
    except CountersUnavailable as exc:
        log.error("rate-limit/budget counters unavailable: %s", exc)
        raise GatewayError(503, "counters_unavailable", str(exc), failure=FailureClass.CONFIG) from None


def _rate_scope(key: VirtualKey) -> RateScope | None:
    limit = key.rate_limit
    if limit is None or (limit.requests_per_minute is None and limit.tokens_per_minute is None):
        return None
    return RateScope(f"key:{key.id}", limit.requests_per_minute, limit.tokens_per_minute)


def _matches(value: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


def _not_allowed(key: VirtualKey, target: Target) -> tuple[str, str] | None:
    """(refusal type, what was refused) when ``key`` may not use ``target``; None when it may."""
    if key.allowed_providers and not _matches(target.provider, key.allowed_providers):
        return "provider_not_allowed", f"provider {target.provider!r}"
    if key.allowed_models and not any(_model_allowed(p, target) for p in key.allowed_models):
        return "model_not_allowed", f"model {target.ref or target.label!r}"
    return None


def _model_allowed(pattern: str, target: Target) -> bool:
    # `provider/model` patterns match the qualified name; bare patterns match the deployment id or
    # model the caller named and the model served. Kept apart because fnmatch's `*` crosses '/':
    # otherwise `a*` would match `azure/<every deployment>`.
    qualified = "/" in pattern
    names = [target.label] if qualified else [target.model]
    if target.ref and ("/" in target.ref) == qualified:
        names.append(target.ref)
    return any(fnmatch.fnmatchcase(name, pattern) for name in names)


def _max_output_tokens(request: pb.ChatCompletionRequest | epb.EmbeddingsRequest) -> int | None:
    """The most output tokens a call may be billed for; None when the caller set no limit."""
    if isinstance(request, epb.EmbeddingsRequest):
        return 0  # an embedding is billed for its input only
    for name in ("max_completion_tokens", "max_tokens"):
        if request.HasField(name):
            return int(getattr(request, name)) * max(1, request.n if request.HasField("n") else 1)
    return None
