"""The in-memory copy of virtual keys and teams that every request reads instead of the store.

Loaded at start and refreshed every ``auth.key_cache_ttl_s`` from the store's
``keys_updated_since``, so a change made on any replica reaches this one within
that time. A key this replica has never seen (created elsewhere a moment ago) is
read from the store on its first use; unknown hashes are remembered for a TTL so
guessing keys cannot hammer the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from service.records import Team, VirtualKey
from service.store import Store, StoreError

log = logging.getLogger("switchyard.service")

_NEGATIVE_CACHE_LIMIT = 10_000


class KeyCache:
    """Virtual keys and teams by hash and id, refreshed from the store every ``ttl_s``."""

    def __init__(self, store: Store, ttl_s: float) -> None:
        self._store = store
        self._ttl = max(0.1, ttl_s)
        self._by_hash: dict[str, VirtualKey] = {}
        self._by_id: dict[str, VirtualKey] = {}
        self._missing: dict[str, float] = {}  # unknown hash or id -> when it was looked up
        self._teams: dict[str, Team] = {}
        self._synced_at = 0.0
        self._task: asyncio.Task[None] | None = None

    async def load(self) -> None:
        started = time.time()
        after: str | None = None
        while True:
            page = await self._store.list_keys(limit=500, after_id=after)
            for key in page:
                self.put(key)
            if len(page) < 500:
                break
            after = page[-1].id
        self._teams = {team.id: team for team in await self._store.list_teams()}
        self._synced_at = started

    def start(self) -> None:
        self._task = asyncio.create_task(self._refresh_forever(), name="key-cache-refresh")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def put(self, key: VirtualKey) -> None:
        old = self._by_id.get(key.id)
        if old is not None and old.key_hash != key.key_hash:
            self._by_hash.pop(old.key_hash, None)  # rotated: the old secret stops working
        self._by_id[key.id] = key
        self._by_hash[key.key_hash] = key
        self._missing.pop(key.key_hash, None)
        self._missing.pop(key.id, None)

    @property
    def count(self) -> int:
        return len(self._by_id)

    def put_team(self, team: Team) -> None:
        self._teams[team.id] = team

    def team(self, team_id: str | None) -> Team | None:
        return self._teams.get(team_id) if team_id else None

    def teams(self) -> list[Team]:
        return sorted(self._teams.values(), key=lambda t: t.id)

    async def by_hash(self, key_hash: str, now: float) -> VirtualKey | None:
        key = self._by_hash.get(key_hash)
        if key is None and self._may_look_up(key_hash, now):
            key = await self._store.get_key_by_hash(key_hash)
            self._remember(key_hash, key, now)
        return key

    async def by_id(self, key_id: str, now: float) -> VirtualKey | None:
        key = self._by_id.get(key_id)
        if key is None and self._may_look_up(key_id, now):
            key = await self._store.get_key(key_id)
            self._remember(key_id, key, now)
        return key

    def _may_look_up(self, lookup: str, now: float) -> bool:
        # Unknown credentials are remembered for a while, so guessing keys cannot hammer the store.
        missed_at = self._missing.get(lookup)
        return missed_at is None or now - missed_at >= self._ttl

    def _remember(self, lookup: str, key: VirtualKey | None, now: float) -> None:
        if key is not None:
            self.put(key)
            return
        if len(self._missing) >= _NEGATIVE_CACHE_LIMIT:
            self._missing.clear()
        self._missing[lookup] = now

    async def refresh(self) -> None:
        started = time.time()
        # Overlap the windows by a second and a TTL: replicas' clocks are not exactly equal.
        for key in await self._store.keys_updated_since(self._synced_at - self._ttl - 1.0):
            self.put(key)
        self._teams = {team.id: team for team in await self._store.list_teams()}
        self._synced_at = started

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._ttl)
            try:
                await self.refresh()
            except (StoreError, OSError) as exc:
                log.warning("key cache refresh failed (serving from cache): %s", exc)
