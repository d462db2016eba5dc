"""The streams being served, so that a shutdown can end them with an answer.

When the shutdown grace runs out, a stream still open gets one error (``503
server_shutting_down``: an SSE error event over REST, UNAVAILABLE over gRPC) instead of being
cut mid-body. The service tracks its streams here (the engine), and so does the gateway (its
SSE responses): in ``switchyard serve`` the service ends its streams first and the gateway
passes the answer on; a gateway alone ends its own.

A stream is tracked under a key its owner chooses, with the task reading it now (the reading
task can change: the gateway reads the first chunk in the request's task, the rest in the
response's), and is ended by cancelling that task; the owner's ``CancelledError`` handler asks
:meth:`OpenStreams.ended_by_shutdown` whether to answer instead of giving up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger("switchyard")

SHUTTING_DOWN_TYPE = "server_shutting_down"
SHUTTING_DOWN_MESSAGE = "the server is shutting down and its grace period for open streams has ended; retry"
# How long streams ended at shutdown get to send their error before they are cut.
STREAM_END_S = 1.0


class OpenStreams:
    def __init__(self) -> None:
        self._tasks: dict[object, asyncio.Task[object] | None] = {}
        self._ended: set[object] = set()
        self._none_open = asyncio.Event()
        self._none_open.set()

    def track(self, key: object) -> None:
        """Start tracking ``key``, or note that another task reads it now."""
        self._tasks[key] = asyncio.current_task()
        self._none_open.clear()

    def untrack(self, key: object) -> None:
        self._tasks.pop(key, None)
        self._ended.discard(key)
        if not self._tasks:
            self._none_open.set()

    def was_ended(self, key: object) -> bool:
        """Has :meth:`end_all` ended ``key``'s stream (whatever the cancel reached first)?"""
        return key in self._ended

    def ended_by_shutdown(self, key: object) -> bool:
        """In a ``CancelledError`` handler: was the cancel :meth:`end_all`'s? If so it is undone
        (the task goes on, to send its answer) and the caller answers with the 503."""
        if key not in self._ended:
            return False
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True

    def end_all(self) -> int:
        """Cancel the task of every stream not ended yet; return how many streams are open."""
        for key, task in list(self._tasks.items()):
            if task is not None and key not in self._ended:
                self._ended.add(key)
                task.cancel()
        return len(self._tasks)

    async def end_after(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for the streams to finish, then end the rest with the 503."""
        await self._closed(grace_s)
        if self._tasks:
            ended = self.end_all()
            log.warning(
                "shutdown grace over: ending %d open stream(s) with 503 %s", ended, SHUTTING_DOWN_TYPE
            )
            await self._closed(STREAM_END_S)

    async def _closed(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._none_open.wait()

    def __len__(self) -> int:
        return len(self._tasks)
