"""Switchyard benchmark: what the gateway adds to latency, TTFT, throughput and memory.

Every figure is measured against the same fake upstream (``python -m tests.fakes.upstream``, in its
own process) called directly, so the "added" columns are Switchyard's own cost. For each mode the
direct baseline is measured again right before the mode, so both sides see the same machine load.

Run from the repository root::

    /tmp/venv/bin/python bench/run.py                  # full run, all modes
    /tmp/venv/bin/python bench/run.py --quick          # a smoke run of a few hundred requests
    /tmp/venv/bin/python bench/run.py --modes inprocess,split --mem-requests 20000 --profile
    /tmp/venv/bin/python bench/run.py --governance     # with vs without auth/budgets/request log
    /tmp/venv/bin/python bench/run.py --soak --governance --modes serve,split   # RSS over 200k requests

This is a benchmark, not a test: it asserts nothing. It prints a table (with the targets and
PASS/FAIL next to the figures) and writes ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # allow ``python bench/run.py`` as well as ``python -m bench.run``
    sys.path.insert(0, str(REPO_ROOT))

from bench import governance, soak  # noqa: E402
from bench.loadgen import Job, LoadClient  # noqa: E402
from bench.procs import (  # noqa: E402
    Switchyard,
    Upstream,
    cpu_seconds,
    rss_mb,
    start_py_spy,
    summarize_profile,
)
from bench.report import (  # noqa: E402
    ALL_MODES,
    GOVERNANCE_TARGETS,
    added_figures,
    governance_figures,
    governance_section,
    memory_figures,
    mode_section,
    run_checks,
    summary_table,
)
from tests.support import AZURE_KEY  # noqa: E402

RESULTS_DIR = REPO_ROOT / "bench" / "results"
API_VERSION = "2024-10-21"
DEPLOYMENT = "bench"  # not declared in the config: routed to the default provider (azure), deployment "bench"
CHAT_PATH = f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={API_VERSION}"
BODY: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Say hello to the benchmark."},
    ],
    "max_tokens": 32,
    "temperature": 0.2,
}
HEADERS = {"content-type": "application/json", "api-key": AZURE_KEY}


@dataclass(frozen=True)
class Settings:
    """What to run, from the command line."""

    modes: tuple[str, ...]
    requests: int
    warmup: int
    concurrency: int
    mem_requests: int
    mem_sample_every: int
    profile_seconds: float
    upstream_delay_ms: float
    output: Path
    governance: bool = False  # --governance: the with/without-governance comparison instead of the modes
    rounds: int = 3  # --governance: alternated rounds per figure
    soak: bool = False  # --soak: one long mixed run per mode, RSS at every 10 % (with --governance: governed)
    stream_every: int = 4  # --soak: every Nth request is streamed
    tracemalloc: int = 0  # --soak: Switchyard under bench/traced.py, a snapshot (N frames) at every 10 %
    malloc_trim: bool = False  # --soak: under bench/traced.py, RSS after malloc_trim(0) at every 10 %
    grpc_options: str = ""  # --soak: extra gRPC options "name=int,..." (under bench/traced.py)
    switchyard_env: tuple[tuple[str, str], ...] = ()  # --sy-env: extra environment for Switchyard


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    """Settings from ``argv``; ``--quick`` shrinks every count for a smoke run."""
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--modes",
        default=None,
        help="comma-separated: "
        + ", ".join(ALL_MODES)
        + " ('serve' = inprocess; default: all; with --governance: inprocess; with --soak: inprocess,split)",
    )
    parser.add_argument(
        "--soak",
        action="store_true",
        help="a long run per mode (--requests, default 200000, at --concurrency, default 16), unary and "
        "streamed mixed, RSS at every 10%% and its slope after warm-up; --governance turns governance on",
    )
    parser.add_argument("--stream-every", type=int, default=4, help="--soak: every Nth request is streamed")
    parser.add_argument(
        "--tracemalloc",
        type=int,
        nargs="?",
        const=1,
        default=0,
        metavar="FRAMES",
        help="--soak: run Switchyard under tracemalloc (bench/traced.py), keeping FRAMES frames (default "
        "1) per allocation, snapshot at every 10%%, report what grew from 20%% to 100%% (slow: use "
        "fewer --requests)",
    )
    parser.add_argument(
        "--grpc-options",
        default="",
        metavar="NAME=INT,...",
        help="--soak: add gRPC options to Switchyard's own (under bench/traced.py), "
        "e.g. grpc.http2.bdp_probe=0",
    )
    parser.add_argument(
        "--malloc-trim",
        action="store_true",
        help="--soak: at every 10%%, also the RSS after glibc's malloc_trim(0) (free heap malloc kept)",
    )
    parser.add_argument(
        "--sy-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the Switchyard processes (e.g. MALLOC_ARENA_MAX=2); repeatable",
    )
    parser.add_argument(
        "--governance",
        action="store_true",
        help="compare Switchyard without and with governance (auth, budget, rate limit, request log) "
        "instead of Switchyard vs direct",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="--governance: alternated rounds the requests are split into"
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help="measured requests per latency figure (default 2000; --governance: per figure and variant, "
        "over all rounds; --soak: of the whole run, default 200000)",
    )
    parser.add_argument("--warmup", type=int, default=300, help="warm-up requests before each measurement")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="the high concurrency (default 32, --soak: 16)"
    )
    parser.add_argument(
        "--mem-requests", type=int, default=50_000, help="requests of the memory run (0: skip)"
    )
    parser.add_argument("--mem-sample-every", type=int, default=5000, help="RSS sample interval, in requests")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (a few hundred requests)")
    parser.add_argument("--profile", action="store_true", help="py-spy each Switchyard process under load")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument(
        "--upstream-delay-ms", type=float, default=0.0, help="latency the fake adds to replies"
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="default: latest.json (--governance: governance.json)"
    )
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = 200_000 if args.soak else 2000
    if args.concurrency is None:
        args.concurrency = 16 if args.soak else 32
    if args.modes is None:
        args.modes = (
            "inprocess,split" if args.soak else "inprocess" if args.governance else ",".join(ALL_MODES)
        )
    if args.output is None:
        name = "soak.json" if args.soak else "governance.json" if args.governance else "latest.json"
        args.output = RESULTS_DIR / name
    if (args.tracemalloc or args.malloc_trim) and not args.soak:
        parser.error("--tracemalloc and --malloc-trim need --soak")
    sy_env = tuple(tuple(item.split("=", 1)) for item in args.sy_env)
    if any(len(pair) != 2 for pair in sy_env):
        parser.error("--sy-env takes NAME=VALUE")
    aliases = {"serve": "inprocess"}
    modes = tuple(aliases.get(m.strip(), m.strip()) for m in args.modes.split(",") if m.strip())
    unknown = [m for m in modes if m not in ALL_MODES]
    if unknown or not modes:
        parser.error(f"unknown mode(s) {unknown}; choose from {', '.join(ALL_MODES)}")
    if args.quick:
        args.requests = min(args.requests, 5000 if args.soak else 300)
        args.warmup = min(args.warmup, 50)
        args.mem_requests, args.mem_sample_every = (
            min(args.mem_requests, 3000),
            min(args.mem_sample_every, 500),
        )
    return Settings(
        modes=modes,
        requests=args.requests,
        warmup=args.warmup,
        concurrency=args.concurrency,
        mem_requests=args.mem_requests,
        mem_sample_every=max(1, args.mem_sample_every),
        profile_seconds=args.profile_seconds if args.profile else 0.0,
        upstream_delay_ms=args.upstream_delay_ms,
        output=args.output,
        governance=args.governance,
        rounds=max(1, args.rounds),
        soak=args.soak,
        stream_every=max(1, args.stream_every),
        tracemalloc=max(0, args.tracemalloc),
        malloc_trim=args.malloc_trim,
        grpc_options=args.grpc_options,
        switchyard_env=tuple((name, value) for name, value in sy_env),
    )


def note(message: str) -> None:
    """Progress, on stderr (stdout carries the result table)."""
    print(message, file=sys.stderr, flush=True)


def make_job(
    base_url: str,
    kind: str,
    concurrency: int,
    requests: int,
    warmup: int,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Job:
    """A load job against ``base_url``'s chat-completions path: unary, streamed or mixed."""
    body = {**BODY, "stream": True} if kind == "stream" else BODY
    if kind == "mixed":
        extra = {"stream_body": orjson.dumps({**BODY, "stream": True}), **extra}
    return Job(
        kind=kind,  # type: ignore[arg-type]
        url=base_url + CHAT_PATH,
        body=orjson.dumps(body),
        headers=HEADERS if headers is None else headers,
        concurrency=concurrency,
        requests=requests,
        warmup=warmup,
        **extra,
    )


class Bench:
    """Runs the measurements of every mode against one upstream with one load generator."""

    def __init__(self, settings: Settings, client: LoadClient, upstream: Upstream, workdir: Path) -> None:
        self.settings = settings
        self.client = client
        self.upstream = upstream
        self.workdir = workdir

    # -- one measurement

    def measure(self, job: Job, pids: dict[str, int], label: str) -> dict[str, Any]:
        """Run ``job``; add the CPU each watched process spent per measured request."""
        cpu_start: dict[str, float] = {}

        def on_event(kind: str, _value: Any) -> None:
            if kind == "warm":
                cpu_start.update({role: cpu_seconds(pid) for role, pid in pids.items()})

        result = self.client.run(job, on_event)
        served = max(1, result["requests"])
        result["server_cpu_us_per_req"] = {
            role: 1e6 * (cpu_seconds(pid) - cpu_start[role]) / served for role, pid in pids.items()
        }
        lat = result.get("ttft_ms") or result["latency_ms"]
        what = "TTFT" if "ttft_ms" in result else "latency"
        note(
            f"  {label:<30} {result['rps']:7.0f} req/s  {what} p50 {lat['p50']:6.2f} ms"
            f"  p99 {lat['p99']:6.2f} ms  errors {result['errors']}"
            f"  client busy {result['client_cpu_pct']:.0f}%"
        )
        return result

    def latency_suite(self, base_url: str, pids: dict[str, int], who: str) -> dict[str, dict[str, Any]]:
        """Unary at c=1 and c=N, streaming at c=1."""
        s = self.settings
        plan = (
            ("unary_c1", "unary", 1),
            ("unary_cN", "unary", s.concurrency),
            ("stream_c1", "stream", 1),
        )
        return {
            name: self.measure(make_job(base_url, kind, c, s.requests, s.warmup), pids, f"{who} {kind} c={c}")
            for name, kind, c in plan
        }

    # -- memory and profile

    def memory_run(self, sy: Switchyard) -> dict[str, Any]:
        """RSS (summed over the Switchyard processes) after warm-up and every ``mem_sample_every``."""
        s = self.settings
        samples: list[dict[str, Any]] = []

        def sample(requests: int) -> None:
            per_role = sy.rss()
            samples.append({"requests": requests, "rss_mb": sum(per_role.values()), "per_process": per_role})

        def on_event(kind: str, value: Any) -> None:
            if kind == "warm":
                sample(0)
            elif kind == "progress":
                sample(int(value))
                note(f"    memory run: {value} requests, RSS {samples[-1]['rss_mb']:.1f} MB")

        job = make_job(
            sy.base_url, "unary", s.concurrency, s.mem_requests, s.warmup, progress_every=s.mem_sample_every
        )
        started = time.perf_counter()
        result = self.client.run(job, on_event)
        if not samples or samples[-1]["requests"] != result["requests"]:
            sample(result["requests"])
        return {
            "requests": result["requests"],
            "errors": result["errors"],
            "concurrency": s.concurrency,
            "rps": result["rps"],
            "duration_s": time.perf_counter() - started,
            "roles": list(sy.pids),
            "samples": samples,
            "figures": memory_figures(samples),
        }

    def profile(
        self,
        sy: Switchyard,
        name: str | None = None,
        concurrency: int | None = None,
        headers: dict[str, str] | None = None,
        focus: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """py-spy every Switchyard process while a unary load runs (c=N unless ``concurrency``);
        summarise the samples. ``name`` (default: the mode) names the profile files."""
        seconds = self.settings.profile_seconds
        name = name or sy.mode
        concurrency = concurrency or self.settings.concurrency
        spies: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        try:
            for role, pid in sy.pids.items():
                out = RESULTS_DIR / f"profile-{name}-{role}.txt"
                out.unlink(missing_ok=True)
                spies[role] = (start_py_spy(pid, seconds, out), out)
            time.sleep(1.0)  # let py-spy attach before the load starts
            job = make_job(sy.base_url, "unary", concurrency, 0, 0, headers, duration_s=seconds + 1.0)
            load = self.measure(job, {**sy.pids, "upstream": self.upstream.pid}, f"{name} under py-spy")
            summaries: dict[str, Any] = {}
            for role, (proc, out) in spies.items():
                proc.wait(timeout=seconds + 30)
                summaries[role] = (
                    {"file": str(out), "concurrency": concurrency, **summarize_profile(out, focus=focus)}
                    if out.exists()
                    else {"file": None}
                )
                summaries[role]["cpu_us_per_req_under_py_spy"] = load["server_cpu_us_per_req"].get(role)
            return summaries
        finally:
            for proc, _ in spies.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    # -- one mode

    def run_mode(self, mode: str) -> dict[str, Any]:
        """Direct baseline, then Switchyard in ``mode``: latency suite, memory run, profile."""
        block: dict[str, Any] = {"mode": mode, "direct": {}, "switchyard": {}, "memory": None, "error": None}
        note(f"[{mode}] direct baseline")
        try:
            block["direct"] = self.latency_suite(self.upstream.url, {"upstream": self.upstream.pid}, "direct")
            note(f"[{mode}] starting switchyard")
            sy = Switchyard.start(mode, self.upstream.url, self.workdir / mode)
            try:
                block["boot_rss_mb"] = sy.rss()
                pids = {**sy.pids, "upstream": self.upstream.pid}
                block["switchyard"] = self.latency_suite(sy.base_url, pids, mode)
                if self.settings.mem_requests > 0:
                    block["memory"] = self.memory_run(sy)
                    block["memory"]["boot_mb"] = sum(block["boot_rss_mb"].values())
                if self.settings.profile_seconds > 0:
                    block["profile"] = self.profile(sy)
                sy.check_alive()
            finally:
                sy.stop()
        except Exception as exc:  # one broken mode must not lose the others' results
            block["error"] = f"{type(exc).__name__}: {exc}"
            note(f"[{mode}] FAILED: {block['error']}")
        block["added"] = added_figures(block["direct"], block["switchyard"])
        figures = {**block["added"], **((block["memory"] or {}).get("figures") or {})}
        block["checks"] = run_checks(mode, figures)
        return block

    # -- --soak: one long run, RSS at every 10 %

    def run_soak(self, mode: str) -> dict[str, Any]:
        """``requests`` mixed requests at c=N through one fresh stack of ``mode`` (governed with
        --governance); RSS of each process after warm-up, at every 10 % and after a short idle."""
        s = self.settings
        variant = governance.variants()["with" if s.governance else "without"]
        headers = {**HEADERS, "api-key": variant.credential} if variant.credential else HEADERS
        block: dict[str, Any] = {
            "mode": mode,
            "governance": s.governance,
            "concurrency": s.concurrency,
            "stream_every": s.stream_every,
            "requests_planned": s.requests,
            "switchyard_env": dict(s.switchyard_env),
            "samples": [],
            "error": None,
        }
        # Named after the output file, so two soaks with different --output can run side by side.
        tag = s.output.stem
        trace_dir = RESULTS_DIR / f"tracemalloc-{tag}-{mode}"
        env = {**variant.env, **dict(s.switchyard_env)}
        probed = bool(s.tracemalloc or s.malloc_trim or s.grpc_options)
        if probed:
            for old in trace_dir.glob("*/*"):
                old.unlink()
            env["SY_BENCH_TRACEMALLOC_DIR"] = str(trace_dir)
            env["SY_BENCH_TRACEMALLOC_FRAMES"] = str(s.tracemalloc)
            env["SY_BENCH_MALLOC_TRIM"] = "1" if s.malloc_trim else "0"
            env["SY_BENCH_GRPC_OPTIONS"] = s.grpc_options
        samples: list[dict[str, Any]] = block["samples"]
        sy: Switchyard | None = None
        try:
            note(f"[{mode}] starting switchyard for the soak (governance {'on' if s.governance else 'off'})")
            workdir = governance.fresh_workdir(self.workdir / f"{tag}-{mode}")
            launcher = "bench.traced" if probed else None
            sy = Switchyard.start(mode, self.upstream.url, workdir, variant.edit, env, launcher)
            block["roles"] = list(sy.pids)
            block["boot_rss_mb"] = sy.rss()
            if s.governance:
                block["probe"] = governance.probe(
                    sy.base_url, CHAT_PATH, orjson.dumps(BODY), headers["api-key"]
                )
            running = sy
            started = time.perf_counter()

            def sample(requests: int | None) -> None:
                pids = running.pids
                row: dict[str, Any] = {
                    "requests": requests,
                    "elapsed_s": round(time.perf_counter() - started, 1),
                    "per_process": {role: rss_mb(pid) for role, pid in pids.items()},
                    "anon_per_process": {role: rss_mb(pid, "RssAnon") for role, pid in pids.items()},
                }
                row["rss_mb"] = sum(row["per_process"].values())
                if probed:
                    probes: dict[str, Any] = {}
                    for role, pid in pids.items():
                        figures = soak.request_snapshot(pid, trace_dir / role, len(samples))
                        if figures is not None:
                            probes[role] = figures
                    row["probes"] = probes
                    if s.tracemalloc:
                        row["traced_mb"] = {
                            r: f["traced_kb"] / 1024 for r, f in probes.items() if "traced_kb" in f
                        }
                    if s.malloc_trim:
                        row["trimmed_mb"] = {
                            r: f["rss_after_trim_kb"] / 1024
                            for r, f in probes.items()
                            if "rss_after_trim_kb" in f
                        }
                samples.append(row)

            def on_event(kind: str, value: Any) -> None:
                if kind == "warm":
                    sample(0)
                elif kind == "progress":
                    sample(int(value))
                    note(
                        f"    soak {mode}: {value} requests, RSS "
                        + ", ".join(f"{r} {mb:.1f}" for r, mb in samples[-1]["per_process"].items())
                        + f" MB ({samples[-1]['elapsed_s']:.0f} s)"
                    )

            every = max(1, s.requests // 10)
            job = make_job(
                sy.base_url,
                "mixed",
                s.concurrency,
                s.requests,
                s.warmup,
                headers,
                progress_every=every,
                stream_every=s.stream_every,
            )
            result = self.client.run(job, on_event, timeout_s=max(1800.0, s.requests / 20))
            block.update(
                requests=result["requests"],
                errors=result["errors"],
                error_samples=result["error_samples"],
                rps=result["rps"],
                duration_s=result["wall_s"],
                latency_ms=result["latency_ms"],
                ttft_ms=result.get("ttft_ms"),
            )
            if s.governance:
                block["governed_state"] = governance.governed_state(
                    sy.base_url, variant.admin_token or "", 2.0
                )
            else:
                time.sleep(2.0)
            sample(None)  # after the request log's last flush, with no load
            sy.check_alive()
        except Exception as exc:  # keep the samples taken so far
            block["error"] = f"{type(exc).__name__}: {exc}"
            note(f"[{mode} soak] FAILED: {block['error']}")
        finally:
            if sy is not None:
                sy.stop()
        roles = block.get("roles") or []
        block["figures"] = soak.soak_figures(samples, s.requests, roles)
        if s.tracemalloc:
            marks = [i for i, row in enumerate(samples) if row["requests"] is not None]
            first = next(
                (i for i in marks if samples[i]["requests"] >= soak.WARM_FRACTION * s.requests), None
            )
            last = marks[-1] if marks else None
            block["tracemalloc"] = {
                role: soak.compare_snapshots(trace_dir / role, first, last)
                if first is not None and last is not None and first < last
                else None
                for role in roles
            }
        return block

    # -- --governance: the same mode without and with governance

    def run_governance(self, mode: str) -> dict[str, Any]:
        """Two stacks of ``mode`` (see ``bench/governance.py``), measured back to back in alternated
        rounds: unary c=1 and c=N, streaming c=1. Percentiles pool every round's samples."""
        s = self.settings
        per_round = max(1, s.requests // s.rounds)
        block: dict[str, Any] = {
            "mode": mode,
            "rounds": s.rounds,
            "requests_per_round": per_round,
            "without": {},
            "with": {},
            "error": None,
            "warnings": [],
        }
        variants = governance.variants()
        headers = {
            name: {**HEADERS, "api-key": v.credential} if v.credential else HEADERS
            for name, v in variants.items()
        }
        plan = (
            ("unary_c1", "unary", 1),
            ("unary_cN", "unary", s.concurrency),
            ("stream_c1", "stream", 1),
        )
        results: dict[str, dict[str, list[dict[str, Any]]]] = {
            v: {name: [] for name, _, _ in plan} for v in governance.VARIANTS
        }
        stacks: dict[str, Switchyard] = {}
        try:
            for name, variant in variants.items():
                note(f"[{mode}] starting switchyard {name} governance")
                workdir = governance.fresh_workdir(self.workdir / f"{mode}-gov-{name}")
                stacks[name] = Switchyard.start(mode, self.upstream.url, workdir, variant.edit, variant.env)
            governed, key = stacks["with"], variants["with"].credential or ""
            block["probe"] = governance.probe(governed.base_url, CHAT_PATH, orjson.dumps(BODY), key)
            if block["probe"] != {"without_credential": 401, "with_key": 200}:
                block["warnings"].append(f"the governed stack answered {block['probe']} (expected 401, 200)")
            for r in range(s.rounds):
                order = governance.VARIANTS if r % 2 == 0 else governance.VARIANTS[::-1]
                for name, kind, c in plan:
                    for v in order:
                        sy = stacks[v]
                        job = make_job(
                            sy.base_url, kind, c, per_round, s.warmup, headers[v], keep_samples=True
                        )
                        pids = {**sy.pids, "upstream": self.upstream.pid}
                        label = f"{mode} {v:<7} round {r + 1}/{s.rounds} {kind} c={c}"
                        results[v][name].append(self.measure(job, pids, label))
            state = governance.governed_state(governed.base_url, variants["with"].admin_token or "")
            block["governed_state"] = state
            if not state.get("request_logs_written") or not state.get("key_spent_usd"):
                block["warnings"].append("the governed stack wrote no request log or spent no budget")
            if state.get("request_logs_dropped") or state.get("unpriced_requests"):
                block["warnings"].append("request-log entries were dropped or requests went unpriced")
            if s.profile_seconds > 0:
                block["profile"] = {
                    v: self.profile(stacks[v], f"{mode}-gov-{v}", 1, headers[v], governance.GOVERNANCE_FILES)
                    for v in governance.VARIANTS
                }
            for sy in stacks.values():
                sy.check_alive()
        except Exception as exc:  # keep what was measured
            block["error"] = f"{type(exc).__name__}: {exc}"
            note(f"[{mode} governance] FAILED: {block['error']}")
        finally:
            for sy in stacks.values():
                sy.stop()
        for v in governance.VARIANTS:
            block[v] = {name: governance.pool(rounds) for name, rounds in results[v].items() if rounds}
        block["added"] = governance_figures(block["without"], block["with"])
        block["checks"] = run_checks(mode, block["added"], GOVERNANCE_TARGETS)
        return block


# --------------------------------------------------------------------------- output


def meta(settings: Settings, started: float) -> dict[str, Any]:
    """Where and how the run happened."""
    return {
        "settings": {**asdict(settings), "output": str(settings.output)},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_end": os.getloadavg(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
    }


def source_fingerprint() -> str:
    """A hash of Switchyard's Python sources, to tell whether the code changed during a run."""
    digest = hashlib.sha256()
    for package in ("gateway", "service", "switchyard"):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            digest.update(str(path.relative_to(REPO_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def write_results(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def _print_profile(title: str, summary: dict[str, Any], sections: Sequence[tuple[str, str]]) -> None:
    samples, path = summary.get("samples", 0), summary.get("file")
    print(f"\n=== py-spy {title}: {samples} samples ({path})")
    for heading, key in sections:
        print(f"  top {heading}:")
        for label, pct in summary.get(key, [])[:12]:
            print(f"    {pct:5.1f}%  {label}")


def _print_governance_profiles(block: dict[str, Any]) -> None:
    """Both variants' profiles, their shares turned into CPU us per request (share x the process's CPU
    per request in the pooled c=1 measurement: an estimate), and what "with" spends more, per function."""
    estimates: dict[str, dict[str, dict[str, float]]] = {}  # role -> variant -> label -> us/req
    for variant, per_role in (block.get("profile") or {}).items():
        for role, summary in per_role.items():
            cpu = (
                ((block.get(variant) or {}).get("unary_c1") or {}).get("server_cpu_us_per_req", {}).get(role)
            )
            title = f"{block['mode']} governance {variant}/{role}, unary c={summary.get('concurrency')}"
            print(f"\n=== py-spy {title}: {summary.get('samples', 0)} samples ({summary.get('file')})")
            if not cpu:
                continue
            print(f"  (us/req = share x {cpu:.0f} us, the CPU per request at c=1 without py-spy)")
            estimates.setdefault(role, {})[variant] = {
                label: pct / 100 * cpu for label, pct in summary.get("attributed_pct", {}).items()
            }
            sections = [
                (
                    "attributed, our code (innermost frame of ours + the libraries it calls)",
                    "top_attributed_ours_pct",
                )
            ]
            if variant == "with":
                sections.append(("inclusive, governance files", "top_inclusive_focus_pct"))
            for heading, key in sections:
                print(f"  top {heading}:")
                for label, pct in summary.get(key, [])[:12]:
                    print(f"    {pct:5.1f}%  ~{pct / 100 * cpu:5.0f} us/req  {label}")
    for role, per_variant in estimates.items():
        with_, without = per_variant.get("with"), per_variant.get("without")
        if with_ is None or without is None:
            continue
        total = sum(with_.values()) - sum(without.values())
        print(
            f"\n=== {block['mode']}/{role}: where governance's CPU goes (with - without, {total:+.0f} us/req)"
        )
        print("  attributed as above; functions of our code, else the leaf frame; estimates, +-10 us")
        diffs = {label: with_.get(label, 0.0) - without.get(label, 0.0) for label in {*with_, *without}}
        for label, us in sorted(diffs.items(), key=lambda item: -item[1])[:15]:
            print(f"    {us:+6.0f} us/req  {label}")


def print_report(
    blocks: list[dict[str, Any]], settings: Settings, gov_blocks: Sequence[dict[str, Any]] = ()
) -> None:
    for block in blocks:
        print(mode_section(block, settings.concurrency))
        print()
    if blocks:
        print(summary_table(blocks, settings.concurrency))
    for block in blocks:
        for role, summary in (block.get("profile") or {}).items():
            _print_profile(
                f"{block['mode']}/{role}",
                summary,
                (
                    ("self, all code", "top_self_pct"),
                    ("inclusive, all code", "top_inclusive_pct"),
                    ("inclusive, our code", "top_inclusive_ours_pct"),
                    ("self, our code", "top_self_ours_pct"),
                ),
            )
    for block in gov_blocks:
        print(governance_section(block, settings.concurrency))
        print()
    for block in gov_blocks:
        _print_governance_profiles(block)


# --------------------------------------------------------------------------- main


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Start the upstream and the load generator, run every mode, report; always clean up."""
    settings = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.time()
    fingerprint = source_fingerprint()
    workdir = RESULTS_DIR / "logs"
    workdir.mkdir(parents=True, exist_ok=True)
    blocks: list[dict[str, Any]] = []
    gov_blocks: list[dict[str, Any]] = []
    soak_blocks: list[dict[str, Any]] = []
    interrupted = False
    upstream: Upstream | None = None
    client: LoadClient | None = None
    try:
        upstream = Upstream.start(workdir / "upstream.log", settings.upstream_delay_ms)
        note(f"fake upstream at {upstream.url} (pid {upstream.pid})")
        client = LoadClient()
        bench = Bench(settings, client, upstream, workdir)
        for mode in settings.modes:
            if settings.soak:
                soak_blocks.append(bench.run_soak(mode))
            elif settings.governance:
                gov_blocks.append(bench.run_governance(mode))
            else:
                blocks.append(bench.run_mode(mode))
    except KeyboardInterrupt:
        interrupted = True
        note("interrupted: stopping everything")
    finally:
        if client is not None:
            client.close()
        if upstream is not None:
            upstream.stop()
    changed = source_fingerprint() != fingerprint
    info = {"interrupted": interrupted, "source_sha256": fingerprint, "source_changed_during_run": changed}
    payload: dict[str, Any] = {"meta": {**meta(settings, started), **info}, "modes": blocks}
    if settings.soak:
        payload["soak"] = soak_blocks
    elif settings.governance:
        payload["governance"] = gov_blocks
    write_results(settings.output, payload)
    print_report(blocks, settings, gov_blocks)
    for block in soak_blocks:
        print(soak.soak_section(block))
        print()
    if changed:
        print("\nWARNING: Switchyard's sources changed during this run; modes may have run different code.")
    print(f"\nresults: {settings.output}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    raise SystemExit(main())
