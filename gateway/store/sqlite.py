"""`SqliteStore`: the embedded default (contract §8), one database file through aiosqlite.

Transactions run on one writer connection, one at a time behind an asyncio.Lock, each a script
(`gateway.store.steps`) run whole on the writer's thread in one hop (`_atomically`), so the file
stays locked only while SQLite works. They begin IMMEDIATE, so as never to upgrade the lock
mid-way; another process's writes (`serve` and `worker` share the file) make BEGIN try again
after each of BUSY_PAUSES, up to `busy_timeout` seconds. Reads go to a second, read-only
connection, which in WAL mode sees only committed data and never waits for the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, TypeVar
from uuid import UUID

import aiosqlite
import orjson

from gateway.errors import StoreError
from gateway.store import sqlite_queries as q
from gateway.store.codec import SQLITE, Codec
from gateway.store.sql import SqlStore
from gateway.store.sqlite_queries import MIGRATIONS, Params
from gateway.store.steps import Execute, ExecuteMany, Fetch, MakeScript, Run, Step

__all__ = ["MIGRATIONS", "SqliteStore", "ThrowawaySqliteStore"]

T = TypeVar("T")

# Pauses between tries of BEGIN IMMEDIATE, the last repeated. SQLite's own busy handler sleeps
# 1, 2, 5 ... 100 ms: a worker sharing the file with `serve` lost tens of milliseconds a claim
# and stood still for half-seconds while events were published (commit 9134304's message).
BUSY_PAUSES = (0.0002, 0.0005, 0.001, 0.002)


def _null(value: None) -> None:
    """None's adapter (below): the NULL it binds as."""
    return value


# The sqlite3 module binds an exact int, float, str or bytes at once, but looks any other value
# up among its adapters first, None included: finding none, it raises and clears two
# AttributeErrors, formatting their messages. A notification's row holds five or six Nones when
# published; a registered adapter is found at once (a row of five Nones: 1,762 -> 1,046 ns to
# bind and insert, an ad hoc timeit).
sqlite3.register_adapter(type(None), _null)


def _hide_sql_parameters(record: logging.LogRecord) -> bool:
    """aiosqlite logs every call at DEBUG with its arguments, which hold client secrets: keep
    the record, but name only the function called."""
    if isinstance(record.args, tuple):
        record.args = tuple(
            f"{getattr(a.func, '__qualname__', type(a.func).__name__)}(...)"
            if isinstance(a, functools.partial) else a for a in record.args
        )  # fmt: skip
    return True


class SqliteStore(SqlStore):
    """The store on one SQLite file."""

    q: ClassVar[ModuleType] = q
    codec: ClassVar[Codec] = SQLITE

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout  # seconds a write waits for another process to finish
        self.applied_migrations: list[int] = []  # by the last open()
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    # -- Connections and transactions ---------------------------------------------------------
    async def open(self) -> None:
        """Connect (creating the file and its directory) and apply pending migrations."""
        if self._writer is not None:
            return
        logging.getLogger("aiosqlite").addFilter(_hide_sql_parameters)  # a no-op once added
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A new database is readable by its owner only: it holds webhooks' client secrets
            # and signing keys. SQLite gives its -wal and -shm files the same mode.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDONLY, 0o600))
            self._writer = await self._connect(q.PRAGMAS)
            self.applied_migrations = await self._migrate()
            self._reader = await self._connect(q.READER_PRAGMAS)
        except (OSError, sqlite3.Error) as exc:
            await self.close()
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
        except BaseException:
            await self.close()
            raise

    async def _connect(self, pragmas: Sequence[str]) -> aiosqlite.Connection:
        # isolation_level=None: no implicit transactions; we BEGIN and COMMIT ourselves.
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            # SQLite's own lower() changes ASCII letters only; a filter's contains, startswith
            # and endswith ignore case in every alphabet, as in rules and on PostgreSQL.
            await conn.create_function("lower", 1, _lower, deterministic=True)
            for pragma in pragmas:
                await conn.execute(pragma)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def close(self) -> None:
        """Close both connections."""
        writer, reader, self._writer, self._reader = self._writer, self._reader, None, None
        for conn in (reader, writer):
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    await conn.close()

    def _is_open(self) -> bool:
        return self._writer is not None

    async def _atomically(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` in one transaction, run whole on the writer's thread: awaiting
        each statement would hold the lock across turns of a busy worker's event loop, and
        serve's publishes waited that long (commit 9a3154a's message)."""
        conn = self._open(self._writer)
        async with self._lock:
            try:
                return await _on_thread(conn, _run_atomically, work, self.busy_timeout)
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite error: {exc}") from exc

    async def _transact(self, script: MakeScript[T]) -> T:
        """A fresh `script()` run whole on the writer's thread, in one transaction."""
        return await self._atomically(functools.partial(_run_script, script=script))

    def _open(self, conn: aiosqlite.Connection | None) -> aiosqlite.Connection:
        if conn is None:
            raise StoreError("the store is not open")
        return conn

    # -- SqlStore's primitives -----------------------------------------------------------------
    async def _rows(self, sql: str, params: Params | None = None) -> list[sqlite3.Row]:
        try:
            reader = self._open(self._reader)
            return list(await reader.execute_fetchall(sql, _values(params or {})))
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite error: {exc}") from exc

    def _ids(self, ids: Collection[UUID]) -> str:
        # One JSON parameter, for `IN (SELECT value FROM json_each(...))`.
        return orjson.dumps([str(i) for i in ids]).decode()


def _values(params: Params) -> Params:
    """Parameters as SQLite stores their values (those already stored so pass unchanged)."""
    return {name: SQLITE.to_sql(value) for name, value in params.items()}


async def _on_thread(conn: aiosqlite.Connection, call: Callable[..., T], *args: object) -> T:
    """`call(sqlite3 connection, *args)` on `conn`'s own thread, in one hop: through aiosqlite's
    private `_execute` and `_conn`, which pyproject.toml pins aiosqlite's versions to have."""
    done: T = await conn._execute(call, conn._conn, *args)  # type: ignore[no-untyped-call]
    return done


def _run_atomically(conn: sqlite3.Connection, work: Callable[..., T], busy_timeout: float) -> T:
    """`work(conn)` between BEGIN IMMEDIATE and COMMIT, on the writer's thread. BEGIN is tried
    again while another process holds the write lock: the writer's own busy_timeout is 0, so
    SQLITE_BUSY comes back at once and BUSY_PAUSES set the waits."""
    deadline = time.monotonic() + busy_timeout
    for attempt in itertools.count():
        try:
            conn.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(BUSY_PAUSES[min(attempt, len(BUSY_PAUSES) - 1)])
    try:
        done = work(conn)
        conn.execute("COMMIT")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    return done


def _run_script(conn: sqlite3.Connection, script: MakeScript[T]) -> T:
    """Run each step the script yields and send back what it gave, until it returns."""
    run = Run(script)
    step = run.send(None)
    while step is not None:
        step = run.send(_run_step(conn, step))
    return run.result


def _run_step(conn: sqlite3.Connection, step: Step) -> Any:
    match step:
        case Fetch(sql, params):
            return conn.execute(sql, _values(params)).fetchall()
        case Execute(sql, params):
            return conn.execute(sql, _values(params)).rowcount
        case ExecuteMany(sql, rows, encoded) if rows:
            conn.executemany(sql, rows if encoded else [_values(row) for row in rows])
    return None  # Lock, Notify: the writer holds the whole file, and nobody listens


class ThrowawaySqliteStore(SqliteStore):
    """memory://: a SqliteStore on a database file in a fresh temporary directory, which open()
    makes and close() removes with everything in it. No other process knows the file, so it
    serves one process only (`gateway.store.in_one_process`). Nothing is synced to disk."""

    def __init__(self) -> None:
        super().__init__(Path(tempfile.gettempdir(), "gateway-throwaway.db"))  # open() names it
        self._directory: Path | None = None

    async def open(self) -> None:
        """Make a new directory and an empty, migrated database in it."""
        if self._directory is not None:
            return
        self._directory = Path(tempfile.mkdtemp(prefix="gateway-memory-"))
        self.path = self._directory / "gateway.db"
        await super().open()  # it closes (so removes) what it made if it fails

    async def _connect(self, pragmas: Sequence[str]) -> aiosqlite.Connection:
        # Unsynced from the first statement: switching the new file to WAL would sync it too.
        unsynced = [pragma for pragma in pragmas if "synchronous" not in pragma]
        return await super()._connect(["PRAGMA synchronous = OFF", *unsynced])

    async def close(self) -> None:
        """Close the connections and remove the database with its directory."""
        await super().close()
        directory, self._directory = self._directory, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


def _lower(value: object) -> object:
    """lower() for SQL: text in lower case by Python's rules (other values as they are)."""
    return value.lower() if isinstance(value, str) else value
