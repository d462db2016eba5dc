"""Circuit breakers: what this replica remembers about failing targets and keys.

Like Envoy's outlier detection, per target (provider + upstream model) and per key
(provider + key index):

- **closed**: calls go through. ``consecutive_failures`` provider-caused failures in a
  row, or a share of at least ``failure_rate`` among the attempts of the last
  ``window_s`` seconds (once there were ``min_requests``), open the circuit.
- **open**: the target is skipped (a ``circuit_open`` attempt in ``extra_fields.attempts``),
  the key is not chosen, until the cool-down ends.
- **half_open**: the cool-down has ended and exactly one call probes. Its success closes
  the circuit; its failure re-opens it with twice the cool-down (capped at
  ``max_cooldown_s``). A probe that says nothing about the provider (a caller error, a
  cancelled call) hands the probe on to the next call.

What counts (``counts_for_target`` / ``counts_for_key``): TRANSIENT (5xx, network
errors), TIMEOUT and RATE_LIMIT. CALLER failures never do: a bad request says nothing
about the provider. CREDENTIAL failures count for the key only: a revoked key is not
an outage of the model.

Health lives in this process's memory (one event loop, so no locks): with several
replicas each learns on its own, so a dead upstream is tried up to the threshold by each
replica before all of them skip it, and a recovered one is probed by each replica.

Cost on the hot path: a healthy target or key has no circuit at all (one is made at its
first counted failure), so a call pays a dict miss when it starts and one when it ends.
The price: a target's failure-rate window starts at its first failure, so successes before
it do not count (a rate opens no sooner than it would with them).
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from service.errors import FailureClass
from switchyard.config import CircuitConfig, Config, ProviderConfig

__all__ = ["Admission", "Circuit", "CircuitState", "CircuitView", "Health"]

Clock = Callable[[], float]
K = TypeVar("K")

_TARGET_FAILURES = frozenset({FailureClass.TRANSIENT, FailureClass.TIMEOUT, FailureClass.RATE_LIMIT})
_KEY_FAILURES = _TARGET_FAILURES | {FailureClass.CREDENTIAL}
# The sliding window is kept as this many buckets: memory and work stay constant at any rate.
_BUCKETS = 10
# Circuits kept before closed ones are forgotten: callers can name arbitrary models.
_MAX_CIRCUITS = 10_000


def counts_for_target(failure: FailureClass) -> bool:
    return failure in _TARGET_FAILURES


def counts_for_key(failure: FailureClass) -> bool:
    return failure in _KEY_FAILURES


class CircuitState(enum.IntEnum):
    # The values are the gauge's (switchyard_circuit_state).
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class Admission(enum.IntEnum):
    DENIED = 0
    ADMITTED = 1
    PROBE = 2  # admitted as the one half-open probe: release it if the call proves nothing


class Circuit:
    __slots__ = ("_buckets", "_config", "consecutive", "cooldown_s", "failed", "open_until", "state", "total")

    def __init__(self, config: CircuitConfig) -> None:
        self._config = config
        self.state = CircuitState.CLOSED
        self.consecutive = 0
        self.open_until = 0.0
        self.cooldown_s = 0.0  # the last cool-down; 0 while closed
        # [bucket start, attempts, failures], oldest first; totals kept alongside.
        self._buckets: deque[list[float]] = deque()
        self.total = 0
        self.failed = 0

    def admit(self, now: float) -> Admission:
        state = self.state
        if state is CircuitState.CLOSED:
            return Admission.ADMITTED
        if state is CircuitState.OPEN and now >= self.open_until:
            self.state = CircuitState.HALF_OPEN
            return Admission.PROBE
        return Admission.DENIED

    def available(self, now: float) -> bool:
        """Would :meth:`admit` let a call through (without taking the probe)?"""
        state = self.state
        return state is CircuitState.CLOSED or (state is CircuitState.OPEN and now >= self.open_until)

    def release(self, now: float) -> None:
        """The probe ended without a verdict: the next call probes instead."""
        if self.state is CircuitState.HALF_OPEN:
            self.state = CircuitState.OPEN
            self.open_until = now

    def success(self, now: float) -> None:
        if self.state is not CircuitState.CLOSED:
            # A probe's success, or any call's (one forced while every target was open):
            # the upstream answers again, so history from before is stale.
            self.state = CircuitState.CLOSED
            self.cooldown_s = 0.0
            self._buckets.clear()
            self.total = self.failed = 0
        self.consecutive = 0
        self._count(now, failed=False)

    def failure(self, now: float) -> None:
        config = self._config
        state = self.state
        if state is CircuitState.HALF_OPEN:
            self._open(now, min(self.cooldown_s * 2, config.max_cooldown_s))
            return
        if state is CircuitState.OPEN:
            return  # a call that started before it opened, or one forced while all were open
        self.consecutive += 1
        self._count(now, failed=True)
        if (config.consecutive_failures and self.consecutive >= config.consecutive_failures) or (
            config.failure_rate
            and self.total >= config.min_requests
            and self.failed >= config.failure_rate * self.total
        ):
            self._open(now, config.cooldown_s)

    def _open(self, now: float, cooldown_s: float) -> None:
        self.state = CircuitState.OPEN
        self.cooldown_s = cooldown_s
        self.open_until = now + cooldown_s

    def _count(self, now: float, *, failed: bool) -> None:
        window_s = self._config.window_s
        buckets = self._buckets
        width = window_s / _BUCKETS
        if not buckets or now >= buckets[-1][0] + width:
            buckets.append([now, 0, 0])
        bucket = buckets[-1]
        bucket[1] += 1
        bucket[2] += failed
        self.total += 1
        self.failed += failed
        horizon = now - window_s
        while buckets[0][0] + width <= horizon:  # wholly outside the window
            old = buckets.popleft()
            self.total -= int(old[1])
            self.failed -= int(old[2])


@dataclass(frozen=True, slots=True)
class CircuitView:
    """One circuit as the Admin API shows it."""

    provider: str
    model: str  # "" for a key's circuit
    key: str  # the key's name, else its index; "" for a target's circuit
    state: CircuitState
    consecutive_failures: int
    window_failures: int
    window_requests: int
    open_for_s: float  # until the cool-down ends (0 when it has)


class Health:
    """The circuits of one replica; ``clock`` is ``time.monotonic`` but for tests."""

    def __init__(
        self,
        config: CircuitConfig,
        providers: Mapping[str, ProviderConfig] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config = config
        self.clock = clock
        self.targets: dict[tuple[str, str], Circuit] = {}
        self.keys: dict[tuple[str, int], Circuit] = {}
        self._providers = providers or {}  # to name keys in views

    # ---------------------------------------------------------------- targets

    def admit_target(self, provider: str, model: str) -> Admission:
        circuit = self.targets.get((provider, model))
        if circuit is None:
            return Admission.ADMITTED
        return circuit.admit(self.clock())

    def target_open(self, provider: str, model: str) -> bool:
        circuit = self.targets.get((provider, model))
        return circuit is not None and not circuit.available(self.clock())

    def release_target(self, provider: str, model: str) -> None:
        circuit = self.targets.get((provider, model))
        if circuit is not None:
            circuit.release(self.clock())

    def open_for_s(self, provider: str, model: str) -> float:
        circuit = self.targets.get((provider, model))
        return max(0.0, circuit.open_until - self.clock()) if circuit is not None else 0.0

    # ---------------------------------------------------------------- keys

    def key_available(self, provider: str, index: int) -> bool:
        circuit = self.keys.get((provider, index))
        return circuit is None or circuit.available(self.clock())

    def take_key(self, provider: str, index: int) -> Admission:
        """The router chose this key: take its probe if its cool-down has ended."""
        circuit = self.keys.get((provider, index))
        if circuit is None:
            return Admission.ADMITTED
        return circuit.admit(self.clock())

    def key_open_until(self, provider: str, index: int) -> float:
        circuit = self.keys.get((provider, index))
        return circuit.open_until if circuit is not None else 0.0

    def release_key(self, provider: str, index: int) -> None:
        circuit = self.keys.get((provider, index))
        if circuit is not None:
            circuit.release(self.clock())

    # ---------------------------------------------------------------- outcomes

    def record(self, provider: str, model: str, key_index: int, failure: FailureClass | None) -> None:
        """One attempt's outcome: ``failure`` None for a success."""
        if failure is None:
            target = self.targets.get((provider, model))
            key = self.keys.get((provider, key_index))
            if target is None and key is None:
                return  # healthy and never failed: nothing to remember
            now = self.clock()
            if target is not None:
                target.success(now)
            if key is not None:
                key.success(now)
            return
        if failure not in _KEY_FAILURES:
            return  # says nothing about the provider (a probe it held is released by its owner)
        now = self.clock()
        if failure in _TARGET_FAILURES:
            self._circuit(self.targets, (provider, model)).failure(now)
        self._circuit(self.keys, (provider, key_index)).failure(now)

    def _circuit(self, table: dict[K, Circuit], name: K) -> Circuit:
        circuit = table.get(name)
        if circuit is None:
            if len(table) >= _MAX_CIRCUITS:
                for stale in [n for n, c in table.items() if c.state is CircuitState.CLOSED]:
                    del table[stale]
            circuit = table[name] = Circuit(self.config)
        return circuit

    # ---------------------------------------------------------------- views

    def views(self) -> list[CircuitView]:
        """Every circuit this replica keeps (targets, then keys), as of now."""
        now = self.clock()
        views = [CircuitView(p, m, "", *_figures(c, now)) for (p, m), c in self.targets.items()]
        for (provider, index), c in self.keys.items():
            config = self._providers.get(provider)
            name = config.keys[index].name if config and index < len(config.keys) else ""
            views.append(CircuitView(provider, "", name or str(index), *_figures(c, now)))
        return views

    def target_states(self) -> list[tuple[str, str, int]]:
        """(provider, model, state) per target: the ``switchyard_circuit_state`` gauge's samples."""
        now = self.clock()
        return [(p, m, int(_figures(c, now)[0])) for (p, m), c in self.targets.items()]


def _figures(circuit: Circuit, now: float) -> tuple[CircuitState, int, int, int, float]:
    state = circuit.state
    if state is CircuitState.OPEN and now >= circuit.open_until:
        state = CircuitState.HALF_OPEN  # the next call probes
    open_for = max(0.0, circuit.open_until - now) if state is CircuitState.OPEN else 0.0
    return state, circuit.consecutive, circuit.failed, circuit.total, open_for


def health_for(config: Config) -> Health | None:
    """The circuit breakers ``resilience.circuit`` asks for (None: off)."""
    circuit = config.resilience.circuit
    return Health(circuit, config.providers) if circuit.enabled else None
