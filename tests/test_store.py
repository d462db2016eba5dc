"""The store contract, run against both backends: SQLite (a temp file) and PostgreSQL.

PostgreSQL is the server at ``SWITCHYARD_TEST_PG`` (default: trust auth as
``postgres`` on 127.0.0.1:5432). The suite creates its own uniquely named databases
and drops them afterwards; when no server answers, the PostgreSQL cases skip.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import dataclasses
import os
import random
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from service.records import LogEntry, LogQuery, Team, UsageRow, VirtualKey
from service.store import AlreadyExists, Store, StoreError, open_store
from service.store.migrations import LATEST_VERSION, MIGRATIONS, Migration, migrate
from service.store.postgres import PostgresStore, to_numbered
from service.store.sql import (
    _LOG_ROWS_PER_STATEMENT,
    SqlStore,
    _statement_sizes,
    decode_cursor,
    encode_cursor,
)
from service.store.sqlite import SqliteStore
from switchyard.config import BudgetConfig, RateLimitConfig

PG_SERVER = os.environ.get("SWITCHYARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
BACKENDS = ["sqlite", "postgres"]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: float = 0.0) -> float:
    return calendar.timegm((year, month, day, hour, minute, 0, 0, 0, 0)) + second


# ---------------------------------------------------------------- fixtures


class PgServer:
    """Creates and drops throwaway databases on the test server."""

    def __init__(self, admin: asyncpg.Connection) -> None:
        self._admin = admin
        self._lock = asyncio.Lock()  # one asyncpg connection runs one command at a time

    async def create(self) -> str:
        name = f"switchyard_test_{uuid.uuid4().hex[:12]}"
        async with self._lock:
            await self._admin.execute(f'CREATE DATABASE "{name}"')
        return name

    async def drop(self, name: str) -> None:
        async with self._lock:
            await self._admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @asynccontextmanager
    async def database(self) -> AsyncIterator[str]:
        """A fresh empty database for one test; yields its URL."""
        name = await self.create()
        try:
            yield f"{PG_SERVER}/{name}"
        finally:
            await self.drop(name)


@pytest.fixture(scope="session")
async def pg_server() -> AsyncIterator[PgServer]:
    try:
        admin = await asyncpg.connect(f"{PG_SERVER}/postgres", timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_SERVER} (set SWITCHYARD_TEST_PG): {exc}")
    try:
        yield PgServer(admin)
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def pg_url(pg_server: PgServer) -> AsyncIterator[str]:
    """One database for the whole session; tests empty its tables before they run."""
    async with pg_server.database() as url:
        yield url


@pytest.fixture
async def fresh_pg_url(pg_server: PgServer) -> AsyncIterator[str]:
    async with pg_server.database() as url:
        yield url


# The two below are plain functions: pytest-asyncio cannot set up an async fixture
# requested through getfixturevalue from inside another async fixture.
@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL whose database the suite may reuse (tables may hold an earlier test's rows)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(params=BACKENDS)
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to an empty database (no schema yet)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/fresh.db"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An opened store with no keys, teams or log entries."""
    opened = open_store(store_url)
    await opened.open()
    if isinstance(opened, PostgresStore):
        conn = await asyncpg.connect(store_url)
        try:
            await conn.execute("TRUNCATE virtual_keys, teams, request_logs")
        finally:
            await conn.close()
    try:
        yield opened
    finally:
        await opened.aclose()


async def applied_versions(store: Store) -> list[tuple[int, str]]:
    assert isinstance(store, SqlStore)
    rows = await store._db.fetch("SELECT version, description FROM schema_migrations ORDER BY version")
    return [(int(row[0]), row[1]) for row in rows]


def make_key(n: int, **changes: object) -> VirtualKey:
    key = VirtualKey(id=f"key-{n:03d}", name=f"key {n}", key_hash=f"{n:064x}", key_prefix=f"sk-bf-{n:04d}")
    return key.replace(**changes)


def full_key() -> VirtualKey:
    """Every field set to something other than its default."""
    return VirtualKey(
        id="key-full",
        name="Full key",
        key_hash="ab" * 32,
        key_prefix="sk-bf-AbCd",
        description="every field set, incl. unicode: héllo ✓",
        active=False,
        expires_at=1_800_000_000.25,
        allowed_models=("azure/gpt-4o", "openai/gpt-4o-*", "*-mini"),
        allowed_providers=("azure", "openai"),
        budget=BudgetConfig(max_usd=12.5, reset="1w", calendar_aligned=False),
        rate_limit=RateLimitConfig(requests_per_minute=60, tokens_per_minute=None),
        team_id="team-a",
        created_at=1_700_000_000.123456,
        updated_at=1_700_000_100.654321,
        revoked_at=1_700_000_200.5,
    )


def entry(n: int, ts: float, **changes: object) -> LogEntry:
    values: dict[str, object] = {
        "id": f"log-{n:04d}",
        "ts": ts,
        "request_type": "chat_completion",
        "model_requested": "gpt-4o",
        "status": 200,
        "latency_ms": 100 + n,
        "key_id": "key-a",
        "team_id": None,
        "provider": "azure",
        "model_served": "gpt-4o-2024-08-06",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cost": 0.001,
    }
    values.update(changes)
    return LogEntry(**values)  # type: ignore[arg-type]


async def all_pages(store: Store, query: LogQuery) -> tuple[list[LogEntry], int]:
    """Every entry the query pages through, and the number of pages it took."""
    entries: list[LogEntry] = []
    pages = 0
    cursor = None
    while True:
        page = await store.query_logs(dataclasses.replace(query, cursor=cursor))
        pages += 1
        entries.extend(page.entries)
        if page.next_cursor is None:
            return entries, pages
        assert pages < 1000, "paging does not terminate"
        cursor = page.next_cursor


def newest_first(entries: list[LogEntry]) -> list[LogEntry]:
    return sorted(entries, key=lambda e: (e.ts, e.id), reverse=True)


# ---------------------------------------------------------------- migrations


async def test_migrations_recorded_and_idempotent(store_url: str) -> None:
    expected = [(m.version, m.description) for m in MIGRATIONS]
    for _ in range(2):
        store = open_store(store_url)
        await store.open()
        await store.open()  # a second open() on an open store is a no-op
        try:
            assert await applied_versions(store) == expected
        finally:
            await store.aclose()
    assert expected[-1][0] == LATEST_VERSION


async def test_concurrent_migrations_apply_each_version_once(fresh_url: str) -> None:
    stores = [open_store(fresh_url) for _ in range(4)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        assert await applied_versions(stores[0]) == [(m.version, m.description) for m in MIGRATIONS]
        await stores[1].insert_key(make_key(1))
        assert await stores[2].get_key("key-001") == make_key(1)
    finally:
        await asyncio.gather(*(s.aclose() for s in stores))


async def test_new_migration_applies_once_and_newer_schema_is_refused(fresh_url: str) -> None:
    store = open_store(fresh_url)
    await store.open()
    assert isinstance(store, SqlStore)
    extra = (*MIGRATIONS, Migration(LATEST_VERSION + 1, "a test table", ("CREATE TABLE extra (x INTEGER)",)))
    try:
        assert await migrate(store._db, extra) == [LATEST_VERSION + 1]
        assert await migrate(store._db, extra) == []
        assert [tuple(r) for r in await store._db.fetch("SELECT COUNT(*) FROM extra")] == [(0,)]
    finally:
        await store.aclose()
    newer = open_store(fresh_url)
    with pytest.raises(StoreError, match=f"schema is at version {LATEST_VERSION + 1}"):
        await newer.open()
    await newer.aclose()


# ---------------------------------------------------------------- virtual keys


async def test_key_round_trips_every_field(store: Store) -> None:
    full, minimal = full_key(), make_key(1)
    await store.insert_key(full)
    await store.insert_key(minimal)
    assert await store.get_key("key-full") == full
    assert await store.get_key_by_hash("ab" * 32) == full
    got = await store.get_key("key-001")
    assert got == minimal
    assert got is not None
    assert (got.budget, got.rate_limit, got.expires_at, got.revoked_at, got.team_id) == (None,) * 5
    assert (got.allowed_models, got.allowed_providers, got.active) == ((), (), True)
    assert await store.get_key("nope") is None
    assert await store.get_key_by_hash("00" * 32) is None


async def test_insert_key_duplicate_id_or_hash(store: Store) -> None:
    await store.insert_key(make_key(1))
    with pytest.raises(AlreadyExists):
        await store.insert_key(make_key(1, key_hash="ff" * 32))
    with pytest.raises(AlreadyExists):
        await store.insert_key(make_key(2, key_hash=make_key(1).key_hash))
    assert await store.list_keys() == [make_key(1)]


async def test_update_key_replaces_every_field(store: Store) -> None:
    await store.insert_key(make_key(1))
    await store.insert_key(make_key(2))
    updated = full_key().replace(id="key-001")
    await store.update_key(updated)
    assert await store.get_key("key-001") == updated
    assert await store.get_key_by_hash(make_key(1).key_hash) is None
    cleared = make_key(1, name="renamed")  # back to None/empty values
    await store.update_key(cleared)
    assert await store.get_key("key-001") == cleared
    with pytest.raises(KeyError):
        await store.update_key(make_key(3))
    with pytest.raises(AlreadyExists):
        await store.update_key(make_key(1, key_hash=make_key(2).key_hash))
    assert await store.get_key("key-003") is None


async def test_list_keys_pages_in_id_order(store: Store) -> None:
    numbers = list(range(25))
    random.Random(7).shuffle(numbers)
    for n in numbers:
        await store.insert_key(make_key(n))
    expected = [make_key(n) for n in range(25)]
    assert await store.list_keys() == expected
    pages: list[list[VirtualKey]] = []
    after: str | None = None
    while page := await store.list_keys(limit=10, after_id=after):
        pages.append(page)
        after = page[-1].id
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [k for p in pages for k in p] == expected
    assert await store.list_keys(limit=3, after_id="key-020") == expected[21:24]
    assert await store.list_keys(limit=0) == expected[:1]  # clamped to 1..1000
    assert await store.list_keys(limit=5000) == expected


async def test_keys_updated_since(store: Store) -> None:
    for n, updated in [(1, 100.0), (2, 300.0), (3, 200.0), (4, 200.0)]:
        await store.insert_key(make_key(n, updated_at=updated))
    got = await store.keys_updated_since(200.0)
    assert [(k.id, k.updated_at) for k in got] == [("key-003", 200.0), ("key-004", 200.0), ("key-002", 300.0)]
    assert await store.keys_updated_since(300.5) == []
    await store.update_key(make_key(1, updated_at=400.0))
    assert [k.id for k in await store.keys_updated_since(300.5)] == ["key-001"]


# ---------------------------------------------------------------- teams


async def test_teams_upsert_get_list(store: Store) -> None:
    assert await store.list_teams() == []
    assert await store.get_team("team-b") is None
    b = Team(id="team-b", name="B", budget=None, created_at=10.0, updated_at=10.0)
    a = Team(id="team-a", name="A", budget=BudgetConfig(max_usd=100.0), created_at=5.5, updated_at=6.5)
    await store.upsert_team(b)
    await store.upsert_team(a)
    assert await store.get_team("team-a") == a
    assert await store.list_teams() == [a, b]
    changed = Team(
        id="team-b",
        name="B renamed",
        budget=BudgetConfig(max_usd=1.25, reset="1d", calendar_aligned=False),
        created_at=999.0,
        updated_at=20.0,
    )
    await store.upsert_team(changed)
    # An existing team keeps its creation time (non-aligned budget windows start there).
    assert await store.get_team("team-b") == Team(
        id="team-b", name="B renamed", budget=changed.budget, created_at=10.0, updated_at=20.0
    )
    assert len(await store.list_teams()) == 2


# ---------------------------------------------------------------- request log


def sample_log() -> list[LogEntry]:
    """37 entries over 3 keys, 2 models and 3 statuses, with many equal timestamps."""
    entries = []
    for n in range(37):
        entries.append(
            entry(
                n,
                1_700_000_000.0 + (n // 4) * 0.5,  # groups of four share a ts: the id breaks ties
                key_id=(None, "key-a", "key-b")[n % 3],
                team_id="team-x" if n % 2 else None,
                model_requested=("gpt-4o", "gpt-4o-mini")[n % 2],
                model_served="" if n % 5 == 0 else ("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18")[n % 2],
                status=(200, 429, 503)[n % 3 if n % 7 else 0],
                cost=None if n % 4 == 0 else n / 1000,
            )
        )
    return entries


async def test_log_round_trips_every_field(store: Store) -> None:
    rich = entry(
        1,
        1_700_000_000.123456,
        request_type="chat_completion_stream",
        team_id="team-x",
        error_type="rate_limited",
        attempts_json='[{"provider": "openai", "status": 429}]',
        prompt_tokens=2**40,
        cost=0.000123456789,
        content_json='{"messages": [{"role": "user", "content": "hi ✓"}]}',
    )
    bare = LogEntry(
        id="log-bare", ts=5.0, request_type="chat_completion", model_requested="m", status=502, latency_ms=0
    )
    await store.insert_logs([rich, bare])
    await store.insert_logs([])
    page = await store.query_logs(LogQuery())
    assert page.entries == (rich, bare)
    assert page.next_cursor is None


async def test_insert_logs_is_one_transaction(store: Store) -> None:
    await store.insert_logs([entry(1, 10.0)])
    with pytest.raises(AlreadyExists):
        await store.insert_logs([entry(2, 11.0), entry(1, 12.0)])
    assert [e.id for e in (await store.query_logs(LogQuery())).entries] == ["log-0001"]


async def test_a_batch_larger_than_one_statement_is_written_whole(store: Store) -> None:
    """insert_logs writes multi-row statements of at most 500 rows: 1203 entries take three."""
    batch = [entry(n, 1_000_000.0 + n) for n in range(1203)]
    await store.insert_logs(batch)
    page = await store.query_logs(LogQuery(limit=1000))
    rest = await store.query_logs(LogQuery(limit=1000, cursor=page.next_cursor))
    assert [e.id for e in page.entries + rest.entries] == [e.id for e in reversed(batch)]
    assert rest.next_cursor is None
    assert page.entries[-1] == batch[203]  # every field survives the flattened parameters


async def test_other_constraint_failures_are_store_errors(store: Store) -> None:
    with pytest.raises(StoreError) as info:
        await store.insert_logs([entry(1, 1.0, model_requested=None)])
    assert not isinstance(info.value, AlreadyExists)
    assert isinstance(info.value.__cause__, Exception)


async def test_query_logs_filters(store: Store) -> None:
    entries = sample_log()
    await store.insert_logs(entries)

    async def ids(**filters: object) -> list[str]:
        got, _ = await all_pages(store, LogQuery(limit=7, **filters))  # type: ignore[arg-type]
        return [e.id for e in got]

    def expect(keep: Callable[[LogEntry], bool]) -> list[str]:
        return [e.id for e in newest_first([e for e in entries if keep(e)])]

    assert await ids() == expect(lambda e: True)
    assert await ids(key_id="key-b") == expect(lambda e: e.key_id == "key-b")
    # `model` matches the requested or the served model.
    assert await ids(model="gpt-4o-mini") == expect(lambda e: e.model_requested == "gpt-4o-mini")
    assert await ids(model="gpt-4o-2024-08-06") == expect(lambda e: e.model_served == "gpt-4o-2024-08-06")
    assert await ids(status=429) == expect(lambda e: e.status == 429)
    start, end = 1_700_000_001.0, 1_700_000_003.0
    assert await ids(start=start) == expect(lambda e: e.ts >= start)
    assert await ids(end=end) == expect(lambda e: e.ts < end)
    assert await ids(start=start, end=end) == expect(lambda e: start <= e.ts < end)
    assert await ids(key_id="key-a", model="gpt-4o", status=200, start=start, end=end) == expect(
        lambda e: (
            e.key_id == "key-a"
            and "gpt-4o" in (e.model_requested, e.model_served)
            and e.status == 200
            and start <= e.ts < end
        )
    )
    assert await ids(key_id="nobody") == []
    # Sanity: the boundaries above really cut through the data.
    assert 0 < len(expect(lambda e: start <= e.ts < end)) < len(entries)
    assert 0 < len(expect(lambda e: e.status == 429)) < len(entries)


@pytest.mark.parametrize("limit", [1, 4, 5, 10, 37, 100])
async def test_query_logs_pages_without_loss_or_duplicates(store: Store, limit: int) -> None:
    entries = sample_log()
    await store.insert_logs(entries[::2])
    await store.insert_logs(entries[1::2])
    got, pages = await all_pages(store, LogQuery(limit=limit))
    assert got == newest_first(entries)
    # next_cursor is None exactly when no rows are left, even when the last page is full.
    assert pages == max(1, -(-len(entries) // limit))


async def test_query_logs_limit_and_cursor(store: Store) -> None:
    await store.insert_logs([entry(n, float(n)) for n in range(3)])
    first = await store.query_logs(LogQuery(limit=0))  # clamped to 1
    assert [e.id for e in first.entries] == ["log-0002"]
    assert first.next_cursor is not None
    assert urllib.parse.quote(first.next_cursor, safe="") == first.next_cursor
    assert decode_cursor(first.next_cursor) == (2.0, "log-0002")
    assert decode_cursor(encode_cursor(1_700_000_000.123456, "x")) == (1_700_000_000.123456, "x")
    rest = await store.query_logs(LogQuery(limit=10, cursor=first.next_cursor))
    assert [e.id for e in rest.entries] == ["log-0001", "log-0000"]
    assert rest.next_cursor is None
    for bad in ("not a cursor!", "e30", encode_cursor(1.0, "x")[:-3]):
        with pytest.raises(ValueError, match="invalid cursor"):
            await store.query_logs(LogQuery(cursor=bad))


async def test_usage_summary_groups_by_key_model_and_utc_day(store: Store) -> None:
    midnight = utc(2024, 3, 10)
    await store.insert_logs(
        [
            entry(1, midnight - 0.5, key_id="key-b", cost=0.5, prompt_tokens=1, completion_tokens=2),
            entry(2, midnight - 3600, key_id="key-b", cost=None, prompt_tokens=3, completion_tokens=4),
            entry(3, midnight, key_id="key-b", cost=0.25),
            entry(4, midnight + 86_399.9, key_id="key-a", cost=0.125),
            entry(5, midnight + 10, key_id=None, model_served="", model_requested="asked", cost=None),
            entry(6, midnight + 20, key_id="key-a", model_served="", model_requested="asked", cost=1.0),
            entry(7, midnight + 86_400, key_id="key-a", cost=2.0),
            entry(8, midnight + 30, key_id=None, model_served="", model_requested="asked", cost=0.75),
            entry(9, midnight + 40, key_id="key-c", cost=None),  # a group with no priced request
        ]
    )
    served = "gpt-4o-2024-08-06"
    expected = [
        UsageRow("key-b", served, "2024-03-09", 2, 4, 6, 30, 0.5),  # total_tokens summed as stored
        UsageRow("", "asked", "2024-03-10", 2, 20, 10, 30, 0.75),
        UsageRow("key-a", "asked", "2024-03-10", 1, 10, 5, 15, 1.0),
        UsageRow("key-a", served, "2024-03-10", 1, 10, 5, 15, 0.125),
        UsageRow("key-b", served, "2024-03-10", 1, 10, 5, 15, 0.25),
        UsageRow("key-c", served, "2024-03-10", 1, 10, 5, 15, 0.0),
        UsageRow("key-a", served, "2024-03-11", 1, 10, 5, 15, 2.0),
    ]
    assert await store.usage_summary() == expected
    assert await store.usage_summary(key_id="key-a") == [r for r in expected if r.key_id == "key-a"]
    assert await store.usage_summary(start=midnight, end=midnight + 86_400) == expected[1:6]
    assert await store.usage_summary(start=midnight + 86_400.5) == []
    assert await store.usage_summary(key_id="nobody") == []


async def test_spend_since(store: Store) -> None:
    await store.insert_logs(
        [
            entry(1, 100.0, key_id="key-a", team_id="team-x", cost=1.5),
            entry(2, 200.0, key_id="key-a", team_id="team-x", cost=None),
            entry(3, 300.0, key_id="key-a", team_id=None, cost=0.25),
            entry(4, 300.0, key_id="key-b", team_id="team-x", cost=4.0),
            entry(5, 50.0, key_id="key-b", team_id="team-x", cost=8.0),
        ]
    )
    assert await store.spend_since(key_id="key-a", since=0.0) == 1.75
    assert await store.spend_since(key_id="key-a", since=100.0) == 1.75  # ts >= since
    assert await store.spend_since(key_id="key-a", since=100.5) == 0.25
    assert await store.spend_since(key_id="key-a", since=150.0) == 0.25
    assert await store.spend_since(team_id="team-x", since=100.0) == 5.5
    assert await store.spend_since(team_id="team-x", since=0.0) == 13.5
    # Only unpriced requests, or none at all: 0, not None.
    assert await store.spend_since(key_id="key-a", since=200.0) == 0.25
    await store.insert_logs([entry(6, 500.0, key_id="key-c", cost=None)])
    assert await store.spend_since(key_id="key-c", since=0.0) == 0.0
    assert await store.spend_since(team_id="team-none", since=0.0) == 0.0
    with pytest.raises(ValueError, match="exactly one"):
        await store.spend_since(since=0.0)
    with pytest.raises(ValueError, match="exactly one"):
        await store.spend_since(key_id="key-a", team_id="team-x", since=0.0)


# ---------------------------------------------------------------- urls, backends, errors


def test_open_store_urls() -> None:
    memory = open_store("sqlite://:memory:")
    assert isinstance(memory, SqliteStore)
    assert memory.path == ":memory:"
    relative = open_store("sqlite:///data/switchyard.db")
    assert isinstance(relative, SqliteStore)
    assert relative.path == "data/switchyard.db"
    absolute = open_store("sqlite:////var/lib/switchyard.db")
    assert isinstance(absolute, SqliteStore)
    assert absolute.path == "/var/lib/switchyard.db"
    assert isinstance(open_store("postgresql://u@h/db"), PostgresStore)
    assert isinstance(open_store("postgres://u@h/db"), PostgresStore)
    assert "secret" not in repr(open_store("postgres://u:secret@h/db"))
    for bad in ("mysql://u@h/db", "sqlite://", "sqlite:///", "sqlite://relative.db", "switchyard.db", ""):
        with pytest.raises(ValueError, match=r"sqlite:///.*postgresql://"):
            open_store(bad)
    with pytest.raises(ValueError, match="unsupported store URL") as info:
        open_store("mysql://user:hunter2@h/db")
    assert "hunter2" not in str(info.value)


async def test_sqlite_creates_directory_and_uses_wal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///nested/dir/s.db")
    await store.open()
    try:
        assert (tmp_path / "nested" / "dir" / "s.db").is_file()
        assert isinstance(store, SqlStore)
        assert [tuple(r) for r in await store._db.fetch("PRAGMA journal_mode")] == [("wal",)]
        assert [tuple(r) for r in await store._db.fetch("PRAGMA synchronous")] == [(1,)]  # NORMAL
        assert [tuple(r) for r in await store._db.fetch("PRAGMA busy_timeout")] == [(5000,)]
    finally:
        await store.aclose()


async def test_sqlite_memory_store() -> None:
    store = open_store("sqlite://:memory:")
    await store.open()
    try:
        await store.insert_key(make_key(1))
        assert await store.get_key("key-001") == make_key(1)
    finally:
        await store.aclose()


async def test_sqlite_concurrent_writes_and_reads(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/c.db")
    await store.open()
    try:
        batches = [[entry(b * 10 + i, float(b * 10 + i)) for i in range(10)] for b in range(10)]
        await asyncio.gather(
            *(store.insert_logs(batch) for batch in batches),
            *(store.insert_key(make_key(n)) for n in range(10)),
            *(store.list_keys() for _ in range(10)),
        )
        got, _ = await all_pages(store, LogQuery(limit=1000))
        assert len(got) == 100
        assert len(await store.list_keys()) == 10
    finally:
        await store.aclose()


async def test_driver_errors_become_store_errors(tmp_path: Path) -> None:
    unreachable = PostgresStore("postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(StoreError):
        await unreachable.open()
    (tmp_path / "file").write_text("")
    blocked = SqliteStore(tmp_path / "file" / "s.db")  # the parent is a file
    with pytest.raises(StoreError):
        await blocked.open()
    closed = SqliteStore(tmp_path / "s.db")
    with pytest.raises(StoreError, match="not open"):
        await closed.get_key("x")
    await closed.open()
    await closed.aclose()
    await closed.aclose()  # closing twice is harmless
    with pytest.raises(StoreError, match="not open"):
        await closed.list_keys()


def test_placeholders_are_numbered_outside_literals() -> None:
    assert to_numbered("SELECT ? WHERE a = ? AND b = '?' AND \"c?\" = ?") == (
        "SELECT $1 WHERE a = $2 AND b = '?' AND \"c?\" = $3"
    )
    assert to_numbered("SELECT 1") == "SELECT 1"


async def test_sqlite_transaction_survives_cancellation(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/cancel.db")
    await store.open()
    try:
        for round_, delay in enumerate((0, 0, 0.0005, 0.001, 0.002)):
            batch = [entry(n, float(n), id=f"c-{round_}-{n}") for n in range(200)]
            task = asyncio.create_task(store.insert_logs(batch))
            await asyncio.sleep(delay)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            # The connection is usable afterwards, whether the batch landed or not.
            await store.insert_logs([entry(0, 1.0, id=f"after-{round_}")])
            got = await store.query_logs(LogQuery(limit=1000))
            batch_rows = [e for e in got.entries if e.id.startswith(f"c-{round_}-")]
            assert len(batch_rows) in (0, 200)  # all or nothing
    finally:
        await store.aclose()


def test_log_batches_are_written_with_few_distinct_statements() -> None:
    """Every batch length made a new multi-row INSERT text before, and SQLite's driver keeps 128 of
    them prepared per connection: ~30 MB of native memory over a long run (the soak in bench/).
    Power-of-two chunks keep the distinct texts to a handful, whatever the batch lengths."""
    seen: set[int] = set()
    for rows in range(0, 2000):
        sizes = _statement_sizes(rows)
        assert sum(sizes) == rows
        assert all(size & (size - 1) == 0 and size <= _LOG_ROWS_PER_STATEMENT for size in sizes)
        seen.update(sizes)
    assert len(seen) <= 9
