"""The persistent store: virtual keys, teams and the request log.

- ``base.py``: the ``Store`` protocol and its errors (``StoreError``, ``AlreadyExists``).
- ``migrations.py``: the versioned schema, shared by both backends, and the runner.
- ``sql.py``: ``SqlStore``, every ``Store`` method written once over a small connection
  adapter; row <-> record conversion; driver errors translated in one place.
- ``sqlite.py``: ``SqliteStore``, the embedded default (aiosqlite, WAL).
- ``postgres.py``: ``PostgresStore``, shared by replicas (asyncpg pool, advisory-locked migrations).

``open_store(url)`` picks the backend from the URL; the caller awaits ``.open()``.
"""

from __future__ import annotations

from service.store.base import AlreadyExists, Store, StoreError

__all__ = ["AlreadyExists", "Store", "StoreError", "open_store"]

SUPPORTED_SCHEMES = "sqlite:///relative.db, sqlite:////absolute.db, sqlite://:memory:, postgresql://..."


def open_store(url: str) -> Store:
    """The store a URL names, not yet opened (await ``.open()``). Raises ValueError for any other URL.

    ``sqlite:///data/s.db`` is relative to the working directory, ``sqlite:////var/s.db``
    absolute; ``sqlite://:memory:`` is a private in-memory database (tests).
    """
    # Backends are imported on demand: a SQLite deployment never loads asyncpg.
    if url.startswith(("postgresql://", "postgres://")):
        from service.store.postgres import PostgresStore

        return PostgresStore(url)
    path = ""
    if url == "sqlite://:memory:":
        path = ":memory:"
    elif url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")  # "sqlite:////abs.db" leaves "/abs.db"
    if path:
        from service.store.sqlite import SqliteStore

        return SqliteStore(path)
    raise ValueError(f"unsupported store URL {_redact(url)!r}: expected one of {SUPPORTED_SCHEMES}")


def _redact(url: str) -> str:
    # Never echo a password back into an error message (or the log it ends up in).
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
