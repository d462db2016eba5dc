"""CPU per request of the service's own path (engine, plugins, provider), in one process.

``python -m bench.engine_cpu`` drives ``ChatEngine`` directly against an ``httpx.MockTransport``
upstream: no sockets, no gateway, no load generator, so the figure moves only with the code
under ``service/``. It prints CPU microseconds per unary call and per 7-chunk stream.

On this VM wall-clock CPU figures move by ±20 % between runs. For a before/after comparison of
a hot-path change, count instructions instead, which is repeatable to the instruction:

    for n in 200 1200; do
      SY_BENCH_N=$n SY_BENCH_STREAMS=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m bench.engine_cpu 2>&1 | grep Collected
    done   # (difference) / 1000 = instructions per unary call; likewise SY_BENCH_STREAMS

Set ``SY_BENCH_LOGS=1`` to keep the request log on (SQLite in a temporary folder).

``SY_BENCH_TELEMETRY`` picks the telemetry plugins, as ``service/server.py`` builds them:
``none`` (the default), ``metrics``, ``access`` (the access log line, written to /dev/null),
``tracing`` (every call sampled, exported over OTLP/HTTP to a receiver in this process, whose
encoding and export run on the SDK's thread and count here), or ``all``.
``SY_BENCH_CIRCUIT=0`` turns the circuit breakers off (``resilience.circuit.enabled``: on by default).
``SY_BENCH_SAMPLE_RATIO`` sets ``telemetry.tracing.sample_ratio`` (default 1.0: every call traced).
``SY_BENCH_FALLBACK=1`` gives each request a fallback target, so streams run with mid-stream
failover possible (tool calls held, the text kept for a continuation: service/midstream.py);
``SY_BENCH_MIDSTREAM=0`` turns mid-stream failover off (``resilience.midstream.enabled``).
``SY_BENCH_CACHE`` turns the response cache on (memory store; ``off`` by default): ``miss``
gives every call its own ``seed``, so each one misses and its answer is stored (the write,
in the background, counts: the cache's pending writes are awaited before the clock stops);
``hit`` repeats one request, stored before the clock starts, so every call is an exact hit.
``off`` with ``SY_BENCH_SEEDS=1`` varies the seed too (and yields to the loop after each call,
as ``miss`` does so that its write runs), for a like-for-like ``miss`` baseline.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import tempfile
import threading
import time
from typing import TextIO

import httpx
import orjson

from service.engine import ChatEngine
from service.plugins.tracing import build_tracer_provider
from service.providers import ProviderContext, build_provider
from service.server import build_plugins, start_cache, start_governance
from switchyard import logs as log_setup
from switchyard.config import parse_config
from switchyard.metrics import ProcessMetrics
from switchyard.open_streams import OpenStreams
from switchyard.v1 import chat_pb2 as pb
from tests.fakes.otlp import FakeOtlpReceiver


def _chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip


_UNARY = orjson.dumps(
    {
        "id": "r",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
)
_EVENTS = [
    _chunk({"role": "assistant", "content": ""}),
    *(_chunk({"content": word}) for word in ("Hel", "lo ", "the", "re")),
    _chunk({}, "stop"),
    {
        "id": "c",
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    },
]
_STREAM = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in _EVENTS) + b"data: [DONE]\n\n"


def _upstream(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=_STREAM if b'"stream":true' in request.content else _UNARY)


async def measure(
    calls: int,
    streams: int,
    warmup: int,
    logs: bool,
    telemetry: str,
    otlp_url: str,
    log_sink: TextIO,
    cache_mode: str = "off",
) -> tuple[float, float]:
    folder = tempfile.mkdtemp()
    on = {telemetry} if telemetry != "all" else {"metrics", "access", "tracing"}
    config = parse_config(
        {
            "auth": {"required": False},
            "routing": {"default_provider": "azure"},
            "store": {"url": f"sqlite:///{folder}/bench.db"},
            "request_logs": {"enabled": logs},
            "resilience": {
                "circuit": {"enabled": os.environ.get("SY_BENCH_CIRCUIT", "1") != "0"},
                "midstream": {"enabled": os.environ.get("SY_BENCH_MIDSTREAM", "1") != "0"},
            },
            "logging": {"level": "info", "access_log": "access" in on},
            "telemetry": {
                "metrics": {"enabled": "metrics" in on},
                "tracing": {
                    "otlp_endpoint": otlp_url if "tracing" in on else "",
                    "sample_ratio": float(os.environ.get("SY_BENCH_SAMPLE_RATIO", "1.0")),
                },
            },
            "cache": {"enabled": cache_mode != "off", "store": "memory", "max_entries": 100_000},
            "providers": {
                "azure": {
                    "kind": "azure",
                    "base_url": "https://up.example",
                    "api_version": "2024-10-21",
                    "keys": [{"value": "k"}],
                }
            },
        },
        env={},
    )
    governance = await start_governance(config)
    context = ProviderContext(config.timeouts, transport=httpx.MockTransport(_upstream))
    providers = {name: build_provider(p, context) for name, p in config.providers.items()}
    log_setup.configure(config.logging)
    logging.getLogger().handlers[0].setStream(log_sink)  # the access line's cost, not the terminal's
    logging.getLogger("switchyard.service").setLevel(logging.WARNING)
    tracer_provider = build_tracer_provider(config.telemetry.tracing, env={})
    open_streams = OpenStreams()
    metrics = ProcessMetrics(config.telemetry.metrics)
    cache = await start_cache(config, metrics if config.telemetry.metrics.enabled else None)
    plugins = build_plugins(config, governance, metrics, open_streams, tracer_provider, cache)
    engine = ChatEngine(config, providers, plugins, streams=open_streams)
    vary = cache_mode == "miss" or os.environ.get("SY_BENCH_SEEDS") == "1"
    messages = [pb.ChatMessage(role="system", text="be brief"), pb.ChatMessage(role="user", text="hi")]
    fallbacks = ["azure/backup"] if os.environ.get("SY_BENCH_FALLBACK") == "1" else []
    unary = pb.ChatCompletionRequest(
        deployment_id="dep", messages=messages, temperature=0.5, fallbacks=fallbacks
    )
    stream = pb.ChatCompletionRequest(
        deployment_id="dep", messages=messages, temperature=0.5, stream=True, fallbacks=fallbacks
    )
    try:
        for _ in range(warmup):
            await engine.create(unary)
            async for _ in engine.create_stream(stream):
                pass
        # As the server runs (cli/main.py): startup objects frozen, young collections rarer.
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 50, 100)
        started = time.process_time()
        if cache is not None:  # hit: the entry is there before the clock starts
            await cache.flush()
        if vary:
            for seed in range(calls):
                unary.seed = seed
                await engine.create(unary)
                # The mock upstream never suspends: let the background write run, as I/O would.
                await asyncio.sleep(0)
        else:
            for _ in range(calls):
                await engine.create(unary)
        if cache is not None:
            await cache.flush()
        middle = time.process_time()
        if vary:
            for seed in range(calls, calls + streams):  # not the unary calls' seeds: misses too
                stream.seed = seed
                async for _ in engine.create_stream(stream):
                    pass
                await asyncio.sleep(0)
        else:
            for _ in range(streams):
                async for _ in engine.create_stream(stream):
                    pass
        if cache is not None:
            await cache.flush()
        ended = time.process_time()
        if tracer_provider is not None:
            tracer_provider.force_flush()  # the export of the last batch counts too
            ended = time.process_time()
    finally:
        if cache is not None:
            await cache.aclose()
        await governance.aclose()
        if tracer_provider is not None:
            tracer_provider.shutdown()
    return 1e6 * (middle - started) / max(calls, 1), 1e6 * (ended - middle) / max(streams, 1)


def _receive(urls: multiprocessing.Queue[str]) -> None:
    with FakeOtlpReceiver() as receiver:
        urls.put(receiver.url)
        threading.Event().wait()


def main() -> None:
    calls = int(os.environ.get("SY_BENCH_N", "10000"))
    streams = int(os.environ.get("SY_BENCH_STREAMS", "3000"))
    warmup = int(os.environ.get("SY_BENCH_WARMUP", "100"))
    logs = os.environ.get("SY_BENCH_LOGS") == "1"
    telemetry = os.environ.get("SY_BENCH_TELEMETRY", "none")
    cache_mode = os.environ.get("SY_BENCH_CACHE", "off")
    if cache_mode not in ("off", "miss", "hit"):
        raise SystemExit("SY_BENCH_CACHE must be off, miss or hit")
    # The receiver decodes in a process of its own: its CPU is not Switchyard's.
    urls: multiprocessing.Queue[str] = multiprocessing.Queue()
    receiver = multiprocessing.Process(target=_receive, args=(urls,), daemon=True)
    receiver.start()
    try:
        with open(os.devnull, "w") as sink:
            unary_us, stream_us = asyncio.run(
                measure(calls, streams, warmup, logs, telemetry, urls.get(timeout=30), sink, cache_mode)
            )
    finally:
        receiver.terminate()
    print(
        f"engine CPU (telemetry: {telemetry}, cache: {cache_mode}): {unary_us:.1f} us per unary call, "
        f"{stream_us:.1f} us per 7-chunk stream"
    )


if __name__ == "__main__":
    main()
