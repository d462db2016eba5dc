"""The governance comparison (``bench/run.py --governance``): the same gateway with and without governance.

Two Switchyard stacks of the same mode run side by side against the same fake upstream:

- ``without``: the bench config with ``auth.required: false`` and ``request_logs.enabled: false``
  (a plain gateway; the load still sends the Azure SDK's ``api-key`` header, which open mode
  ignores);
- ``with``: ``auth.required: true``; a virtual key seeded from the config (its secret, fresh each run,
  reaches the process through the environment) with a budget and a rate limit that never trigger;
  request logs on (default settings) into the stack's SQLite store; a price for the benched
  deployment, so every call is priced and reserves then settles budget. The load sends the key as
  ``api-key``.

This module builds the two configs, pools the rounds of a measurement, and reads the governed
stack's admin API afterwards to show governance really ran (log entries written, budget spent).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import summarize_ms
from service.auth import new_virtual_key

VARIANTS = ("without", "with")
KEY_ID = "bench-governed"
# bench/run.py's deployment ("bench", undeclared) is priced through the provider's base_models.
PRICED_MODEL = "bench-priced-model"
PRICE = {"input": 0.15, "output": 0.60}  # USD per million tokens
BUDGET = {"max_usd": 1_000_000, "reset": "1d"}
RATE_LIMIT = {"requests_per_minute": 10_000_000, "tokens_per_minute": 10_000_000_000}
KEY_ENV, ADMIN_ENV = "SY_BENCH_VIRTUAL_KEY", "SY_BENCH_ADMIN_TOKEN"
# Where governance's time is spent, for the profile summary (prefixes of our source files).
GOVERNANCE_FILES = (
    "service/governance.py",
    "service/counters/",
    "service/request_log.py",
    "service/auth.py",
    "service/pricing.py",
    "service/store/",
    "service/records.py",
)


@dataclass(frozen=True)
class Variant:
    """One side of the comparison: how to change the bench config, and what the load sends."""

    name: str
    edit: Callable[[dict[str, Any]], None]
    env: dict[str, str] = field(default_factory=dict)
    credential: str | None = None  # the api-key header; None: keep the Azure key bench/run.py sends
    admin_token: str | None = None


def _plain(config: dict[str, Any]) -> None:
    config["auth"] = {"required": False}
    config["request_logs"] = {"enabled": False}


def _governed(config: dict[str, Any]) -> None:
    config["auth"] = {"required": True, "admin_token": "${" + ADMIN_ENV + "}"}
    config["virtual_keys"] = [
        {
            "id": KEY_ID,
            "name": "benchmark",
            "value": "${" + KEY_ENV + "}",
            "budget": dict(BUDGET),
            "rate_limit": dict(RATE_LIMIT),
        }
    ]
    config["request_logs"] = {"enabled": True}  # everything else at its default
    config["pricing"] = {"models": {PRICED_MODEL: dict(PRICE)}}
    azure = config["providers"]["azure"]
    azure["base_models"] = {**azure.get("base_models", {}), "bench": PRICED_MODEL}


def variants() -> dict[str, Variant]:
    """Both variants; the governed one with a fresh virtual key and admin token."""
    key, admin = new_virtual_key(), "adm-bench-" + secrets.token_urlsafe(24)
    return {
        "without": Variant("without", _plain),
        "with": Variant(
            "with", _governed, env={KEY_ENV: key, ADMIN_ENV: admin}, credential=key, admin_token=admin
        ),
    }


def fresh_workdir(path: Path) -> Path:
    """``path``, without the SQLite store of an earlier run (the seeded key's secret changes per run)."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("switchyard.db", "switchyard.db-wal", "switchyard.db-shm"):
        (path / name).unlink(missing_ok=True)
    return path


# --------------------------------------------------------------------------- checks on the governed stack


def probe(base_url: str, path: str, body: bytes, credential: str) -> dict[str, int]:
    """Status codes of one call without a credential and one with ``credential``: (401, 200) expected."""
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=base_url, timeout=10) as http:
        anonymous = http.post(path, content=body, headers=headers).status_code
        keyed = http.post(path, content=body, headers={**headers, "api-key": credential}).status_code
    return {"without_credential": anonymous, "with_key": keyed}


def governed_state(base_url: str, admin_token: str, wait_s: float = 1.5) -> dict[str, Any]:
    """Request-log and budget figures of the governed stack, from its admin API.

    Waits ``wait_s`` first so the request-log writer flushes its last batch.
    """
    time.sleep(wait_s)
    headers = {"authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=base_url, timeout=10, headers=headers) as http:
        stats = http.get("/api/stats")
        key = http.get(f"/api/keys/{KEY_ID}")
    state: dict[str, Any] = {"stats_status": stats.status_code, "key_status": key.status_code}
    if stats.status_code == 200:  # the admin API answers with proto field names
        body = stats.json()
        for name in (
            "request_logs_written",
            "request_logs_dropped",
            "request_logs_queued",
            "request_log_write_errors",
            "unpriced_requests",
        ):
            state[name] = int(body.get(name) or 0)
    if key.status_code == 200:
        usage = key.json().get("budget_usage") or {}
        state["key_spent_usd"] = float(usage.get("spent_usd") or 0.0)
        state["key_reserved_usd"] = float(usage.get("reserved_usd") or 0.0)
    return state


# --------------------------------------------------------------------------- pooling the rounds


def _weighted_cpu(rounds: list[dict[str, Any]]) -> dict[str, float]:
    served = sum(max(1, r["requests"]) for r in rounds)
    totals: dict[str, float] = {}
    for r in rounds:
        for role, us in r.get("server_cpu_us_per_req", {}).items():
            totals[role] = totals.get(role, 0.0) + us * max(1, r["requests"])
    return {role: total / served for role, total in totals.items()}


def pool(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One measurement's rounds as one result: percentiles over every sample of every round.

    The raw samples are dropped from the rounds (they would bloat the JSON); each round keeps its
    own p50/p99 and req/s so the noise between rounds stays visible.
    """
    latencies = [x for r in rounds for x in r.pop("latency_samples_s", [])]
    ttfts = [x for r in rounds for x in r.pop("ttft_samples_s", [])]
    wall = sum(r["wall_s"] for r in rounds)
    ok = sum(r["ok"] for r in rounds)
    pooled: dict[str, Any] = {
        "kind": rounds[0]["kind"],
        "concurrency": rounds[0]["concurrency"],
        "requests": sum(r["requests"] for r in rounds),
        "ok": ok,
        "errors": sum(r["errors"] for r in rounds),
        "error_samples": [s for r in rounds for s in r["error_samples"]][:5],
        "wall_s": wall,
        "rps": ok / wall if wall > 0 else 0.0,
        "latency_ms": summarize_ms(latencies),
        "server_cpu_us_per_req": _weighted_cpu(rounds),
        "client_cpu_pct": max(r["client_cpu_pct"] for r in rounds),
        "rounds": rounds,
    }
    if ttfts or rounds[0]["kind"] == "stream":
        pooled["ttft_ms"] = summarize_ms(ttfts)
    return pooled
