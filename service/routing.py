"""Where a request goes: deployment ids and ``provider/model`` refs -> targets, and key choice.

A route ref is resolved in this order:
1. a deployment declared in the config -> one of its targets, chosen by weight;
2. ``provider/model`` where ``provider`` is configured -> that provider and model;
3. anything else -> the default provider with the ref as its deployment/model,
   unless ``routing.restrict_to_declared`` is on, which makes it a 404.
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from service.errors import FailureClass, GatewayError
from service.health import Health
from service.hedging import HedgeTimes
from switchyard.config import (
    Config,
    DeploymentConfig,
    HedgeConfig,
    KeyConfig,
    ProviderConfig,
    TargetConfig,
    TimeoutConfig,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    model: str
    # What the caller (or the config) named to get here: a deployment id or `provider/model`.
    ref: str = field(default="", compare=False)
    # The model whose price applies, when the config names one (Azure deployments).
    base_model: str = field(default="", compare=False)
    # A deployment's own time limits for this target; None: its provider's (``ProviderConfig.timeouts``).
    timeouts: TimeoutConfig | None = field(default=None, compare=False)
    # Its deployment's routing: "latency" also chooses among the provider's keys by latency.
    routing: str = field(default="weighted", compare=False)

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """The primary target, then the fallbacks to try in order."""

    targets: tuple[Target, ...]
    # Fallback refs that could not be used, with why (reported in extra_fields.attempts).
    skipped: tuple[tuple[str, str], ...] = ()
    # The deployment's context_fallbacks: tried only when the primary's prompt is too long.
    context_targets: tuple[Target, ...] = ()
    # Hedged requests (service/hedging.py): the second target, and when it starts.
    hedge: Target | None = None
    hedge_config: HedgeConfig | None = None


# Latency routing: one call in this many takes the plain weighted choice (exploration).
EXPLORE = 20


class Router:
    def __init__(
        self, config: Config, rng: random.Random | None = None, health: Health | None = None
    ) -> None:
        self._config = config
        self._rng = rng or random.Random()
        # Circuit breakers (service/health.py): None when they are off.
        self.health = health
        # Time to answer of the targets of latency-routed deployments (only those: callers can
        # name arbitrary models, and a table of them all would only grow).
        self.latency = Latency(
            (t.provider, t.model)
            for d in config.deployments.values()
            if d.routing == "latency"
            for t in d.targets
        )
        # The same, per key of the providers those targets use: "key{index}" stands for the model.
        self.key_latency = Latency(
            (t.provider, f"key{i}")
            for d in config.deployments.values()
            if d.routing == "latency"
            for t in d.targets
            for i in range(len(config.providers[t.provider].keys) if t.provider in config.providers else 0)
        )
        # Times to first token of hedged deployments' targets, for a percentile hedge delay.
        self.hedge_times = HedgeTimes(
            (t.provider, t.model)
            for d in config.deployments.values()
            if d.hedge is not None
            for t in d.targets
        )

    def plan(self, ref: str, request_fallbacks: Sequence[str]) -> RoutePlan:
        if not ref:
            raise GatewayError(
                400,
                "invalid_request_error",
                "no model: give a deployment id in the path or `model`",
                param="model",
            )
        primary = self.resolve(ref)
        if primary is None:
            raise GatewayError(
                404,
                "not_found",
                f"deployment {ref!r} is not declared on this gateway",
                code="DeploymentNotFound",
                failure=FailureClass.CALLER,
            )
        declared = self._config.deployments.get(ref)
        # The operator wrote the config's fallbacks, so restrict_to_declared (which
        # limits what callers may reach) does not apply to them.
        config_fallbacks = declared.fallbacks if declared else ()
        targets = [primary]
        skipped: list[tuple[str, str]] = []
        for fallback in _unique((*request_fallbacks, *config_fallbacks)):
            target = self.resolve(fallback, trusted=fallback in config_fallbacks)
            if target is None:
                skipped.append((fallback, "not declared on this gateway"))
            elif target not in targets:
                targets.append(target)
        context: list[Target] = []
        for ref in declared.context_fallbacks if declared else ():
            target = self.resolve(ref, trusted=True)
            if target is not None and target not in context:
                context.append(target)
        if declared is None or declared.hedge is None:
            return RoutePlan(tuple(targets), tuple(skipped), tuple(context))
        hedge = self._hedge_target(declared, primary, targets)
        return RoutePlan(tuple(targets), tuple(skipped), tuple(context), hedge, declared.hedge)

    def _hedge_target(
        self, deployment: DeploymentConfig, primary: Target, plan: list[Target]
    ) -> Target | None:
        """Another of the deployment's targets, by weight; else its first fallback."""
        others = [t for t in deployment.targets if (t.provider, t.model) != (primary.provider, primary.model)]
        if others:
            chosen = self._weighted(others, [t.weight for t in others])
            return self._target(
                chosen.provider,
                chosen.model,
                deployment.name,
                chosen.base_model,
                chosen.timeouts,
                deployment.routing,
            )
        return plan[1] if len(plan) > 1 else None

    def resolve(self, ref: str, *, trusted: bool = False) -> Target | None:
        deployment = self._config.deployments.get(ref)
        if deployment is not None:
            if deployment.routing == "latency" and len(deployment.targets) > 1:
                chosen = self._fastest_of_two(deployment.targets)
            else:
                chosen = self._weighted(deployment.targets, [t.weight for t in deployment.targets])
            return self._target(
                chosen.provider, chosen.model, ref, chosen.base_model, chosen.timeouts, deployment.routing
            )
        provider, sep, model = ref.partition("/")
        if self._config.routing.restrict_to_declared and not trusted:
            return None
        if sep and model and provider in self._config.providers:
            return self._target(provider, model, ref)
        return self._target(self._config.routing.default_provider, ref, ref)

    def _target(
        self,
        provider: str,
        model: str,
        ref: str,
        base_model: str = "",
        timeouts: TimeoutConfig | None = None,
        routing: str = "weighted",
    ) -> Target:
        if not base_model:
            config = self._config.providers.get(provider)
            base_model = config.base_models.get(model, "") if config else ""
        return Target(provider, model, ref, base_model, timeouts, routing)

    def choose_key(
        self, provider: ProviderConfig, model: str, exclude: Iterable[int] = (), *, latency: bool = False
    ) -> int | None:
        """Index into ``provider.keys`` of a weighted-random eligible key, or None.

        A key whose circuit is open is not chosen while another eligible key is usable;
        when all of them are open, the one whose cool-down ends soonest is (a key is never
        refused for its circuit alone: that would be worse than having no breaker).
        ``latency``: of two keys drawn by weight, the one answering faster lately (as targets)."""
        excluded = set(exclude)
        eligible = [i for i, key in enumerate(provider.keys) if i not in excluded and key_allows(key, model)]
        if not eligible:
            return None
        health = self.health
        if health is not None and health.keys:
            name = provider.name
            usable = [i for i in eligible if health.key_available(name, i)]
            if not usable:
                return min(eligible, key=lambda i: health.key_open_until(name, i))
            eligible = usable
        if latency and len(eligible) > 1:
            name = provider.name
            return self._fastest(
                eligible,
                [provider.keys[i].weight for i in eligible],
                lambda i: self.key_latency.seconds(name, f"key{i}"),
            )
        return self._weighted(eligible, [provider.keys[i].weight for i in eligible])

    def _fastest_of_two(self, targets: Sequence[TargetConfig]) -> TargetConfig:
        """Power of two choices: two targets drawn by weight, the one with the lower moving
        average of its time to answer kept, so weights still shape the traffic and a slow target
        gets less of it. With two targets that would mean never the slower one, so one call in
        ``EXPLORE`` takes the weighted draw alone: a slow target is still measured now and then,
        and its recovery seen. A target never measured counts as fastest (it gets tried); one
        whose circuit is open is left out while another is usable."""
        health = self.health
        candidates = list(targets)
        if health is not None and health.targets:
            usable = [t for t in candidates if not health.target_open(t.provider, t.model)]
            candidates = usable or candidates
        if len(candidates) == 1:
            return candidates[0]
        latency = self.latency
        return self._fastest(
            candidates, [t.weight for t in candidates], lambda t: latency.seconds(t.provider, t.model)
        )

    def _fastest(self, items: Sequence[T], weights: list[float], seconds: Callable[[T], float]) -> T:
        """Of two items drawn by weight, the one with the lower moving average (see above)."""
        positions = range(len(items))
        first = self._weighted(positions, weights)
        if self._rng.random() < 1 / EXPLORE:
            return items[first]
        rest = [i for i in positions if i != first]
        second = self._weighted(rest, [weights[i] for i in rest])
        return min(items[first], items[second], key=seconds)

    def _weighted(self, items: Sequence[T], weights: list[float]) -> T:
        if len(items) == 1:
            return items[0]
        return self._rng.choices(items, weights=weights, k=1)[0]


class Latency:
    """An exponentially weighted moving average of each tracked target's time to answer (a
    unary answer, or a stream's first content): recent calls count most, so a target that
    slows down, or recovers, shows within a few calls."""

    WEIGHT = 0.3  # of the newest observation

    __slots__ = ("_seconds",)

    def __init__(self, targets: Iterable[tuple[str, str]]) -> None:
        self._seconds: dict[tuple[str, str], float] = dict.fromkeys(targets, 0.0)

    def observe(self, provider: str, model: str, seconds: float) -> None:
        key = (provider, model)
        average = self._seconds.get(key)
        if average is None:
            return  # not a latency-routed target
        self._seconds[key] = seconds if average == 0.0 else average + self.WEIGHT * (seconds - average)

    def seconds(self, provider: str, model: str) -> float:
        """The average, or 0.0 for a target never measured (so it is tried)."""
        return self._seconds.get((provider, model), 0.0)


def key_allows(key: KeyConfig, model: str) -> bool:
    return not key.models or any(fnmatch.fnmatchcase(model, pattern) for pattern in key.models)


def _unique(refs: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for ref in refs:
        seen.setdefault(ref, None)
    return list(seen)
