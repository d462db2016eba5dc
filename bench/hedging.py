"""What hedged requests buy: time to first token with one slow target out of two, hedging off vs on.

A deployment has two equally weighted Azure targets on the fake upstream: one streams its first
token at once, the other only after ``SLOW_MS``. Without hedging about half the calls wait for
the slow one; with ``hedge: {after_ms: HEDGE_MS}`` a call whose first target is silent that long
also starts the other, and the first to produce content wins. The client measures the time to
the first content chunk of each streamed call (``concurrency`` at a time), through a real
``switchyard serve``::

    python -m bench.hedging [--requests 400] [--concurrency 4]

It prints p50, p90 and p99 for both, and the upstream calls each made (a hedge costs calls).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.loadgen import percentile
from tests.fakes.upstream import FakeUpstream, Reply
from tests.support import base_config, free_port, start_stack

SLOW_MS = 400
HEDGE_MS = 60
PIECES = ("Hel", "lo", " world")


def _config(upstream_url: str, hedge: bool) -> dict[str, Any]:
    config = base_config(upstream_url, free_port(), free_port())
    config["logging"] = {"level": "warning"}
    config["request_logs"] = {"enabled": False}
    deployment: dict[str, Any] = {
        "targets": [
            {"provider": "azure", "model": "hedge-fast", "weight": 1},
            {"provider": "azure", "model": "hedge-slow", "weight": 1},
        ]
    }
    if hedge:
        deployment["hedge"] = {"after_ms": HEDGE_MS}
    config["deployments"]["hedged"] = deployment
    return config


async def _ttfts(base_url: str, requests: int, concurrency: int) -> list[float]:
    body = orjson.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True})
    url = "/openai/deployments/hedged/chat/completions?api-version=2024-10-21"
    results: list[float] = []
    queue = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in queue:
            started = time.perf_counter()
            first = None
            async with client.stream("POST", url, content=body) as response:
                assert response.status_code == 200, response.status_code
                async for line in response.aiter_lines():
                    compact = line.replace(" ", "")
                    if first is None and '"content":"' in compact and '"content":""' not in compact:
                        first = time.perf_counter() - started
            assert first is not None
            results.append(first)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return results


def measure(requests: int, concurrency: int) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {}
    with FakeUpstream() as fake:
        for name, hedge in (("off", False), ("on", True)):
            fake.reset(default=Reply.stream(PIECES))
            fake.script(
                *[Reply.slow(SLOW_MS / 1000, Reply.stream(PIECES))] * (requests * 2), match="hedge-slow"
            )
            with tempfile.TemporaryDirectory() as tmp:
                stack = start_stack("inprocess", _config(fake.url, hedge), Path(tmp))
                try:
                    asyncio.run(_ttfts(stack.base_url, 20, concurrency))  # warm-up
                    calls_before = fake.request_count
                    ttfts = sorted(asyncio.run(_ttfts(stack.base_url, requests, concurrency)))
                    calls = fake.request_count - calls_before
                finally:
                    stack.stop()
            figures[name] = {
                "p50_ms": percentile(ttfts, 50) * 1000,
                "p90_ms": percentile(ttfts, 90) * 1000,
                "p99_ms": percentile(ttfts, 99) * 1000,
                "upstream_calls_per_request": calls / requests,
            }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    figures = measure(args.requests, args.concurrency)
    print(f"one target of two slow ({SLOW_MS} ms to first token), hedge after {HEDGE_MS} ms:")
    for name, row in figures.items():
        print(
            f"  hedging {name:3}: TTFT p50 {row['p50_ms']:6.1f} ms  p90 {row['p90_ms']:6.1f} ms  "
            f"p99 {row['p99_ms']:6.1f} ms  upstream calls/request {row['upstream_calls_per_request']:.2f}"
        )


if __name__ == "__main__":
    main()
