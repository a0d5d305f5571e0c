"""Persistence: `Store` (`sql.SqlStore`, every domain method written once over SQL), its two
dialects (`sqlite`, `postgres`), and the store a database URL names."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from gateway.errors import StoreError
from gateway.store.sql import SqlStore as Store

__all__ = ["Store", "in_one_process", "sqlite_file", "store_for_url"]


def in_one_process(url: str) -> bool:
    """Whether the store this URL names lives inside one process (memory://: a throwaway SQLite
    database in a temporary directory of its own), where no other process can see it."""
    return urlsplit(url).scheme.lower() == "memory"


def sqlite_file(url: str) -> Path | None:
    """The file a sqlite:/// URL names (relative to the working directory unless absolute),
    or None for any other URL."""
    if urlsplit(url).scheme.lower() != "sqlite" or not url.lower().startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :]
    return Path(path) if path else None


def store_for_url(url: str, *, pool_size: int | None = None) -> Store:
    """The store a database URL names: sqlite:///relative.db, sqlite:////absolute.db, memory://
    (see `in_one_process`), or postgresql://... (postgres://...) with at most `pool_size`
    connections (its default when None). Nothing connects until `open()`."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        from gateway.store.sqlite import SqliteStore

        path = sqlite_file(url)
        if path is None:
            raise StoreError(f"a SQLite URL names a file: sqlite:///path.db, not {url!r}")
        return SqliteStore(path)
    if scheme == "memory":
        from gateway.store.sqlite import ThrowawaySqliteStore

        return ThrowawaySqliteStore()
    if scheme in ("postgresql", "postgres"):
        try:  # asyncpg is optional until a PostgreSQL URL is used
            from gateway.store.postgres import PostgresStore
        except ImportError as exc:
            raise StoreError("PostgreSQL store not available") from exc
        return PostgresStore(url) if pool_size is None else PostgresStore(url, pool_size=pool_size)
    raise StoreError(
        f"unsupported database URL scheme {scheme!r} (use sqlite, postgresql or memory)"
    )
