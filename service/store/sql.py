"""``SqlStore``: every ``Store`` method, written once over a tiny connection adapter.

The SQL here uses ``?`` placeholders and only syntax SQLite and PostgreSQL share;
a backend (``sqlite.py``, ``postgres.py``) only connects, provides an ``Adapter``
(which rewrites placeholders if its driver needs to) and names its driver's
exceptions. Row <-> record conversion lives here and nowhere else.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from service.records import (
    LogEntry,
    LogPage,
    LogQuery,
    Team,
    UsageBreakdown,
    UsageBucket,
    UsageOverview,
    UsageRow,
    VirtualKey,
)
from service.store.base import Adapter, AlreadyExists, Row, StoreError
from service.store.migrations import migrate
from switchyard.config import BudgetConfig, RateLimitConfig

MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class DriverErrors:
    """The exceptions a backend's driver raises, so they are translated in one place."""

    errors: tuple[type[BaseException], ...]  # anything the driver (or the network under it) raises
    is_duplicate: Callable[[BaseException], bool]  # one of those, when a unique constraint failed


@contextmanager
def translate_errors(driver: DriverErrors) -> Iterator[None]:
    """Driver exceptions become ``AlreadyExists`` or ``StoreError``; callers never see driver types."""
    try:
        yield
    except driver.errors as exc:
        if driver.is_duplicate(exc):
            raise AlreadyExists(str(exc)) from exc
        raise StoreError(f"{type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------- rows <-> records

_KEY_COLUMNS = (
    "id, name, key_hash, key_prefix, description, active, expires_at, allowed_models, "
    "allowed_providers, budget, rate_limit, team_id, created_at, updated_at, revoked_at"
)
# Every column but the id, for update_key (same order as _key_params()[1:]).
_KEY_ASSIGNMENTS = ", ".join(f"{column.strip()} = ?" for column in _KEY_COLUMNS.split(",")[1:])
_TEAM_COLUMNS = "id, name, budget, created_at, updated_at"
_LOG_COLUMNS = (
    "id, ts, request_type, model_requested, status, latency_ms, key_id, team_id, provider, "
    "model_served, error_type, attempts_json, prompt_tokens, completion_tokens, total_tokens, "
    "cost, content_json, request_id, cache_hit_type, cache_id"
)

_T = TypeVar("_T")
# 21 values a row: 256 rows stay far below SQLite's 32,766 and PostgreSQL's 65,535 parameters.
# A power of two: see _statement_sizes.
_LOG_ROWS_PER_STATEMENT = 256


def _statement_sizes(rows: int) -> list[int]:
    """``rows`` as a sum of powers of two, largest first, none above ``_LOG_ROWS_PER_STATEMENT``.

    The drivers keep every distinct statement text prepared (sqlite3: the last 128 per
    connection; asyncpg: 100), and a prepared multi-row INSERT costs ~2 KB of native memory
    per row. With one statement per batch length, the 200 possible lengths filled that cache
    with ~30 MB that the process never gave back (a 200k-request soak, bench --soak). Power-of-two
    chunks leave at most 9 distinct texts (~2 MB) and at most 9 statements per batch."""
    sizes: list[int] = []
    size = _LOG_ROWS_PER_STATEMENT
    while rows:
        if rows >= size:
            sizes.append(size)
            rows -= size
        else:
            size //= 2
    return sizes


def _placeholders(columns: str) -> str:
    return ", ".join("?" for _ in columns.split(","))


def _dump_config(value: BudgetConfig | RateLimitConfig | None) -> str | None:
    return None if value is None else orjson.dumps(dataclasses.asdict(value)).decode()


def _load_config(cls: type[_T], text: str | None) -> _T | None:
    if text is None:
        return None
    data = orjson.loads(text)
    # Ignore fields this version does not know, so a newer writer cannot break an older reader.
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


def _dump_tuple(values: tuple[str, ...]) -> str:
    return orjson.dumps(list(values)).decode()


def _load_tuple(text: str) -> tuple[str, ...]:
    return tuple(str(v) for v in orjson.loads(text))


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _key_params(key: VirtualKey) -> tuple[object, ...]:
    return (
        key.id,
        key.name,
        key.key_hash,
        key.key_prefix,
        key.description,
        1 if key.active else 0,
        _opt_float(key.expires_at),
        _dump_tuple(key.allowed_models),
        _dump_tuple(key.allowed_providers),
        _dump_config(key.budget),
        _dump_config(key.rate_limit),
        key.team_id,
        float(key.created_at),
        float(key.updated_at),
        _opt_float(key.revoked_at),
    )


def _key_from_row(row: Row) -> VirtualKey:
    return VirtualKey(
        id=row[0],
        name=row[1],
        key_hash=row[2],
        key_prefix=row[3],
        description=row[4],
        active=bool(row[5]),
        expires_at=_opt_float(row[6]),
        allowed_models=_load_tuple(row[7]),
        allowed_providers=_load_tuple(row[8]),
        budget=_load_config(BudgetConfig, row[9]),
        rate_limit=_load_config(RateLimitConfig, row[10]),
        team_id=row[11],
        created_at=float(row[12]),
        updated_at=float(row[13]),
        revoked_at=_opt_float(row[14]),
    )


def _team_params(team: Team) -> tuple[object, ...]:
    return (team.id, team.name, _dump_config(team.budget), float(team.created_at), float(team.updated_at))


def _team_from_row(row: Row) -> Team:
    return Team(
        id=row[0],
        name=row[1],
        budget=_load_config(BudgetConfig, row[2]),
        created_at=float(row[3]),
        updated_at=float(row[4]),
    )


def utc_day(ts: float) -> str:
    """The UTC calendar day of a unix time, as the ``day`` column stores it."""
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _log_params(entry: LogEntry) -> tuple[object, ...]:
    return (
        entry.id,
        float(entry.ts),
        entry.request_type,
        entry.model_requested,
        int(entry.status),
        int(entry.latency_ms),
        entry.key_id,
        entry.team_id,
        entry.provider,
        entry.model_served,
        entry.error_type,
        entry.attempts_json,
        int(entry.prompt_tokens),
        int(entry.completion_tokens),
        int(entry.total_tokens),
        _opt_float(entry.cost),
        entry.content_json,
        entry.request_id,
        entry.cache_hit_type,
        entry.cache_id,
        utc_day(entry.ts),
    )


def _log_from_row(row: Row) -> LogEntry:
    return LogEntry(
        id=row[0],
        ts=float(row[1]),
        request_type=row[2],
        model_requested=row[3],
        status=int(row[4]),
        latency_ms=int(row[5]),
        key_id=row[6],
        team_id=row[7],
        provider=row[8],
        model_served=row[9],
        error_type=row[10],
        attempts_json=row[11],
        prompt_tokens=int(row[12]),
        completion_tokens=int(row[13]),
        total_tokens=int(row[14]),
        cost=_opt_float(row[15]),
        content_json=row[16],
        request_id=row[17] or "",
        cache_hit_type=row[18],
        cache_id=row[19],
    )


def encode_cursor(ts: float, entry_id: str) -> str:
    """An opaque, URL-safe position in the log: the (ts, id) of the last entry returned."""
    raw = orjson.dumps([ts, entry_id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Raises ValueError for a cursor this module did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, entry_id = orjson.loads(raw)
    except (binascii.Error, orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"invalid cursor {cursor!r}") from exc
    if not isinstance(ts, int | float) or isinstance(ts, bool) or not isinstance(entry_id, str):
        raise ValueError(f"invalid cursor {cursor!r}")
    return float(ts), entry_id


# ---------------------------------------------------------------- the store


class SqlStore:
    """The ``Store`` implementation both backends share; subclasses provide ``_connect``."""

    # SQL for the whole number below a non-negative value (``{}``). SQLite's CAST truncates,
    # which is the floor here; PostgreSQL's rounds, so postgres.py says FLOOR instead (SQLite's
    # floor() exists only when its math functions are compiled in).
    FLOOR_SQL = "CAST({} AS INTEGER)"

    def __init__(self, errors: DriverErrors) -> None:
        self._errors = errors
        self._adapter: Adapter | None = None

    async def _connect(self) -> Adapter:
        """Open the backend's connection(s)."""
        raise NotImplementedError

    @property
    def _db(self) -> Adapter:
        if self._adapter is None:
            raise StoreError("the store is not open")
        return self._adapter

    def _translate(self) -> AbstractContextManager[None]:
        return translate_errors(self._errors)

    async def open(self) -> None:
        """Connect and run pending schema migrations (versioned; safe to call on every start)."""
        if self._adapter is not None:
            return
        with self._translate():
            adapter = await self._connect()
            try:
                await migrate(adapter)
            except BaseException:
                await adapter.close()
                raise
        self._adapter = adapter

    async def aclose(self) -> None:
        """Close the connection(s); the store can be opened again. Closing twice is harmless."""
        adapter, self._adapter = self._adapter, None
        if adapter is not None:
            with self._translate():
                await adapter.close()

    # -- virtual keys

    async def insert_key(self, key: VirtualKey) -> None:
        """Raises AlreadyExists when the id (or the key hash) is taken."""
        with self._translate():
            await self._db.execute(
                f"INSERT INTO virtual_keys ({_KEY_COLUMNS}) VALUES ({_placeholders(_KEY_COLUMNS)})",
                _key_params(key),
            )

    async def update_key(self, key: VirtualKey) -> None:
        """Replace the stored record with this id (every field). Raises KeyError when missing."""
        params = _key_params(key)
        with self._translate():
            changed = await self._db.execute(
                f"UPDATE virtual_keys SET {_KEY_ASSIGNMENTS} WHERE id = ?", (*params[1:], key.id)
            )
        if changed == 0:
            raise KeyError(key.id)

    async def get_key(self, key_id: str) -> VirtualKey | None:
        """The key with this id, or None."""
        return await self._one_key("id = ?", key_id)

    async def get_key_by_hash(self, key_hash: str) -> VirtualKey | None:
        """The key whose secret hashes to this (hex SHA-256), or None."""
        return await self._one_key("key_hash = ?", key_hash)

    async def _one_key(self, where: str, value: str) -> VirtualKey | None:
        with self._translate():
            rows = await self._db.fetch(f"SELECT {_KEY_COLUMNS} FROM virtual_keys WHERE {where}", (value,))
        return _key_from_row(rows[0]) if rows else None

    async def list_keys(self, *, limit: int = 100, after_id: str | None = None) -> list[VirtualKey]:
        """Ordered by id; ``after_id`` is the last id of the previous page."""
        where, params = ("WHERE id > ?", [after_id]) if after_id is not None else ("", [])
        with self._translate():
            rows = await self._db.fetch(
                f"SELECT {_KEY_COLUMNS} FROM virtual_keys {where} ORDER BY id LIMIT ?",
                (*params, _clamp(limit)),
            )
        return [_key_from_row(row) for row in rows]

    async def keys_updated_since(self, since: float) -> list[VirtualKey]:
        """Keys whose ``updated_at`` >= since (for replicas refreshing their key caches)."""
        with self._translate():
            rows = await self._db.fetch(
                f"SELECT {_KEY_COLUMNS} FROM virtual_keys WHERE updated_at >= ? ORDER BY updated_at, id",
                (float(since),),
            )
        return [_key_from_row(row) for row in rows]

    # -- teams

    async def upsert_team(self, team: Team) -> None:
        """Insert or replace a team. An existing team keeps its ``created_at``: budget windows start there."""
        with self._translate():
            await self._db.execute(
                f"INSERT INTO teams ({_TEAM_COLUMNS}) VALUES ({_placeholders(_TEAM_COLUMNS)}) "
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name, budget = excluded.budget, "
                "updated_at = excluded.updated_at",
                _team_params(team),
            )

    async def get_team(self, team_id: str) -> Team | None:
        """The team with this id, or None."""
        with self._translate():
            rows = await self._db.fetch(f"SELECT {_TEAM_COLUMNS} FROM teams WHERE id = ?", (team_id,))
        return _team_from_row(rows[0]) if rows else None

    async def list_teams(self) -> list[Team]:
        """Every team, ordered by id."""
        with self._translate():
            rows = await self._db.fetch(f"SELECT {_TEAM_COLUMNS} FROM teams ORDER BY id")
        return [_team_from_row(row) for row in rows]

    # -- request log

    async def insert_logs(self, entries: Sequence[LogEntry]) -> None:
        """One transaction for the whole batch."""
        if not entries:
            return
        columns = f"{_LOG_COLUMNS}, day"
        row = f"({_placeholders(columns)})"
        # Multi-row INSERTs, not executemany: SQLite's driver gives up the GIL around every
        # row's step, and each hand-back stalls the event loop thread serving requests (measured:
        # ~145 us of gateway CPU per request at c=32 with executemany). One statement per chunk
        # keeps that to a few hand-offs per batch; PostgreSQL gets fewer round trips too.
        with self._translate():
            async with self._db.transaction() as tx:
                start = 0
                for size in _statement_sizes(len(entries)):
                    chunk = entries[start : start + size]
                    start += size
                    values = ", ".join([row] * size)
                    params = [value for entry in chunk for value in _log_params(entry)]
                    await tx.execute(f"INSERT INTO request_logs ({columns}) VALUES {values}", params)

    async def query_logs(self, query: LogQuery) -> LogPage:
        """A page of the log, newest first (ts, then id, descending). Raises ValueError for a bad cursor."""
        where, params = _log_filters(query.key_id, query.start, query.end)
        if query.model is not None:
            where.append("(model_requested = ? OR model_served = ?)")
            params += [query.model, query.model]
        if query.request_id is not None:
            where.append("request_id = ?")
            params.append(query.request_id)
        for column, value in (
            ("provider", query.provider),
            ("error_type", query.error_type),
            ("team_id", query.team_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.errors_only:
            where.append("status >= 400")
        if query.status is not None:
            where.append("status = ?")
            params.append(int(query.status))
        if query.cursor is not None:
            ts, entry_id = decode_cursor(query.cursor)
            where.append("(ts < ? OR (ts = ? AND id < ?))")
            params += [ts, ts, entry_id]
        limit = _clamp(query.limit)
        with self._translate():
            rows = await self._db.fetch(
                f"SELECT {_LOG_COLUMNS} FROM request_logs {_where(where)} ORDER BY ts DESC, id DESC LIMIT ?",
                (*params, limit + 1),  # one more than asked: whether another page exists
            )
        entries = tuple(_log_from_row(row) for row in rows[:limit])
        more = len(rows) > limit
        return LogPage(entries, encode_cursor(entries[-1].ts, entries[-1].id) if more else None)

    async def get_log(self, entry_id: str) -> LogEntry | None:
        """One entry by its id (not its request id)."""
        with self._translate():
            rows = await self._db.fetch(f"SELECT {_LOG_COLUMNS} FROM request_logs WHERE id = ?", (entry_id,))
        return _log_from_row(rows[0]) if rows else None

    async def usage_overview(
        self,
        *,
        start: float,
        end: float,
        bucket_s: float,
        key_id: str | None = None,
        team_id: str | None = None,
        top: int = 10,
    ) -> UsageOverview:
        """Requests, errors, cost and tokens per ``bucket_s`` from ``start`` (ts in [start, end)),
        and the ``top`` rows of each breakdown.

        Every figure is a GROUP BY in the database, so the answer is a few hundred rows whatever
        the size of the log; ``bench/console_overview.py`` measures it over 100,000 entries.
        """
        where, params = _log_filters(key_id, start, end)
        if team_id is not None:
            where.append("team_id = ?")
            params.append(team_id)
        condition = _where(where)
        bucket = self.FLOOR_SQL.format("(ts - ?) / ?")
        with self._translate():
            rows = await self._db.fetch(
                f"SELECT {bucket} AS b, {_FIGURES}, SUM(prompt_tokens), SUM(completion_tokens) "
                f"FROM request_logs {condition} GROUP BY 1 ORDER BY 1",
                (float(start), float(bucket_s), *params),
            )
            buckets = tuple(
                UsageBucket(
                    start=start + int(row[0]) * bucket_s,
                    requests=int(row[1]),
                    errors=int(row[2]),
                    cost=float(row[3]),
                    total_tokens=int(row[4]),
                    prompt_tokens=int(row[5]),
                    completion_tokens=int(row[6]),
                )
                for row in rows
            )
            # One pass for every breakdown: grouped by key, team, provider and model in SQL, then
            # folded here. One scan instead of six: 30 days of a 100,000-entry SQLite log went from
            # ~2 s to ~0.4 s (bench/console_overview.py). The groups are the distinct
            # (key, provider, model) combinations in the range: a few thousand, not the rows.
            groups = await self._db.fetch(
                f"SELECT COALESCE(key_id, ''), COALESCE(team_id, ''), provider, {_MODEL_SQL}, {_FIGURES} "
                f"FROM request_logs {condition} GROUP BY 1, 2, 3, 4",
                params,
            )
        folded = _fold(groups, max(1, int(top)))
        totals = UsageBucket(
            start=start,
            requests=sum(b.requests for b in buckets),
            errors=sum(b.errors for b in buckets),
            cost=sum(b.cost for b in buckets),
            prompt_tokens=sum(b.prompt_tokens for b in buckets),
            completion_tokens=sum(b.completion_tokens for b in buckets),
            total_tokens=sum(b.total_tokens for b in buckets),
        )
        return UsageOverview(buckets, totals, *folded)

    async def usage_summary(
        self, *, start: float | None = None, end: float | None = None, key_id: str | None = None
    ) -> list[UsageRow]:
        """Grouped by key, model and UTC day; ordered by day, key, model."""
        where, params = _log_filters(key_id, start, end)
        sql = (
            "SELECT COALESCE(key_id, '') AS k, "
            "CASE WHEN model_served <> '' THEN model_served ELSE model_requested END AS m, day, "
            "COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(total_tokens), "
            "SUM(COALESCE(cost, 0.0)) "
            f"FROM request_logs {_where(where)} GROUP BY 1, 2, 3 ORDER BY 3, 1, 2"
        )
        with self._translate():
            rows = await self._db.fetch(sql, params)
        return [
            UsageRow(
                key_id=row[0],
                model=row[1],
                day=row[2],
                requests=int(row[3]),
                prompt_tokens=int(row[4]),
                completion_tokens=int(row[5]),
                total_tokens=int(row[6]),
                cost=float(row[7]),
            )
            for row in rows
        ]

    async def spend_since(
        self, *, key_id: str | None = None, team_id: str | None = None, since: float
    ) -> float:
        """Summed cost of logged requests with ts >= since for this key (or team); unpriced ones count 0.

        Exactly one of ``key_id`` and ``team_id`` must be given (ValueError otherwise).
        """
        if (key_id is None) == (team_id is None):
            raise ValueError("spend_since needs exactly one of key_id and team_id")
        column, value = ("key_id", key_id) if key_id is not None else ("team_id", team_id)
        with self._translate():
            rows = await self._db.fetch(
                f"SELECT COALESCE(SUM(cost), 0.0) FROM request_logs WHERE {column} = ? AND ts >= ?",
                (value, float(since)),
            )
        return float(rows[0][0])


# The figures every overview row carries: requests, errors (status >= 400), cost, tokens.
_FIGURES = (
    "COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(COALESCE(cost, 0.0)), SUM(total_tokens)"
)
# The model a request is counted under, as usage_summary counts it: the one served, else the one asked.
_MODEL_SQL = "CASE WHEN model_served <> '' THEN model_served ELSE model_requested END"


def _fold(groups: list[Row], top: int) -> tuple[tuple[UsageBreakdown, ...], ...]:
    """(key, team, provider, model, figures...) groups -> by model, key, team and provider, and
    the top erroring keys and models, each cut to ``top`` rows."""
    sums: list[dict[str, list[float]]] = [{}, {}, {}, {}]  # key, team, provider, model
    for row in groups:
        figures = (int(row[4]), int(row[5]), float(row[6] or 0.0), int(row[7] or 0))
        for table, name in zip(sums, (row[0], row[1], row[2], row[3]), strict=True):
            into = table.setdefault(str(name or ""), [0, 0, 0.0, 0])
            for i, value in enumerate(figures):
                into[i] += value
    keys, teams, providers, models = (
        [UsageBreakdown(n, int(v[0]), int(v[1]), float(v[2]), int(v[3])) for n, v in table.items()]
        for table in sums
    )

    def best(rows: list[UsageBreakdown], by: str) -> tuple[UsageBreakdown, ...]:
        if by == "errors":
            rows = [r for r in rows if r.errors]
            ordered = sorted(rows, key=lambda r: (-r.errors, -r.requests, r.name))
        elif by == "requests":
            ordered = sorted(rows, key=lambda r: (-r.requests, r.name))
        else:
            ordered = sorted(rows, key=lambda r: (-r.cost, -r.requests, r.name))
        return tuple(ordered[:top])

    return (
        best(models, "cost"),
        best(keys, "cost"),
        best(teams, "cost"),
        best(providers, "requests"),
        best(keys, "errors"),
        best(models, "errors"),
    )


def _clamp(limit: int) -> int:
    return max(1, min(int(limit), MAX_PAGE))


def _log_filters(
    key_id: str | None, start: float | None, end: float | None
) -> tuple[list[str], list[object]]:
    # Only the filters in use become SQL: PostgreSQL cannot type a bare `? IS NULL`.
    where: list[str] = []
    params: list[object] = []
    if key_id is not None:
        where.append("key_id = ?")
        params.append(key_id)
    if start is not None:
        where.append("ts >= ?")
        params.append(float(start))
    if end is not None:
        where.append("ts < ?")
        params.append(float(end))
    return where, params


def _where(conditions: list[str]) -> str:
    return f"WHERE {' AND '.join(conditions)}" if conditions else ""
