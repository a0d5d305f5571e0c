"""What a memory:// store holds where the Store interface has no read for it: SQL on its
throwaway SQLite file, read beside the store's own connections."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

from gateway.store import Store
from gateway.store.sqlite import SqliteStore


def rows(store: Store, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """The rows one query reads from an open memory:// (or other SQLite) store."""
    assert isinstance(store, SqliteStore)
    uri = f"{store.path.as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        return conn.execute(sql, params).fetchall()


def column(store: Store, sql: str, *params: object) -> set[Any]:
    """The distinct values of the first column a query reads."""
    return {row[0] for row in rows(store, sql, *params)}
