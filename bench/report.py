"""Derived figures (added latency, throughput ratio, memory growth), targets, and the text table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ALL_MODES = ("inprocess", "grpc-loopback", "split")
GROWTH_LIMIT_MB = 2.0  # "not growing": RSS rose at most this much over the second half of the memory run


@dataclass(frozen=True)
class Target:
    """A goal on one derived figure of some modes."""

    label: str
    figure: str  # key in a mode's "added"/"memory" summary
    limit: float
    modes: tuple[str, ...]
    at_least: bool = False  # True: figure >= limit; False: figure <= limit
    note: str = ""

    def check(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value >= self.limit if self.at_least else value <= self.limit

    def text(self) -> str:
        if self.figure == "throughput_ratio":
            return f">= {self.limit:.0%}"
        unit = " MB" if self.figure.startswith("rss") or self.figure.startswith("growth") else " ms"
        return f"{'>=' if self.at_least else '<='} {self.limit:g}{unit}"


TARGETS: tuple[Target, ...] = (
    Target("added p50, c=1", "c1_p50_ms", 1.0, ("inprocess",)),
    Target("added p99, c=1", "c1_p99_ms", 5.0, ("inprocess",)),
    Target("added p50, c=1", "c1_p50_ms", 2.0, ("split",)),
    Target(
        "added p50, c=1",
        "c1_p50_ms",
        2.0,
        ("grpc-loopback",),
        note="no stated target; split's (same gRPC hop) applied",
    ),
    Target("added TTFT p50, c=1", "ttft_p50_ms", 2.0, ALL_MODES),
    Target("throughput vs direct, c=32", "throughput_ratio", 0.40, ALL_MODES, at_least=True),
    Target("RSS max (all processes)", "rss_max_mb", 150.0, ALL_MODES),
    Target(
        "RSS not growing",
        "growth_second_half_mb",
        GROWTH_LIMIT_MB,
        ALL_MODES,
        note="growth over the 2nd half of the memory run",
    ),
)


# What governance (auth, budgets, rate limits, request log) may add, with vs without (--governance).
GOVERNANCE_TARGETS: tuple[Target, ...] = (
    Target("governance added p50, unary c=1", "c1_p50_ms", 0.3, ALL_MODES),
    Target("governance added TTFT p50, c=1", "ttft_p50_ms", 0.3, ALL_MODES),
)


# --------------------------------------------------------------------------- derived figures


def _lat(result: dict[str, Any] | None, which: str, q: str) -> float | None:
    if not result or not result.get(which):
        return None
    return result[which][q]


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def added_figures(direct: dict[str, Any], switchyard: dict[str, Any]) -> dict[str, float | None]:
    """Switchyard minus direct, per measurement; throughput as a ratio at high concurrency."""
    figures: dict[str, float | None] = {}
    for name, key in (("unary_c1", "c1"), ("unary_cN", "cN")):
        for q in ("p50", "p99"):
            figures[f"{key}_{q}_ms"] = _diff(
                _lat(switchyard.get(name), "latency_ms", q), _lat(direct.get(name), "latency_ms", q)
            )
    for q in ("p50", "p99"):
        figures[f"ttft_{q}_ms"] = _diff(
            _lat(switchyard.get("stream_c1"), "ttft_ms", q), _lat(direct.get("stream_c1"), "ttft_ms", q)
        )
    sy_rps = (switchyard.get("unary_cN") or {}).get("rps")
    direct_rps = (direct.get("unary_cN") or {}).get("rps")
    figures["throughput_ratio"] = sy_rps / direct_rps if sy_rps and direct_rps else None
    return figures


def _switchyard_cpu(result: dict[str, Any] | None) -> float | None:
    """CPU us per request summed over the Switchyard processes (the upstream left out)."""
    per_role = (result or {}).get("server_cpu_us_per_req")
    if not per_role:
        return None
    return sum(us for role, us in per_role.items() if role != "upstream")


def governance_figures(without: dict[str, Any], with_: dict[str, Any]) -> dict[str, Any]:
    """What governance adds: with minus without per measurement (``added_figures``' keys), the
    summed Switchyard CPU per request added, and the per-round differences of the c=1 p50s."""
    figures: dict[str, Any] = dict(added_figures(without, with_))
    for name, key in (("unary_c1", "c1"), ("unary_cN", "cN"), ("stream_c1", "stream")):
        figures[f"cpu_us_{key}"] = _diff(_switchyard_cpu(with_.get(name)), _switchyard_cpu(without.get(name)))
    for name, which, key in (("unary_c1", "latency_ms", "c1_p50"), ("stream_c1", "ttft_ms", "ttft_p50")):
        w_rounds = (with_.get(name) or {}).get("rounds") or []
        o_rounds = (without.get(name) or {}).get("rounds") or []
        figures[f"rounds_{key}_ms"] = [
            _diff(_lat(w, which, "p50"), _lat(o, which, "p50"))
            for w, o in zip(w_rounds, o_rounds, strict=False)
        ]
    return figures


def memory_figures(samples: list[dict[str, Any]]) -> dict[str, float | None]:
    """Start (after warm-up), end, max and growth of the summed RSS over the memory run."""
    if not samples:
        return {"rss_start_mb": None, "rss_end_mb": None, "rss_max_mb": None, "growth_mb": None}
    totals = [s["rss_mb"] for s in samples]
    half = samples[-1]["requests"] / 2
    mid = next((s["rss_mb"] for s in samples if s["requests"] >= half), totals[0])
    return {
        "rss_start_mb": totals[0],
        "rss_end_mb": totals[-1],
        "rss_max_mb": max(totals),
        "growth_mb": totals[-1] - totals[0],
        "growth_second_half_mb": totals[-1] - mid,
    }


def run_checks(
    mode: str, figures: dict[str, float | None], targets: Sequence[Target] = TARGETS
) -> list[dict[str, Any]]:
    """Every target that applies to ``mode``, with its value and verdict (None: not measured)."""
    checks = []
    for target in targets:
        if mode not in target.modes:
            continue
        value = figures.get(target.figure)
        checks.append(
            {
                "target": target.label,
                "figure": target.figure,
                "value": value,
                "limit": target.text(),
                "ok": target.check(value),
                "note": target.note,
            }
        )
    return checks


# --------------------------------------------------------------------------- text output


def _num(value: float | None, digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _verdict(ok: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a"}[ok]


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    parts = [cells[0].ljust(widths[0])]
    parts += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=False)]
    return "  ".join(parts).rstrip()


def _target_cell(mode: str, figure: str, checks: list[dict[str, Any]]) -> str:
    for check in checks:
        if check["figure"] == figure:
            return f"{check['limit']} {_verdict(check['ok'])}"
    return ""


_WIDTHS = (24, 10, 11, 9, 16)


def _latency_rows(mode: str, block: dict[str, Any], checks: list[dict[str, Any]], high_c: int) -> list[str]:
    direct, sy, added = block["direct"], block["switchyard"], block["added"]
    lines = [_row(["", "direct", "switchyard", "added", "target"], _WIDTHS)]
    for name, key, label in (("unary_c1", "c1", "unary c=1"), ("unary_cN", "cN", f"unary c={high_c}")):
        for q in ("p50", "p99"):
            cells = [
                f"{label:<12}{q} ms",
                _num(_lat(direct.get(name), "latency_ms", q)),
                _num(_lat(sy.get(name), "latency_ms", q)),
                _num(added.get(f"{key}_{q}_ms"), sign=True),
                _target_cell(mode, f"{key}_{q}_ms", checks) if key == "c1" else "",
            ]
            lines.append(_row(cells, _WIDTHS))
        d_rps, s_rps = (direct.get(name) or {}).get("rps"), (sy.get(name) or {}).get("rps")
        ratio = added.get("throughput_ratio") if key == "cN" else (s_rps / d_rps if s_rps and d_rps else None)
        cells = [
            f"{label:<12}req/s",
            _num(d_rps, 0),
            _num(s_rps, 0),
            "-" if ratio is None else f"{ratio:.0%}",
            _target_cell(mode, "throughput_ratio", checks) if key == "cN" else "",
        ]
        lines.append(_row(cells, _WIDTHS))
    for q in ("p50", "p99"):
        cells = [
            f"{'stream c=1':<12}TTFT {q}",
            _num(_lat(direct.get("stream_c1"), "ttft_ms", q)),
            _num(_lat(sy.get("stream_c1"), "ttft_ms", q)),
            _num(added.get(f"ttft_{q}_ms"), sign=True),
            _target_cell(mode, f"ttft_{q}_ms", checks),
        ]
        lines.append(_row(cells, _WIDTHS))
    return lines


def _cpu_lines(block: dict[str, Any], high_c: int) -> list[str]:
    lines = []
    for name, label in (
        ("unary_c1", "unary c=1"),
        ("unary_cN", f"unary c={high_c}"),
        ("stream_c1", "stream c=1"),
    ):
        d, s = block["direct"].get(name) or {}, block["switchyard"].get(name) or {}
        if not s:
            continue
        sy_cpu = s.get("server_cpu_us_per_req", {})
        direct_up = d.get("server_cpu_us_per_req", {}).get("upstream", 0)
        parts = [f"{role} {us:.0f}" for role, us in sy_cpu.items() if role != "upstream"]
        lines.append(
            f"  {label:<12} CPU us/req: switchyard[{', '.join(parts) or '-'}]"
            f"  upstream {sy_cpu.get('upstream', 0):.0f} (direct {direct_up:.0f})"
            f"  client {s.get('client_cpu_us_per_req', 0):.0f}"
            f" (direct {d.get('client_cpu_us_per_req', 0):.0f})"
            f"  | client busy {s.get('client_cpu_pct', 0):.0f}% (direct {d.get('client_cpu_pct', 0):.0f}%)"
        )
    return lines


def _memory_lines(mode: str, memory: dict[str, Any] | None, checks: list[dict[str, Any]]) -> list[str]:
    if not memory:
        return ["  memory: not measured"]
    f = memory["figures"]
    lines = [
        f"  memory ({memory['requests']} req at c={memory['concurrency']}, RSS summed over "
        f"{'+'.join(memory['roles'])}; boot {_num(memory.get('boot_mb'), 1)} MB):",
        f"    start {_num(f['rss_start_mb'], 1)} MB  end {_num(f['rss_end_mb'], 1)} MB  max "
        f"{_num(f['rss_max_mb'], 1)} MB  growth {_num(f['growth_mb'], 1, sign=True)} MB "
        f"(2nd half {_num(f.get('growth_second_half_mb'), 1, sign=True)} MB)",
        f"    max {_target_cell(mode, 'rss_max_mb', checks)};  not growing: 2nd-half growth "
        f"{_target_cell(mode, 'growth_second_half_mb', checks)}",
    ]
    samples = "  ".join(f"{s['requests']}:{s['rss_mb']:.1f}" for s in memory["samples"])
    lines.append(f"    samples (requests:MB): {samples}")
    return lines


CLIENT_BUSY_WARN_PCT = 85.0


def _error_lines(block: dict[str, Any]) -> list[str]:
    """Failed requests, and measurements where the load generator itself was the bottleneck."""
    lines = []
    for side in ("direct", "switchyard"):
        for name, result in (block.get(side) or {}).items():
            if result and result.get("client_cpu_pct", 0) >= CLIENT_BUSY_WARN_PCT:
                lines.append(
                    f"  ! {side} {name}: load generator {result['client_cpu_pct']:.0f}% busy - the client "
                    "limits this figure (req/s is a lower bound)"
                )
    for side in ("direct", "switchyard"):
        for name, result in (block.get(side) or {}).items():
            if result and result.get("errors"):
                lines.append(
                    f"  ! {side} {name}: {result['errors']} errors, e.g. {result['error_samples'][:2]}"
                )
    return lines


def mode_section(block: dict[str, Any], high_c: int) -> str:
    """The text block of one mode."""
    mode = block["mode"]
    lines = [f"=== {mode} " + "=" * (70 - len(mode))]
    if block.get("error"):
        lines.append(f"  ERROR: {block['error']}")
    checks = block.get("checks", [])
    if block.get("switchyard"):
        lines += _latency_rows(mode, block, checks, high_c)
        lines += _cpu_lines(block, high_c)
    lines += _memory_lines(mode, block.get("memory"), checks)
    lines += _error_lines(block)
    return "\n".join(lines)


def summary_table(blocks: list[dict[str, Any]], high_c: int) -> str:
    """One line per mode, then every target with its verdict."""
    widths = (14, 9, 9, 9, 9, 9, 9, 9, 9, 9)
    head = ["mode", "+p50 c1", "+p99 c1", f"+p50 c{high_c}", f"+p99 c{high_c}", "thr/dir"]
    head += ["+TTFT50", "+TTFT99", "RSS max", "growth"]
    lines = ["=== summary (ms added vs direct; RSS in MB) ===", _row(head, widths)]
    for block in blocks:
        a, m = block.get("added") or {}, (block.get("memory") or {}).get("figures") or {}
        ratio = a.get("throughput_ratio")
        cells = [
            block["mode"],
            _num(a.get("c1_p50_ms"), sign=True),
            _num(a.get("c1_p99_ms"), sign=True),
            _num(a.get("cN_p50_ms"), sign=True),
            _num(a.get("cN_p99_ms"), sign=True),
            "-" if ratio is None else f"{ratio:.0%}",
            _num(a.get("ttft_p50_ms"), sign=True),
            _num(a.get("ttft_p99_ms"), sign=True),
            _num(m.get("rss_max_mb"), 1),
            _num(m.get("growth_mb"), 1, sign=True),
        ]
        lines.append(_row(cells, widths))
    lines += ["", "=== targets ==="]
    for block in blocks:
        for check in block.get("checks", []):
            value = check["value"]
            shown = (
                "-"
                if value is None
                else (f"{value:.0%}" if check["figure"] == "throughput_ratio" else f"{value:.2f}")
            )
            note = f"  ({check['note']})" if check["note"] else ""
            lines.append(
                f"  {_verdict(check['ok']):<5} {block['mode']:<14} {check['target']:<28} {shown:>8}  "
                f"target {check['limit']}{note}"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- --governance output


_GOV_WIDTHS = (26, 10, 10, 9, 18)


def _gov_rows(block: dict[str, Any], high_c: int) -> list[str]:
    without, with_ = block["without"], block["with"]
    added, checks = block["added"], block.get("checks", [])
    lines = [_row(["", "without", "with", "added", "target"], _GOV_WIDTHS)]
    for name, key, label in (("unary_c1", "c1", "unary c=1"), ("unary_cN", "cN", f"unary c={high_c}")):
        for q in ("p50", "p99"):
            cells = [
                f"{label:<13}{q} ms",
                _num(_lat(without.get(name), "latency_ms", q)),
                _num(_lat(with_.get(name), "latency_ms", q)),
                _num(added.get(f"{key}_{q}_ms"), sign=True),
                _target_cell(block["mode"], f"{key}_{q}_ms", checks),
            ]
            lines.append(_row(cells, _GOV_WIDTHS))
    ratio = added.get("throughput_ratio")
    cells = [
        f"{f'unary c={high_c}':<13}req/s",
        _num((without.get("unary_cN") or {}).get("rps"), 0),
        _num((with_.get("unary_cN") or {}).get("rps"), 0),
        "-" if ratio is None else f"{ratio:.0%}",
        "",
    ]
    lines.append(_row(cells, _GOV_WIDTHS))
    for q in ("p50", "p99"):
        cells = [
            f"{'stream c=1':<13}TTFT {q}",
            _num(_lat(without.get("stream_c1"), "ttft_ms", q)),
            _num(_lat(with_.get("stream_c1"), "ttft_ms", q)),
            _num(added.get(f"ttft_{q}_ms"), sign=True),
            _target_cell(block["mode"], f"ttft_{q}_ms", checks),
        ]
        lines.append(_row(cells, _GOV_WIDTHS))
    for name, key, label in (
        ("unary_c1", "c1", "unary c=1"),
        ("unary_cN", "cN", f"unary c={high_c}"),
        ("stream_c1", "stream", "stream c=1"),
    ):
        cells = [
            f"{label:<13}CPU us/req",
            _num(_switchyard_cpu(without.get(name)), 0),
            _num(_switchyard_cpu(with_.get(name)), 0),
            _num(added.get(f"cpu_us_{key}"), 0, sign=True),
            "",
        ]
        lines.append(_row(cells, _GOV_WIDTHS))
    return lines


def _gov_notes(block: dict[str, Any]) -> list[str]:
    added, lines = block["added"], []
    for key, label in (("c1_p50", "unary c=1 p50"), ("ttft_p50", "TTFT p50")):
        rounds = [v for v in added.get(f"rounds_{key}_ms", []) if v is not None]
        if rounds:
            lines.append(
                f"  added {label} per round: {'  '.join(f'{v:+.3f}' for v in rounds)} ms"
                f"  (pooled {_num(added.get(f'{key}_ms'), 3, sign=True)} ms)"
            )
    state = block.get("governed_state") or {}
    probe = block.get("probe") or {}
    if probe:
        lines.append(
            f"  governed stack: no credential -> HTTP {probe.get('without_credential')}, "
            f"virtual key -> HTTP {probe.get('with_key')}"
        )
    if state:
        lines.append(
            f"  governed stack after the run: {state.get('request_logs_written', '?')} request-log entries "
            f"written ({state.get('request_logs_dropped', '?')} dropped, "
            f"{state.get('request_log_write_errors', '?')} write errors), key budget spent "
            f"{state.get('key_spent_usd', 0.0):.6f} USD (reserved {state.get('key_reserved_usd', 0.0):.6f}), "
            f"{state.get('unpriced_requests', '?')} unpriced requests"
        )
    for warning in block.get("warnings", []):
        lines.append(f"  ! {warning}")
    for variant in ("without", "with"):
        for name, result in (block.get(variant) or {}).items():
            if result and result.get("errors"):
                lines.append(
                    f"  ! {variant} {name}: {result['errors']} errors, e.g. {result['error_samples'][:2]}"
                )
            if result and result.get("client_cpu_pct", 0) >= CLIENT_BUSY_WARN_PCT:
                lines.append(
                    f"  ! {variant} {name}: load generator {result['client_cpu_pct']:.0f}% busy "
                    "(req/s is a lower bound)"
                )
    return lines


def governance_section(block: dict[str, Any], high_c: int) -> str:
    """The text block of one mode's governance comparison."""
    mode = block["mode"]
    title = f"=== governance: {mode}, without vs with (auth, budget, rate limit, request log on SQLite) "
    lines = [title + "=" * max(3, 100 - len(title))]
    if block.get("error"):
        lines.append(f"  ERROR: {block['error']}")
    if block.get("with") and block.get("without"):
        lines.append(
            f"  {block['rounds']} rounds of {block['requests_per_round']} requests per figure and variant, "
            "order alternated; percentiles over all rounds' samples"
        )
        lines += _gov_rows(block, high_c)
    lines += _gov_notes(block)
    for check in block.get("checks", []):
        shown = "-" if check["value"] is None else f"{check['value']:+.3f} ms"
        lines.append(
            f"  {_verdict(check['ok']):<5} {check['target']:<34} {shown:>10}  target {check['limit']}"
        )
    return "\n".join(lines)
