"""``python -m bench.traced serve|service|gateway --config ...``: Switchyard, probed for memory.

The soak run (``bench/run.py --soak --tracemalloc`` or ``--malloc-trim``) starts Switchyard's
processes through this module instead of ``python -m cli``, so the product carries no
probing code. With ``$SY_BENCH_TRACEMALLOC_FRAMES`` > 0, tracing starts before Switchyard imports
anything. Each SIGUSR1 then writes, into ``$SY_BENCH_TRACEMALLOC_DIR/$SY_PROCESS_ROLE`` (the role:
serve, service or gateway):

- ``NN.snap``, when tracing: a :class:`tracemalloc.Snapshot` (``NN`` counts the signals, from 00);
- ``NN.json``: figures that tell live Python objects from allocator effects (written last, so the
  bench can wait for it): RSS, what tracemalloc traces, pymalloc's allocated blocks, objects the
  collector tracks, live asyncio tasks, and with ``$SY_BENCH_MALLOC_TRIM=1`` the RSS after glibc's
  ``malloc_trim(0)`` hands free heap back (the gap is free memory malloc kept, not a leak).

``$SY_BENCH_GRPC_OPTIONS`` (``name=int,name=int``) adds gRPC channel/server options to Switchyard's
own (``switchyard.grpc_options``), to try one without editing the product.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import itertools
import json
import os
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Any

DIR_ENV, FRAMES_ENV, TRIM_ENV = (
    "SY_BENCH_TRACEMALLOC_DIR",
    "SY_BENCH_TRACEMALLOC_FRAMES",
    "SY_BENCH_MALLOC_TRIM",
)
GRPC_OPTIONS_ENV = "SY_BENCH_GRPC_OPTIONS"


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _malloc_trim() -> bool:
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        return bool(ctypes.CDLL(name).malloc_trim(0))
    except (OSError, AttributeError):  # not glibc
        return False


def _task_count() -> int | None:
    try:
        return len(asyncio.all_tasks(asyncio.get_running_loop()))
    except RuntimeError:  # the signal arrived outside the loop (start-up, shutdown)
        return None


def _figures() -> dict[str, Any]:
    figures: dict[str, Any] = {
        "time": time.time(),
        "rss_kb": _status_kb("VmRSS"),
        "rss_anon_kb": _status_kb("RssAnon"),
        "allocated_blocks": sys.getallocatedblocks(),
        "gc_objects": len(gc.get_objects()),
        "gc_frozen": gc.get_freeze_count(),
        "gc_count": gc.get_count(),
        "asyncio_tasks": _task_count(),
        "threads": len(os.listdir("/proc/self/task")),
    }
    if tracemalloc.is_tracing():
        current, peak = tracemalloc.get_traced_memory()
        figures["traced_kb"] = current // 1024
        figures["traced_peak_kb"] = peak // 1024
        figures["tracemalloc_overhead_kb"] = tracemalloc.get_tracemalloc_memory() // 1024
    if os.environ.get(TRIM_ENV) == "1":
        figures["malloc_trim_released"] = _malloc_trim()
        figures["rss_after_trim_kb"] = _status_kb("VmRSS")
    return figures


def _add_grpc_options(spec: str) -> None:
    """Wrap ``switchyard.grpc_options.grpc_options`` before the service and gateway import it."""
    import switchyard.grpc_options as module

    extra = [(name.strip(), int(value)) for name, value in (item.split("=", 1) for item in spec.split(","))]
    original = module.grpc_options
    module.grpc_options = lambda config: [*original(config), *extra]


def main() -> None:
    if os.environ.get(GRPC_OPTIONS_ENV):
        _add_grpc_options(os.environ[GRPC_OPTIONS_ENV])
    out_dir = Path(os.environ.get(DIR_ENV, "bench/results/traced")) / os.environ.get(
        "SY_PROCESS_ROLE", "switchyard"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = int(os.environ.get(FRAMES_ENV, "0"))
    if frames > 0:
        tracemalloc.start(frames)
    sequence = itertools.count()

    def dump(_signum: int, _frame: FrameType | None) -> None:
        # In the handler, not a thread: the main thread runs the event loop, so no request code
        # runs while the snapshot is taken and the counts are consistent with each other.
        n = next(sequence)
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(str(out_dir / f"{n:02d}.snap"))
        partial = out_dir / f"{n:02d}.json.tmp"
        partial.write_text(json.dumps(_figures()))
        partial.rename(out_dir / f"{n:02d}.json")

    signal.signal(signal.SIGUSR1, dump)
    from cli.main import main as switchyard_main

    switchyard_main(sys.argv[1:])


if __name__ == "__main__":
    main()
