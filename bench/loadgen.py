"""The load generator: an asyncio + aiohttp keep-alive client that runs in its own process.

The parent (``bench/run.py``) talks to one long-lived worker process through a pipe: it sends a
:class:`Job`, and the worker answers with events ``("warm", None)`` (warm-up done, the measured
part starts now), ``("progress", n)`` (every ``progress_every`` measured requests), then
``("result", dict)`` or ``("error", traceback)``. Running the client in its own process keeps it
off the GIL of the benchmark driver, and its CPU use is reported so a saturated client shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Literal

import aiohttp
import orjson

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency of switchyard off Windows
    uvloop = None

REQUEST_TIMEOUT_S = 30.0
ERROR_SAMPLES = 5


@dataclass(frozen=True)
class Job:
    """One measurement: ``requests`` measured requests (after ``warmup``) at ``concurrency``.

    With ``duration_s`` > 0 the measured part runs for that long instead of a request count.
    With ``keep_samples`` the result also carries every measured latency (and TTFT), in seconds,
    as ``latency_samples_s`` (``ttft_samples_s``), so several runs can be pooled.
    ``kind="mixed"`` sends every ``stream_every``-th request streamed, with ``stream_body``, and the
    others unary with ``body`` (the soak run: both paths hold resources differently).
    """

    kind: Literal["unary", "stream", "mixed"]
    url: str
    body: bytes
    headers: dict[str, str]
    concurrency: int
    requests: int
    warmup: int = 0
    duration_s: float = 0.0
    progress_every: int = 0
    keep_samples: bool = False
    stream_every: int = 0
    stream_body: bytes = b""


@dataclass
class _Tally:
    """What the measured requests produced."""

    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < ERROR_SAMPLES:
            self.error_samples.append(what)


# --------------------------------------------------------------------------- statistics


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def summarize_ms(seconds: list[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean of durations given in seconds, in milliseconds."""
    values = sorted(seconds)
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0, "n": 0}
    return {
        "p50": percentile(values, 50) * 1000,
        "p90": percentile(values, 90) * 1000,
        "p99": percentile(values, 99) * 1000,
        "max": values[-1] * 1000,
        "mean": sum(values) / len(values) * 1000,
        "n": len(values),
    }


# --------------------------------------------------------------------------- one request


def _first_content(line: bytes) -> bool:
    """Is this SSE line a ``data:`` chunk whose delta carries non-empty content?"""
    if not line.startswith(b"data:"):
        return False
    payload = line[5:].strip()
    if not payload or payload == b"[DONE]":
        return False
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content"):
            return True
    return False


async def _unary(session: aiohttp.ClientSession, job: Job) -> tuple[float, None, str | None]:
    """(latency, None, error) of one non-streamed request."""
    start = time.perf_counter()
    async with session.post(job.url, data=job.body, headers=job.headers) as response:
        payload = await response.read()
        status = response.status
    elapsed = time.perf_counter() - start
    if status != 200:
        return elapsed, None, f"HTTP {status}: {payload[:200]!r}"
    return elapsed, None, None


async def _stream(
    session: aiohttp.ClientSession, job: Job, body: bytes | None = None
) -> tuple[float, float | None, str | None]:
    """(total time, time to first content token, error) of one streamed request."""
    start = time.perf_counter()
    ttft: float | None = None
    async with session.post(
        job.url, data=job.body if body is None else body, headers=job.headers
    ) as response:
        if response.status != 200:
            payload = await response.read()
            return time.perf_counter() - start, None, f"HTTP {response.status}: {payload[:200]!r}"
        async for line in response.content:
            if ttft is None and _first_content(line):
                ttft = time.perf_counter() - start
    elapsed = time.perf_counter() - start
    if ttft is None:
        return elapsed, None, "stream carried no content delta"
    return elapsed, ttft, None


# --------------------------------------------------------------------------- a whole job


class _Runner:
    """Runs one job's warm-up and measured part on a shared keep-alive pool."""

    def __init__(self, job: Job, emit: Callable[[str, Any], None]) -> None:
        self.job = job
        self.emit = emit
        self.one = _unary if job.kind == "unary" else _stream
        self.tally = _Tally()
        self.sent = 0  # requests started, warm-up included: picks the mixed job's streamed ones

    async def run(self) -> dict[str, Any]:
        job = self.job
        connector = aiohttp.TCPConnector(limit=job.concurrency, force_close=False, ttl_dns_cache=None)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        ) as session:
            await self._phase(session, job.warmup, 0.0, measured=False)
            self.emit("warm", None)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await self._phase(session, job.requests, job.duration_s, measured=True)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        return self._result(wall, cpu)

    async def _phase(
        self, session: aiohttp.ClientSession, count: int, duration_s: float, measured: bool
    ) -> None:
        """Closed loop: ``concurrency`` workers issue requests until ``count`` (or the time) is used up."""
        state = {"issued": 0, "done": 0}
        deadline = time.perf_counter() + duration_s if duration_s > 0 else None

        def more() -> bool:
            if deadline is not None:
                return time.perf_counter() < deadline
            return state["issued"] < count

        async def worker() -> None:
            while more():
                state["issued"] += 1
                await self._request(session, measured)
                state["done"] += 1
                every = self.job.progress_every
                if measured and every and state["done"] % every == 0:
                    self.emit("progress", state["done"])

        if count > 0 or deadline is not None:
            await asyncio.gather(*(worker() for _ in range(self.job.concurrency)))

    async def _request(self, session: aiohttp.ClientSession, measured: bool) -> None:
        self.sent += 1
        job = self.job
        try:
            if job.kind != "mixed":
                elapsed, ttft, error = await self.one(session, job)
            elif job.stream_every > 0 and self.sent % job.stream_every == 0:
                elapsed, ttft, error = await _stream(session, job, job.stream_body)
            else:
                elapsed, ttft, error = await _unary(session, job)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            elapsed, ttft, error = 0.0, None, f"{type(exc).__name__}: {exc}"
        if not measured:
            return
        if error is not None:
            self.tally.error(error)
            return
        self.tally.latencies.append(elapsed)
        if ttft is not None:
            self.tally.ttfts.append(ttft)

    def _result(self, wall_s: float, cpu_s: float) -> dict[str, Any]:
        tally = self.tally
        completed = len(tally.latencies) + tally.errors
        result: dict[str, Any] = {
            "kind": self.job.kind,
            "concurrency": self.job.concurrency,
            "requests": completed,
            "ok": len(tally.latencies),
            "errors": tally.errors,
            "error_samples": tally.error_samples,
            "wall_s": wall_s,
            "rps": len(tally.latencies) / wall_s if wall_s > 0 else 0.0,
            "latency_ms": summarize_ms(tally.latencies),
            "client_cpu_pct": 100 * cpu_s / wall_s if wall_s > 0 else 0.0,
            "client_cpu_us_per_req": 1e6 * cpu_s / completed if completed else 0.0,
        }
        if self.job.kind != "unary":
            result["ttft_ms"] = summarize_ms(tally.ttfts)
        if self.job.keep_samples:
            result["latency_samples_s"] = tally.latencies
            if self.job.kind != "unary":
                result["ttft_samples_s"] = tally.ttfts
        return result


def _new_loop() -> asyncio.AbstractEventLoop:
    return uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()


def worker_main(conn: Connection) -> None:
    """The worker process: run jobs from ``conn`` until it sends ``None`` or closes."""
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    try:
        while True:
            try:
                job = conn.recv()
            except EOFError:
                return
            if job is None:
                return
            try:
                result = loop.run_until_complete(
                    _Runner(job, lambda kind, value: conn.send((kind, value))).run()
                )
            except Exception:
                conn.send(("error", traceback.format_exc()))
            else:
                conn.send(("result", result))
    except KeyboardInterrupt:
        return
    finally:
        loop.close()


# --------------------------------------------------------------------------- the parent's handle


class LoadClient:
    """A handle on the worker process; ``run`` blocks until the job's result arrives."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._proc = context.Process(target=worker_main, args=(child,), name="bench-loadgen", daemon=True)
        self._proc.start()
        child.close()

    @property
    def pid(self) -> int | None:
        """The worker's process id."""
        return self._proc.pid

    def run(
        self, job: Job, on_event: Callable[[str, Any], None] | None = None, timeout_s: float = 1800.0
    ) -> dict[str, Any]:
        """Run ``job``; ``on_event(kind, value)`` sees the ``warm`` and ``progress`` events."""
        self._conn.send(job)
        deadline = time.monotonic() + timeout_s
        while True:
            if not self._conn.poll(0.5):
                if not self._proc.is_alive():
                    raise RuntimeError(f"the load generator died (exit code {self._proc.exitcode})")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"load job did not finish within {timeout_s:.0f}s")
                continue
            kind, value = self._conn.recv()
            if kind == "result":
                return value
            if kind == "error":
                raise RuntimeError(f"load job failed:\n{value}")
            if on_event is not None:
                on_event(kind, value)

    def close(self) -> None:
        """Stop the worker: politely, then by force."""
        if self._proc.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conn.send(None)
            self._proc.join(5)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()
