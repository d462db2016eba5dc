"""The request log writer: entries go into a bounded queue and reach the store in batches.

The hot path only calls :meth:`RequestLogWriter.submit`, which never waits: when the
queue is full the entry is dropped and counted (``dropped``), because a slow database
must not slow every call down. A background task writes a batch when it has
``batch_size`` entries or ``flush_interval_s`` has passed. :meth:`aclose` (on
SIGTERM, after in-flight calls finished) writes everything still queued, so a
graceful stop loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from service.records import LogEntry
from service.store import Store, StoreError
from switchyard.config import RequestLogConfig

log = logging.getLogger("switchyard.service")


class RequestLogWriter:
    def __init__(self, store: Store, config: RequestLogConfig) -> None:
        self._store = store
        self._batch_size = max(1, config.batch_size)
        self._interval = config.flush_interval_s
        self._queue: asyncio.Queue[LogEntry] = asyncio.Queue(maxsize=max(1, config.queue_size))
        self._task: asyncio.Task[None] | None = None
        self._writing: asyncio.Task[None] | None = None
        # Entries the background task has taken off the queue but not yet handed to the store
        # (it waits up to flush_interval_s for a fuller batch): aclose writes them too.
        self._collecting: list[LogEntry] = []
        self._batch_ready = asyncio.Event()
        self.dropped = 0
        self.written = 0
        self.write_errors = 0

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        """Start the background writer (inside the running loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="request-log-writer")

    def submit(self, entry: LogEntry) -> None:
        try:
            self._queue.put_nowait(entry)
            if self._queue.qsize() >= self._batch_size - 1:
                self._batch_ready.set()
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("request log queue full: %d entries dropped so far", self.dropped)

    async def aclose(self) -> None:
        """Stop the background task, then write everything still queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._writing is not None:
            await self._writing  # the batch being written when we stopped the loop
            self._writing = None
        collected, self._collecting = self._collecting, []
        await self._write(collected)  # the batch being gathered when we stopped the loop
        while not self._queue.empty():
            await self._write(self._take(self._batch_size))

    async def _run(self) -> None:
        while True:
            # The batch lives on self while it is gathered: cancelling this task (aclose) must
            # not lose the entries already taken off the queue.
            self._collecting = [await self._queue.get()]
            if self._queue.qsize() < self._batch_size - 1:
                # One wake-up per batch, not per entry: submit() sets the event once a batch is
                # queued, and the interval bounds how long an entry waits for company.
                self._batch_ready.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval):
                        await self._batch_ready.wait()
            batch = self._collecting + self._take(self._batch_size - 1)
            self._collecting = []
            # Shielded: stopping the loop must not abort a batch half-way into the database.
            self._writing = asyncio.ensure_future(self._write(batch))
            await asyncio.shield(self._writing)
            self._writing = None

    def _take(self, limit: int) -> list[LogEntry]:
        batch: list[LogEntry] = []
        while len(batch) < limit:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    async def _write(self, batch: list[LogEntry]) -> None:
        if not batch:
            return
        try:
            await self._store.insert_logs(batch)
        except (StoreError, OSError) as exc:
            # Count and move on: retrying here would let a dead database fill the queue and memory.
            self.write_errors += 1
            self.dropped += len(batch)
            log.error("request log: a batch of %d entries could not be written: %s", len(batch), exc)
        except Exception:
            # Anything else (a driver bug) is counted the same way: if it ended the background
            # task, every later entry would silently pile up in the queue and be dropped.
            self.write_errors += 1
            self.dropped += len(batch)
            log.exception("request log: a batch of %d entries could not be written", len(batch))
        else:
            self.written += len(batch)
