"""What every store offers. ``open_store(url)`` in ``service/store/__init__.py`` picks the backend.

The store is the source of truth for virtual keys and teams and keeps the request
log. It is never on the per-request hot path except through the request-log writer
(batched, in the background) and key-cache misses.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from service.records import LogEntry, LogPage, LogQuery, Team, UsageOverview, UsageRow, VirtualKey

# ---------------------------------------------------------------- what backends give SqlStore
# Here, not in sql.py: migrations.py and the backends need them, and sql.py needs migrations.py.

Row = Sequence[Any]
Params = Sequence[object]


class Executor(Protocol):
    """Runs statements written with ``?`` placeholders."""

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        ...

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        """One statement over many parameter rows, all in one transaction."""
        ...


class Adapter(Executor, Protocol):
    """A backend's connection handling: all that differs between SQLite and PostgreSQL."""

    def transaction(self, *, exclusive: bool = False) -> AbstractAsyncContextManager[Executor]:
        """An executor whose statements commit together (or not at all).

        ``exclusive``: also serialised against every other exclusive transaction on
        the same database, in any process (used by migrations).
        """
        ...

    async def close(self) -> None: ...


# ---------------------------------------------------------------- what every store offers


class StoreError(Exception):
    """A store operation failed (the database is unreachable, a constraint failed...)."""


class AlreadyExists(StoreError):
    """A key or team with this id already exists."""


class Store(Protocol):
    async def open(self) -> None:
        """Connect and run pending schema migrations (versioned; safe to call on every start)."""

    async def aclose(self) -> None: ...

    # -- virtual keys
    async def insert_key(self, key: VirtualKey) -> None:
        """Raises AlreadyExists when the id (or the key hash) is taken."""

    async def update_key(self, key: VirtualKey) -> None:
        """Replace the stored record with this id (every field). Raises KeyError when missing."""

    async def get_key(self, key_id: str) -> VirtualKey | None: ...

    async def get_key_by_hash(self, key_hash: str) -> VirtualKey | None: ...

    async def list_keys(self, *, limit: int = 100, after_id: str | None = None) -> list[VirtualKey]:
        """Ordered by id; ``after_id`` is the last id of the previous page."""

    async def keys_updated_since(self, since: float) -> list[VirtualKey]:
        """Keys whose ``updated_at`` >= since (for replicas refreshing their key caches)."""

    # -- teams
    async def upsert_team(self, team: Team) -> None: ...

    async def get_team(self, team_id: str) -> Team | None: ...

    async def list_teams(self) -> list[Team]: ...

    # -- request log
    async def insert_logs(self, entries: Sequence[LogEntry]) -> None:
        """One transaction for the whole batch."""

    async def query_logs(self, query: LogQuery) -> LogPage: ...

    async def get_log(self, entry_id: str) -> LogEntry | None:
        """One entry by its id (not its request id)."""

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
        and the ``top`` rows of each breakdown, aggregated in the database."""

    async def usage_summary(
        self, *, start: float | None = None, end: float | None = None, key_id: str | None = None
    ) -> list[UsageRow]:
        """Grouped by key, model and UTC day; ordered by day, key, model."""

    async def spend_since(
        self, *, key_id: str | None = None, team_id: str | None = None, since: float
    ) -> float:
        """Summed cost of logged requests with ts >= since for this key (or team)."""
