"""What the response cache answers in: an exact hit and a semantic hit against an instant upstream.

    python -m bench.cache                     # 2000 requests per figure, c=1 and c=32
    python -m bench.cache --requests 500      # quicker
    python -m bench.cache --store sqlite      # the embedded default store instead of memory

One fake upstream (instant, its own process), one ``switchyard serve`` with the cache on
(``--store``, the built-in semantic index, ``openai/text-embedding-3-small`` embedded at the
fake), and the load generator (``bench/loadgen.py``, its own process). Per concurrency:

| figure | what is sent |
| --- | --- |
| direct | the chat body straight to the fake (the upstream call a hit saves) |
| through, no cache | the same through Switchyard with ``x-bf-cache-bypass: true`` |
| exact hit | the same through Switchyard, stored by the warm-up |
| semantic hit | ``x-bf-cache-type: semantic`` (no exact lookup): embedding call, index search, entry read |
| embedding direct | the embedding request straight to the fake: what the semantic figure spends on it |

"semantic hit, less the embedding" is the semantic p50 minus the direct embedding p50 (an
estimate: the two are measured apart). Target: an exact hit answers faster than the direct
upstream call. CPU per request is the Switchyard process's, from ``/proc``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench.loadgen import Job, LoadClient
from bench.procs import Switchyard, Upstream, cpu_seconds

CHAT = "/openai/deployments/bench/chat/completions?api-version=2024-10-21"
BODY = orjson.dumps({"messages": [{"role": "user", "content": "what is the capital of france"}]})
EMBEDDING_BODY = orjson.dumps({"model": "text-embedding-3-small", "input": ["what is the capital of france"]})
HEADERS = {"content-type": "application/json", "api-key": "bench"}


def _edit(store: str, workdir: Path) -> Any:
    def edit(config: dict[str, Any]) -> None:
        config["cache"] = {
            "enabled": True,
            "store": store,
            "sqlite_path": str(workdir / "cache.db"),
            "semantic": {
                "enabled": True,
                "embedding_model": "openai/text-embedding-3-small",
                "threshold": 0.9,
                "path": str(workdir / "vectors"),
            },
        }

    return edit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--store", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--output", default="bench/results/cache.json")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="sy-bench-cache-"))
    upstream = Upstream.start(workdir / "upstream.log")
    stack: Switchyard | None = None
    client = LoadClient()
    results: dict[str, Any] = {"store": args.store, "requests": args.requests}
    try:
        stack = Switchyard.start("inprocess", upstream.url, workdir / "sy", edit=_edit(args.store, workdir))
        pid = stack.pids["serve"]
        figures = {
            "direct": (upstream.url + CHAT, BODY, {}, False),
            "through, no cache": (stack.base_url + CHAT, BODY, {"x-bf-cache-bypass": "true"}, True),
            "exact hit": (stack.base_url + CHAT, BODY, {}, True),
            "semantic hit": (stack.base_url + CHAT, BODY, {"x-bf-cache-type": "semantic"}, True),
            "embedding direct": (upstream.url + "/v1/embeddings", EMBEDDING_BODY, {}, False),
        }
        for concurrency in (1, args.concurrency):
            row: dict[str, Any] = {}
            for name, (url, body, extra, ours) in figures.items():
                before = cpu_seconds(pid)
                job = Job("unary", url, body, {**HEADERS, **extra}, concurrency, args.requests, args.warmup)
                result = client.run(job)
                spent = cpu_seconds(pid) - before
                if result["errors"]:
                    print(f"! {name} c={concurrency}: {result['errors']} errors {result['error_samples']}")
                row[name] = {
                    "p50_ms": result["latency_ms"]["p50"],
                    "p99_ms": result["latency_ms"]["p99"],
                    "rps": result["rps"],
                    "cpu_us_per_req": 1e6 * spent / (args.requests + args.warmup) if ours else None,
                }
            row["semantic hit, less the embedding"] = {
                "p50_ms": row["semantic hit"]["p50_ms"] - row["embedding direct"]["p50_ms"]
            }
            results[f"c={concurrency}"] = row
    finally:
        client.close()
        if stack is not None:
            stack.stop()
        upstream.stop()
    _report(results, args.concurrency)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return 0


def _report(results: dict[str, Any], concurrency: int) -> None:
    print(f"response cache ({results['store']} store), {results['requests']} requests per figure")
    print(f"{'':34}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'CPU us/req':>12}")
    for level in (1, concurrency):
        row = results[f"c={level}"]
        for name, figure in row.items():
            p99 = f"{figure['p99_ms']:9.2f}" if "p99_ms" in figure else " " * 9
            rps = f"{figure['rps']:9.0f}" if "rps" in figure else " " * 9
            cpu = figure.get("cpu_us_per_req")
            cpu_text = f"{cpu:12.0f}" if cpu is not None else " " * 12
            print(f"c={level:<3}{name:30}{figure['p50_ms']:9.2f}{p99}{rps}{cpu_text}")
        verdict = "PASS" if row["exact hit"]["p50_ms"] < row["direct"]["p50_ms"] else "FAIL"
        print(f"c={level:<3}target: exact hit p50 < direct p50 ... {verdict}")


if __name__ == "__main__":
    sys.exit(main())
