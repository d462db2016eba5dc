"""The read-only views the Admin API adds for the web console: the redacted configuration, the
price table, and the usage overview's time buckets and breakdowns.

Kept apart from ``service/admin.py`` (the key, team and log calls) because these are pure
conversions: config and store records in, proto messages out, no I/O. What leaves here never
holds a secret: a provider key is shown by its name, weight and model globs only, and a base URL
loses any user information and query string (either may carry a credential).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from service.pricing import PriceTable
from service.records import UsageBreakdown, UsageBucket, UsageOverview
from switchyard.config import Config, ModelPrice, ProviderConfig
from switchyard.v1 import admin_pb2 as apb

# Bucket widths the overview snaps to (seconds), so a chart's ticks fall on round times.
NICE_BUCKETS_S = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
TARGET_BUCKETS = 60
MAX_BUCKETS = 1000
MIN_BUCKET_S = 60
DEFAULT_RANGE_S = 86400.0
DEFAULT_TOP = 10
MAX_TOP = 100


def bucket_seconds(start: float, end: float, requested: int) -> int:
    """The bucket width for [start, end): the caller's, widened to at most ``MAX_BUCKETS``
    buckets; or, when not given, the nice width giving about ``TARGET_BUCKETS``."""
    span = max(end - start, 1.0)
    floor = max(MIN_BUCKET_S, int(-(-span // MAX_BUCKETS)))
    if requested > 0:
        return max(requested, floor)
    wanted = span / TARGET_BUCKETS
    for nice in NICE_BUCKETS_S:
        if nice >= wanted:
            return max(nice, floor)
    return max(NICE_BUCKETS_S[-1], floor)


def top_rows(requested: int) -> int:
    return min(requested or DEFAULT_TOP, MAX_TOP)


# ---------------------------------------------------------------- usage overview


def overview_view(
    overview: UsageOverview, start: float, end: float, bucket_s: int
) -> apb.UsageOverviewResponse:
    return apb.UsageOverviewResponse(
        start_time=start,
        end_time=end,
        bucket_s=bucket_s,
        buckets=[_bucket(b) for b in overview.buckets],
        totals=_bucket(overview.totals),
        by_model=_rows(overview.by_model),
        by_key=_rows(overview.by_key),
        by_team=_rows(overview.by_team),
        by_provider=_rows(overview.by_provider),
        top_error_keys=_rows(overview.top_error_keys),
        top_error_models=_rows(overview.top_error_models),
    )


def _bucket(bucket: UsageBucket) -> apb.UsageBucket:
    return apb.UsageBucket(
        start=bucket.start,
        requests=bucket.requests,
        errors=bucket.errors,
        cost=bucket.cost,
        prompt_tokens=bucket.prompt_tokens,
        completion_tokens=bucket.completion_tokens,
        total_tokens=bucket.total_tokens,
    )


def _rows(rows: Iterable[UsageBreakdown]) -> list[apb.UsageBreakdown]:
    return [
        apb.UsageBreakdown(
            name=r.name, requests=r.requests, errors=r.errors, cost=r.cost, total_tokens=r.total_tokens
        )
        for r in rows
    ]


# ---------------------------------------------------------------- configuration


def config_view(config: Config, prices: PriceTable) -> apb.ConfigView:
    """The configuration an operator may see: routing, providers without their secrets, prices."""
    view = apb.ConfigView(
        auth_required=config.auth.required,
        jwt_enabled=bool(
            config.auth.jwt.secret or config.auth.jwt.public_key_file or config.auth.jwt.jwks_file
        ),
        request_logs_enabled=config.request_logs.enabled,
        request_logs_include_content=config.request_logs.include_content,
        store="postgresql" if config.store.url.startswith("postgres") else "sqlite",
        shared_counters=bool(config.store.redis_url),
        default_provider=config.routing.default_provider,
        restrict_to_declared=config.routing.restrict_to_declared,
        circuit_breakers=config.resilience.circuit.enabled,
        providers=[_provider(p) for p in config.providers.values()],
    )
    priced: dict[str, apb.ModelPriceView] = {}
    for dep in config.deployments.values():
        targets = []
        for target in dep.targets:
            tv = apb.TargetView(
                provider=target.provider,
                model=target.model,
                weight=target.weight,
                base_model=target.base_model,
            )
            provider = config.providers.get(target.provider)
            base = target.base_model or (provider.base_models.get(target.model, "") if provider else "")
            found = _lookup(prices, base or target.model, target.provider)
            if found is not None:
                tv.price.CopyFrom(found)
                priced[found.model] = found
            targets.append(tv)
        view.deployments.append(
            apb.DeploymentView(
                name=dep.name,
                targets=targets,
                fallbacks=dep.fallbacks,
                context_fallbacks=dep.context_fallbacks,
                routing=dep.routing,
            )
        )
        for ref in (*dep.fallbacks, *dep.context_fallbacks):
            provider_name, _, model = ref.partition("/")
            if model and provider_name in config.providers:
                found = _lookup(prices, model, provider_name)
                if found is not None:
                    priced[found.model] = found
    view.prices.extend(priced[name] for name in sorted(priced))
    return view


def price_views(prices: PriceTable) -> list[apb.ModelPriceView]:
    return [price_view(name, price) for name, price in sorted(prices.models.items())]


def price_view(name: str, price: ModelPrice) -> apb.ModelPriceView:
    view = apb.ModelPriceView(
        model=name, input=price.input, output=price.output, per_request=price.per_request
    )
    if price.cached_input is not None:
        view.cached_input = price.cached_input
    if price.cache_write is not None:
        view.cache_write = price.cache_write
    if price.reasoning is not None:
        view.reasoning = price.reasoning
    return view


def _lookup(prices: PriceTable, model: str, provider: str) -> apb.ModelPriceView | None:
    price = prices.lookup(model, provider)
    if price is None:
        return None
    # The table's name for it: the provider-qualified entry when that is the one that applies.
    qualified = f"{provider}/{model}"
    name = qualified if prices.models.get(qualified) is price else model
    return price_view(name, price)


def _provider(provider: ProviderConfig) -> apb.ProviderView:
    return apb.ProviderView(
        name=provider.name,
        kind=provider.kind,
        base_url=safe_url(provider.base_url),
        keys=[
            apb.ProviderKeyView(
                name=key.name or str(index),
                weight=key.weight,
                models=key.models,
                api_version=key.api_version or "",
            )
            for index, key in enumerate(provider.keys)
        ],
        base_models=dict(provider.base_models),
        max_connections=provider.max_connections,
    )


def safe_url(url: str) -> str:
    """``url`` without user information, query or fragment: any of them may hold a credential."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(not shown)"
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
