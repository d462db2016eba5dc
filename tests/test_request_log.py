"""The request-log writer (``service/request_log.py``): batching, back-pressure, shutdown, failures.

The writer is driven in the test's event loop against a small in-memory store that
records every ``insert_logs`` batch (and can be made slow or failing), and once against
the real SQLite store (``sqlite://:memory:``). The last test checks what the engine
submits for a request that fails unexpectedly. Waits
poll with deadlines; nothing sleeps longer than the behaviour under test needs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, cast

import pytest

from service.engine import ChatEngine
from service.plugins import GovernancePlugin
from service.records import LogEntry, LogQuery
from service.request_log import RequestLogWriter
from service.server import start_governance
from service.store import Store, StoreError, open_store
from switchyard.config import RequestLogConfig, parse_config
from switchyard.v1 import chat_pb2 as pb


def entry(n: int = 0, **changes: Any) -> LogEntry:
    fields: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "ts": 1_700_000_000.0 + n,
        "request_type": "chat_completion",
        "model_requested": f"model-{n}",
        "status": 200,
        "latency_ms": 1,
    }
    fields.update(changes)
    return LogEntry(**fields)


class FakeStore:
    """Records each ``insert_logs`` batch. ``delay_s`` makes the first ``slow_calls`` inserts slow
    (all of them when None); ``fail`` decides which calls fail, by call number (from 1)."""

    def __init__(
        self,
        *,
        delay_s: float = 0.0,
        slow_calls: int | None = None,
        fail: Callable[[int], BaseException | None] | None = None,
    ) -> None:
        self.batches: list[list[LogEntry]] = []
        self.calls = 0
        self.delay_s = delay_s
        self.slow_calls = slow_calls
        self.fail = fail
        self.insert_started = asyncio.Event()
        self.in_flight = 0

    async def insert_logs(self, entries: Sequence[LogEntry]) -> None:
        self.calls += 1
        call = self.calls
        self.in_flight += 1
        self.insert_started.set()
        try:
            if self.delay_s and (self.slow_calls is None or call <= self.slow_calls):
                await asyncio.sleep(self.delay_s)
            error = self.fail(call) if self.fail else None
            if error is not None:
                raise error
            self.batches.append(list(entries))
        finally:
            self.in_flight -= 1

    @property
    def entries(self) -> list[LogEntry]:
        return [e for batch in self.batches for e in batch]

    def as_store(self) -> Store:
        return cast(Store, self)


def writer_for(store: FakeStore | Store, **config: Any) -> RequestLogWriter:
    target = store.as_store() if isinstance(store, FakeStore) else store
    return RequestLogWriter(target, RequestLogConfig(**config))


async def until(condition: Callable[[], bool], within_s: float = 3.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def closed(writer: RequestLogWriter, within_s: float = 5.0) -> None:
    """``aclose`` the writer, failing (instead of hanging) if it takes longer than ``within_s``."""
    await asyncio.wait_for(writer.aclose(), within_s)


def no_writer_tasks() -> bool:
    return not [t for t in asyncio.all_tasks() if t.get_name() == "request-log-writer" and not t.done()]


# ---------------------------------------------------------------- batching


async def test_a_full_batch_is_written_at_once_and_the_rest_waits_for_the_interval() -> None:
    """``batch_size`` entries go out together without waiting for ``flush_interval_s``; a partial
    batch is not written until the interval passes (here: never, until ``aclose``)."""
    store = FakeStore()
    writer = writer_for(store, batch_size=3, flush_interval_s=60)
    writer.start()
    sent = [entry(i) for i in range(7)]
    for e in sent:
        writer.submit(e)
    await until(lambda: len(store.batches) == 2, what="two full batches")
    assert [len(b) for b in store.batches] == [3, 3]
    await asyncio.sleep(0.1)  # the 7th is held for the interval, not written on its own
    assert [len(b) for b in store.batches] == [3, 3]
    assert writer.written == 6
    await closed(writer)
    assert [len(b) for b in store.batches] == [3, 3, 1]
    assert [e.id for e in store.entries] == [e.id for e in sent]  # in submission order
    assert (writer.written, writer.dropped, writer.write_errors) == (7, 0, 0)
    assert no_writer_tasks()


async def test_a_partial_batch_is_written_when_the_interval_passes() -> None:
    """Fewer than ``batch_size`` entries are written as one batch once ``flush_interval_s`` has
    passed since the first of them, and not before."""
    store = FakeStore()
    interval = 0.2
    writer = writer_for(store, batch_size=1000, flush_interval_s=interval)
    writer.start()
    started = time.monotonic()
    writer.submit(entry(1))
    await asyncio.sleep(0.02)
    writer.submit(entry(2))
    await until(lambda: store.batches != [], what="the interval flush")
    elapsed = time.monotonic() - started
    assert [len(b) for b in store.batches] == [2]
    assert elapsed >= interval * 0.9, elapsed
    assert elapsed < interval + 1.0, elapsed
    # A later entry starts a new interval of its own.
    writer.submit(entry(3))
    await until(lambda: len(store.batches) == 2, what="the second interval flush")
    assert [len(b) for b in store.batches] == [2, 1]
    await closed(writer)


# ---------------------------------------------------------------- back-pressure


async def test_a_full_queue_drops_and_counts_and_submit_never_blocks() -> None:
    """With the queue full, ``submit`` returns at once (it is not a coroutine), drops the entry and
    counts it in ``dropped``; what was queued is still written."""
    store = FakeStore()
    writer = writer_for(store, queue_size=5, batch_size=100, flush_interval_s=0.01)
    assert not asyncio.iscoroutinefunction(writer.submit)
    kept = [entry(i) for i in range(5)]
    for e in kept:
        writer.submit(e)
    assert writer.queued == 5
    started = time.perf_counter()
    for i in range(10_000):
        writer.submit(entry(100 + i))
    assert time.perf_counter() - started < 1.0  # 10k refused submits: no waiting anywhere
    assert writer.dropped == 10_000
    assert writer.queued == 5
    writer.start()
    await until(lambda: writer.written == 5, what="the queued entries")
    assert [e.id for e in store.entries] == [e.id for e in kept]
    # Room again: new entries are accepted.
    writer.submit(entry(999))
    await until(lambda: writer.written == 6, what="an entry after the queue drained")
    assert writer.dropped == 10_000
    await closed(writer)


async def test_submit_does_not_wait_for_a_slow_store() -> None:
    """While a batch is stuck in a slow insert, submitting stays instant and fills the queue."""
    store = FakeStore(delay_s=0.3, slow_calls=1)
    writer = writer_for(store, queue_size=10, batch_size=2, flush_interval_s=0.01)
    writer.start()
    writer.submit(entry(0))
    writer.submit(entry(1))
    await asyncio.wait_for(store.insert_started.wait(), 2)
    started = time.perf_counter()
    for i in range(25):
        writer.submit(entry(10 + i))
    assert time.perf_counter() - started < 0.1
    assert writer.queued == 10 and writer.dropped == 15
    await closed(writer)
    assert writer.written == 12 and writer.dropped == 15


# ---------------------------------------------------------------- shutdown


async def test_aclose_writes_entries_the_writer_was_still_collecting() -> None:
    """The shutdown case: a long interval and a large batch, so the background task holds the
    entry it has taken while waiting for a batch to gather. ``aclose`` must write it and the rest,
    not drop them."""
    store = FakeStore()
    writer = writer_for(store, batch_size=10_000, flush_interval_s=60)
    writer.start()
    sent = [entry(i) for i in range(30)]
    for e in sent[:10]:
        writer.submit(e)
    await until(lambda: writer.queued == 9, what="the writer to take the first entry and wait for more")
    for e in sent[10:]:
        writer.submit(e)
        await asyncio.sleep(0)  # give the writer every chance to run
    assert store.batches == []  # nothing written yet: the interval is a minute away
    await closed(writer)
    assert sorted(e.id for e in store.entries) == sorted(e.id for e in sent)
    assert (writer.written, writer.dropped, writer.write_errors) == (30, 0, 0)
    assert no_writer_tasks()


async def test_aclose_finishes_the_batch_in_flight_and_writes_everything_queued() -> None:
    """``aclose`` called while a slow insert is running waits for that batch (it is not aborted
    half-way), then writes what was queued behind it."""
    store = FakeStore(delay_s=0.3, slow_calls=1)
    writer = writer_for(store, batch_size=2, flush_interval_s=60)
    writer.start()
    first = [entry(0), entry(1)]
    for e in first:
        writer.submit(e)
    await asyncio.wait_for(store.insert_started.wait(), 2)
    later = [entry(i) for i in range(2, 7)]
    for e in later:
        writer.submit(e)
    assert store.in_flight == 1 and store.batches == []
    await closed(writer)
    assert store.in_flight == 0
    assert [e.id for e in store.batches[0]] == [e.id for e in first]  # the in-flight batch, complete
    assert sorted(e.id for e in store.entries) == sorted(e.id for e in first + later)
    assert all(len(b) <= 2 for b in store.batches)
    assert (writer.written, writer.dropped) == (7, 0)


async def test_aclose_without_start_writes_the_queue_and_a_second_aclose_is_harmless() -> None:
    """A writer that never started (or whose loop stopped) still flushes on ``aclose``."""
    store = FakeStore()
    writer = writer_for(store, batch_size=4)
    for i in range(9):
        writer.submit(entry(i))
    await closed(writer)
    assert [len(b) for b in store.batches] == [4, 4, 1]
    await closed(writer)
    assert writer.written == 9 and len(store.entries) == 9


# ---------------------------------------------------------------- failures


def _fails_on(*calls: int, error: Callable[[], BaseException]) -> Callable[[int], BaseException | None]:
    def decide(call: int) -> BaseException | None:
        return error() if call in calls else None

    return decide


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(lambda: StoreError("database is down"), id="store-error"),
        pytest.param(lambda: ConnectionResetError("connection reset"), id="os-error"),
    ],
)
async def test_a_failing_batch_is_counted_and_the_writer_keeps_going(
    error: Callable[[], BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    """A batch the store refuses is counted (``write_errors`` += 1, ``dropped`` += its size) and
    logged; the background writer survives and writes the next batches."""
    store = FakeStore(fail=_fails_on(1, error=error))
    writer = writer_for(store, batch_size=3, flush_interval_s=0.01)
    writer.start()
    for i in range(3):
        writer.submit(entry(i))
    await until(lambda: writer.write_errors == 1, what="the failed batch")
    assert writer.dropped == 3 and writer.written == 0
    assert "could not be written" in caplog.text
    survivors = [entry(10 + i) for i in range(4)]
    for e in survivors:
        writer.submit(e)
    await until(lambda: writer.written == 4, what="the batches after the failure")
    assert [e.id for e in store.entries] == [e.id for e in survivors]
    assert writer._task is not None and not writer._task.done()
    await closed(writer)
    assert (writer.written, writer.dropped, writer.write_errors) == (4, 3, 1)


async def test_an_unexpected_store_exception_does_not_kill_the_writer() -> None:
    """Even an exception the store contract does not name (a driver bug, a RuntimeError) must not
    end the background task: otherwise every later entry would pile up and be dropped silently."""
    store = FakeStore(fail=_fails_on(1, error=lambda: RuntimeError("driver bug")))
    writer = writer_for(store, batch_size=2, flush_interval_s=0.01)
    writer.start()
    writer.submit(entry(0))
    writer.submit(entry(1))
    await until(lambda: store.calls >= 1, what="the first insert")
    later = [entry(2), entry(3)]
    for e in later:
        writer.submit(e)
    await until(lambda: writer.written == 2 or (writer._task is not None and writer._task.done()))
    assert writer._task is not None and not writer._task.done(), "the writer task died"
    assert [e.id for e in store.entries] == [e.id for e in later]
    assert writer.write_errors == 1 and writer.dropped == 2
    await closed(writer)


async def test_aclose_survives_a_failing_store() -> None:
    """On shutdown a store that fails every write is counted, and ``aclose`` still returns."""
    store = FakeStore(fail=lambda call: StoreError("gone"))
    writer = writer_for(store, batch_size=2, flush_interval_s=60)
    for i in range(5):
        writer.submit(entry(i))
    await closed(writer)
    assert (writer.written, writer.dropped, writer.write_errors) == (0, 5, 3)


# ---------------------------------------------------------------- the real store


async def test_with_the_real_sqlite_store_every_entry_lands_once() -> None:
    """End to end through ``SqliteStore`` (in memory): interval batches plus the shutdown flush
    store each entry exactly once, fields intact."""
    store = open_store("sqlite://:memory:")
    await store.open()
    try:
        writer = writer_for(store, batch_size=8, flush_interval_s=0.05)
        writer.start()
        sent = [
            entry(i, status=200 if i % 3 else 429, cost=0.01 * i, key_id=f"k{i % 2}", content_json=None)
            for i in range(20)
        ]
        for e in sent[:12]:
            writer.submit(e)
        await until(lambda: writer.written == 12, what="the first entries")
        for e in sent[12:]:
            writer.submit(e)
        await closed(writer)
        page = await store.query_logs(LogQuery(limit=100))
        assert sorted(e.id for e in page.entries) == sorted(e.id for e in sent)
        stored = {e.id: e for e in page.entries}
        for e in sent:
            assert stored[e.id] == e
        assert writer.written == 20 and writer.dropped == 0
    finally:
        await store.aclose()


# ---------------------------------------------------------------- what the engine submits


async def test_a_request_that_fails_unexpectedly_is_not_logged_as_a_success(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every request is logged with the status its caller got: an internal error is a 500, never 200."""
    config = parse_config(
        {
            "auth": {"required": False},
            "store": {"url": "sqlite://:memory:"},
            "providers": {
                "azure": {"kind": "azure", "base_url": "http://127.0.0.1:9", "keys": [{"value": "k"}]}
            },
        },
        env={},
    )
    governance = await start_governance(config)
    try:
        engine = ChatEngine(config, {}, [GovernancePlugin(governance)])

        def internal_error(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("a bug somewhere in the engine")

        monkeypatch.setattr(governance, "check_plan", internal_error)
        logged: list[LogEntry] = []
        monkeypatch.setattr(governance, "record", logged.append)
        request = pb.ChatCompletionRequest(
            deployment_id="x", messages=[pb.ChatMessage(role="user", text="hi")]
        )
        with pytest.raises(RuntimeError):
            await engine.create(request)
        assert len(logged) == 1
        assert logged[0].status == 500, logged[0]
    finally:
        await governance.aclose()
