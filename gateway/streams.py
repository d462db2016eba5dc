"""The SSE streams the gateway is sending, so a shutdown can end them with an answer.

When the shutdown grace runs out, a stream still open gets one SSE error event
(``503 server_shutting_down``) instead of being cut mid-body. In ``switchyard serve`` the
service ends its streams first (the caller sees the same event, passed through); this is
what ends them when the gateway runs alone, or when the service has not.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class OpenStreams:
    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[Any], bool] = {}  # task -> ended by us
        self._none_open = asyncio.Event()
        self._none_open.set()

    def add(self) -> asyncio.Task[Any] | None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks[task] = False
            self._none_open.clear()
        return task

    def discard(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self._tasks.pop(task, None)
        if not self._tasks:
            self._none_open.set()

    def ended_by_shutdown(self, task: asyncio.Task[Any] | None) -> bool:
        """Was ``task`` cancelled by :meth:`end_all` (rather than by its client leaving)?"""
        return task is not None and self._tasks.get(task, False)

    def end_all(self) -> int:
        for task, ended in list(self._tasks.items()):
            if not ended:
                self._tasks[task] = True
                task.cancel()
        return len(self._tasks)

    async def closed(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._none_open.wait()

    def __len__(self) -> int:
        return len(self._tasks)
