"""The soak run (``bench/run.py --soak``): does a long run grow Switchyard's memory?

One stack per mode serves ``--requests`` (default 200,000) at ``--concurrency`` (default 16), a mix of
unary and streamed requests, governance on with ``--governance`` (the governed variant of
``bench/governance.py``: virtual key, budget, rate limit, priced model, request log). The RSS of
every Switchyard process is read after the warm-up and at every 10 %; the figure is the slope after
warm-up (a least-squares line through the samples from 20 % to 100 %), in MB per 100,000 requests.

RSS alone cannot tell a leak from the allocator: freed memory that glibc malloc or pymalloc keeps
(fragmentation, arenas) also shows as RSS. With ``--tracemalloc`` the processes run under
``bench/traced.py`` and dump a tracemalloc snapshot at each sample; the report then shows the
Python memory that is live at each 10 % and the allocation sites that grew between 20 % and 100 %.
This module holds the arithmetic and the text output; ``bench/run.py`` runs the load.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TARGET_MB_PER_100K = 2.0
_REPO = str(Path(__file__).resolve().parent.parent) + "/"
_STDLIB = re.compile(r"^.*/lib/python3\.\d+/")
WARM_FRACTION = 0.2  # the slope starts at 20 %: before that, pools, caches and arenas still fill
SNAPSHOT_TIMEOUT_S = 60.0
# Per-process columns some soaks add: (sample key, name): live Python memory, RSS after malloc_trim.
_PROBE_COLUMNS = (("traced_mb", "traced"), ("trimmed_mb", "trimmed"))
# Allocations of the tracing itself and of imports are not the service's memory.
_IGNORED = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


def slope_per_100k(points: Sequence[tuple[int, float]]) -> float | None:
    """Least-squares slope of ``(requests, MB)`` points, in MB per 100,000 requests."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return None
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return cov / var * 100_000


def soak_figures(samples: list[dict[str, Any]], total: int, roles: Sequence[str]) -> dict[str, Any]:
    """Slopes after warm-up (total and per process, RSS and, when traced, live Python memory)."""
    warm = [s for s in samples if s.get("requests") is not None and s["requests"] >= WARM_FRACTION * total]
    figures: dict[str, Any] = {
        "from_requests": warm[0]["requests"] if warm else None,
        "slope_mb_per_100k": slope_per_100k([(s["requests"], s["rss_mb"]) for s in warm]),
        "slope_per_process": {
            role: slope_per_100k([(s["requests"], s["per_process"][role]) for s in warm]) for role in roles
        },
    }
    for column, name in _PROBE_COLUMNS:
        probed = [s for s in warm if s.get(column)]
        if probed:
            figures[f"{name}_slope_per_process"] = {
                role: slope_per_100k([(s["requests"], s[column][role]) for s in probed if role in s[column]])
                for role in roles
            }
    slope = figures["slope_mb_per_100k"]
    figures["ok"] = None if slope is None else abs(slope) <= TARGET_MB_PER_100K
    return figures


# --------------------------------------------------------------------------- tracemalloc


def request_snapshot(pid: int, role_dir: Path, sequence: int) -> dict[str, Any] | None:
    """SIGUSR1 to a process under ``bench/traced.py``; wait for its ``NN.json``; return those figures."""
    done = role_dir / f"{sequence:02d}.json"
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + SNAPSHOT_TIMEOUT_S
    while time.monotonic() < deadline:
        if done.exists():
            figures: dict[str, Any] = json.loads(done.read_text())
            return figures
        time.sleep(0.05)
    return None


def _load(path: Path) -> tracemalloc.Snapshot:
    return tracemalloc.Snapshot.load(str(path)).filter_traces(_IGNORED)


def _where(trace: tracemalloc.Traceback, frames: int) -> str:
    """The innermost ``frames`` frames, innermost first, paths shortened to the package."""
    parts = []
    for frame in list(trace)[:frames]:
        name = frame.filename
        if "site-packages/" in name:
            name = name.split("site-packages/", 1)[1]
        elif name.startswith(_REPO):
            name = name[len(_REPO) :]
        else:
            name = _STDLIB.sub("", name)
        parts.append(f"{name}:{frame.lineno}")
    return " <- ".join(parts)


def compare_snapshots(role_dir: Path, first: int, last: int, top: int = 15) -> dict[str, Any] | None:
    """What grew between snapshot ``first`` and ``last`` of one process: per line and per traceback."""
    before_path, after_path = role_dir / f"{first:02d}.snap", role_dir / f"{last:02d}.snap"
    if not (before_path.exists() and after_path.exists()):
        return None
    before, after = _load(before_path), _load(after_path)

    def rows(key: str, frames: int) -> list[dict[str, Any]]:
        stats = after.compare_to(before, key)
        grown = sorted(stats, key=lambda st: -st.size_diff)[:top]
        return [
            {
                "kb_diff": round(st.size_diff / 1024, 1),
                "kb": round(st.size / 1024, 1),
                "count_diff": st.count_diff,
                "where": _where(st.traceback, frames),
            }
            for st in grown
        ]

    total_before = sum(st.size for st in before.statistics("filename"))
    total_after = sum(st.size for st in after.statistics("filename"))
    return {
        "first": first,
        "last": last,
        "traced_diff_kb": round((total_after - total_before) / 1024, 1),
        "by_line": rows("lineno", 1),
        "by_traceback": rows("traceback", 4)[:8],
    }


# --------------------------------------------------------------------------- text


def _cell(value: float | None, digits: int = 1, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def soak_section(block: dict[str, Any]) -> str:
    """The soak's table for one mode: RSS at each 10 %, the slope, and the tracemalloc evidence."""
    roles: list[str] = block.get("roles") or []
    total = block.get("requests_planned") or 0
    lines = [
        f"=== soak {block['mode']}: governance {'on' if block.get('governance') else 'off'}, "
        f"c={block.get('concurrency')}, 1 in {block.get('stream_every')} streamed, "
        f"{block.get('requests', 0)} requests in {_cell(block.get('duration_s'), 0)} s "
        f"({_cell(block.get('rps'), 0)} req/s), {block.get('errors', 0)} errors"
    ]
    if block.get("error"):
        lines.append(f"  ! {block['error']}")
    columns = [
        (column, label)
        for (column, _), label in zip(_PROBE_COLUMNS, ("py MB", "trim MB"), strict=True)
        if any(s.get(column) for s in block.get("samples", []))
    ]
    header = f"  {'requests':>9} {'%':>4}  " + "".join(f"{r + ' MB':>12}" for r in roles)
    header += f"{'total MB':>10}"
    for _, label in columns:
        header += "".join(f"{r + ' ' + label:>16}" for r in roles)
    lines.append(header)
    for s in block.get("samples", []):
        requests = s.get("requests")
        pct = "idle" if requests is None else f"{100 * requests / total:.0f}" if total else "-"
        label = "after" if requests is None else str(requests)
        row = f"  {label:>9} {pct:>4}  " + "".join(f"{s['per_process'][r]:12.1f}" for r in roles)
        row += f"{s['rss_mb']:10.1f}"
        for column, _ in columns:
            row += "".join(f"{_cell((s.get(column) or {}).get(r), 1):>16}" for r in roles)
        lines.append(row)
    fig = block.get("figures") or {}
    per = "  ".join(f"{r} {_cell(v, 2, True)}" for r, v in (fig.get("slope_per_process") or {}).items())
    verdict = {True: "PASS", False: "FAIL", None: "-"}[fig.get("ok")]
    lines.append(
        f"  RSS slope after warm-up ({_cell(100 * WARM_FRACTION, 0)}% -> 100%): "
        f"{_cell(fig.get('slope_mb_per_100k'), 2, True)} MB per 100k requests ({per}); "
        f"target within +-{TARGET_MB_PER_100K:.0f}: {verdict}"
    )
    for name, what in (("traced", "live Python memory (tracemalloc)"), ("trimmed", "RSS after malloc_trim")):
        if fig.get(f"{name}_slope_per_process"):
            per = "  ".join(f"{r} {_cell(v, 2, True)}" for r, v in fig[f"{name}_slope_per_process"].items())
            lines.append(f"  {what} slope: {per} MB per 100k requests")
    state = block.get("governed_state")
    if state:
        lines.append(
            f"  governed: {state.get('request_logs_written', 0)} request-log entries written, "
            f"{state.get('request_logs_dropped', 0)} dropped, key spent ${state.get('key_spent_usd', 0):.4f}"
        )
    for role, comparison in (block.get("tracemalloc") or {}).items():
        if not comparison:
            continue
        lines.append(
            f"  tracemalloc {role}: snapshot {comparison['first']} -> {comparison['last']}: "
            f"{comparison['traced_diff_kb']:+.0f} KB traced; top growth by line:"
        )
        for row in comparison["by_line"]:
            lines.append(f"    {row['kb_diff']:+9.1f} KB {row['count_diff']:+8d} blocks  {row['where']}")
        lines.append("  top growth by traceback (innermost first):")
        for row in comparison["by_traceback"]:
            lines.append(f"    {row['kb_diff']:+9.1f} KB {row['count_diff']:+8d} blocks  {row['where']}")
    return "\n".join(lines)
