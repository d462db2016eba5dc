"""The processes a benchmark runs: the fake upstream, Switchyard stacks, and py-spy.

Everything started here has a ``stop()``; ``bench/run.py`` calls it from ``finally`` blocks so
nothing outlives the benchmark, also on Ctrl-C or an error.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import Stack, base_config, free_port, start_stack

REPO_ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
OUR_PACKAGES = ("cli", "gateway", "service", "switchyard")

# Which Switchyard processes each mode runs (the order of Stack.processes).
PROCESS_ROLES = {"inprocess": ("serve",), "grpc-loopback": ("serve",), "split": ("service", "gateway")}


# --------------------------------------------------------------------------- /proc readings


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident set size of ``pid`` (VmRSS of /proc/PID/status, or another ``field``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by ``pid`` (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout_s:.0f}s")


# --------------------------------------------------------------------------- the fake upstream


@dataclass
class Upstream:
    """``python -m tests.fakes.upstream`` in its own process (its own GIL)."""

    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    def start(cls, log_path: Path, delay_ms: float = 0.0) -> Upstream:
        """Start the fake and wait until it accepts connections."""
        port = free_port()
        command = [sys.executable, "-m", "tests.fakes.upstream", "--port", str(port)]
        if delay_ms > 0:
            command += ["--delay-ms", str(delay_ms)]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        upstream = cls(proc, port)
        try:
            _wait_for_port(port, proc)
        except BaseException:
            upstream.stop()
            raise
        return upstream

    def stop(self) -> None:
        _stop_process(self.proc)


# --------------------------------------------------------------------------- Switchyard


def bench_config(upstream_url: str, http_port: int, grpc_port: int) -> dict[str, Any]:
    """The test config with quiet logging: no raw bodies, level warning."""
    config = copy.deepcopy(base_config(upstream_url, http_port, grpc_port))
    config["logging"] = {**config["logging"], "level": "warning", "raw_request": False}
    return config


@dataclass
class Switchyard:
    """A running Switchyard stack and the roles of its processes."""

    mode: str
    stack: Stack

    @classmethod
    def start(
        cls,
        mode: str,
        upstream_url: str,
        workdir: Path,
        edit: Callable[[dict[str, Any]], None] | None = None,
        env: dict[str, str] | None = None,
        launcher: str | None = None,
    ) -> Switchyard:
        """Start ``mode`` with the bench config; ``edit`` changes the config in place first, ``env``
        adds environment variables (the secrets the config names as ``${VAR}``). ``launcher``, a
        module run as ``python -m launcher serve ...`` instead of the command (``bench.traced``),
        tells each process its role by ``SY_PROCESS_ROLE`` (serve, service or gateway)."""
        config = bench_config(upstream_url, free_port(), free_port())
        if edit is not None:
            edit(config)
        if launcher is None:
            return cls(mode, start_stack(mode, config, workdir, env))
        # A traced process starts slower.
        return cls(mode, start_stack(mode, config, workdir, env, module=launcher, ready_timeout_s=60))

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    @property
    def pids(self) -> dict[str, int]:
        """Role ("serve", "service", "gateway") -> pid."""
        return {
            role: proc.pid for role, proc in zip(PROCESS_ROLES[self.mode], self.stack.processes, strict=True)
        }

    def rss(self) -> dict[str, float]:
        """RSS per role, in MiB."""
        return {role: rss_mb(pid) for role, pid in self.pids.items()}

    def check_alive(self) -> None:
        """Raise if a Switchyard process has exited."""
        for role, proc in zip(PROCESS_ROLES[self.mode], self.stack.processes, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"switchyard {role} exited with code {proc.returncode}:\n{self.stack.logs()[-3000:]}"
                )

    def stop(self) -> None:
        self.stack.stop()


# --------------------------------------------------------------------------- py-spy


def py_spy_path() -> str | None:
    """The py-spy executable, if installed (next to this Python or on PATH)."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start_py_spy(pid: int, seconds: float, out_path: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` of ``pid`` for ``seconds``, in the folded ("raw") format."""
    exe = py_spy_path()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    command = [exe, "record", "--format", "raw", "--full-filenames", "--rate", "200"]
    command += ["--duration", str(max(1, round(seconds)))]
    command += ["--pid", str(pid), "--output", str(out_path)]
    log = out_path.with_suffix(".log").open("wb")
    try:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


_STDLIB = re.compile(r"^.*/lib/python3\.\d+/")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame_label(frame: str) -> str:
    """``func (file:line)`` -> ``func (short/file.py)``: lines merged, paths shortened."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", str(REPO_ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = _STDLIB.sub("", path)
    return f"{match['func']} ({path})"


# Frames every stack passes through (interpreter start-up, the event loop, thread bootstrap):
# left out of the inclusive rankings, where they would always be on top.
_ENTRY_FRAMES = (
    "_run_module_as_main (",
    "_run_code (",
    "<module> (switchyard/__main__.py)",
    "main (cli/main.py)",
    "_run (cli/main.py)",
    "run (uvloop/",
    "Runner.run (",
    "Thread._bootstrap",
    "Thread.run (",
)


def _is_entry(label: str) -> bool:
    return label.startswith(_ENTRY_FRAMES)


def _is_ours(label: str) -> bool:
    return any(f"({package}/" in label for package in OUR_PACKAGES)


def summarize_profile(folded_path: Path, top: int = 15, focus: tuple[str, ...] = ()) -> dict[str, Any]:
    """Self and inclusive sample shares per function of a py-spy folded profile.

    ``top_attributed_ours_pct`` charges each sample to the innermost frame of our code on its
    stack, so a function's figure includes the library code it calls (hashlib, uuid, protobuf...)
    but not our functions it calls. ``attributed_pct`` is that for every sample (one without our
    code is charged to its leaf frame), complete, so two profiles can be subtracted. ``focus``
    (file prefixes such as ``service/governance.py``) adds the same rankings restricted to those
    files (``top_*_focus_pct``).
    """
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    attributed: Counter[str] = Counter()
    total = 0
    for line in folded_path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_label(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        for label in set(frames):
            inclusive[label] += count
        ours = [label for label in frames if _is_ours(label) and not _is_entry(label)]
        attributed[ours[-1] if ours else frames[-1]] += count

    def in_focus(label: str) -> bool:
        return any(f"({prefix}" in label for prefix in focus)

    def share(
        counter: Counter[str], only_ours: bool, skip_entry: bool = True, only_focus: bool = False
    ) -> list[list[Any]]:
        rows = [
            (k, v)
            for k, v in counter.most_common()
            if (not only_ours or _is_ours(k))
            and not (skip_entry and _is_entry(k))
            and (not only_focus or in_focus(k))
        ]
        return [[k, round(100 * v / total, 1)] for k, v in rows[:top]] if total else []

    summary: dict[str, Any] = {
        "samples": total,
        "top_self_pct": share(self_counts, only_ours=False, skip_entry=False),
        "top_inclusive_pct": share(inclusive, only_ours=False),
        "top_inclusive_ours_pct": share(inclusive, only_ours=True),
        "top_self_ours_pct": share(self_counts, only_ours=True),
        "top_attributed_ours_pct": share(attributed, only_ours=True),
        "attributed_pct": {k: round(100 * v / total, 2) for k, v in attributed.most_common()}
        if total
        else {},
    }
    if focus:
        summary["focus"] = list(focus)
        summary["top_inclusive_focus_pct"] = share(inclusive, only_ours=True, only_focus=True)
        summary["top_attributed_focus_pct"] = share(attributed, only_ours=True, only_focus=True)
    return summary
