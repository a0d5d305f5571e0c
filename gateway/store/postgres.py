"""`PostgresStore`: the scale-out store (DESIGN §8), through an asyncpg pool.

Several gateway processes share one database. Claims lease rows with `FOR UPDATE SKIP LOCKED`,
so two workers never take the same notification while its lease runs. Transactions that change
webhooks lock their rows first, in id order, and only then their notifications; every
transaction takes locks in that order, so concurrent processes queue instead of deadlocking.
Transactions that leave work due send a NOTIFY on commit; `watch_new_work` LISTENs on a
connection of its own and wakes the workers of every process at once.

The domain methods are `SqlStore`'s; each transaction is a script (`gateway.store.steps`).
Every transaction runs through `postgres_retry.atomically`, which runs it again after a
deadlock, a serialization failure or a connection lost before COMMIT; so `_transact` makes a
fresh script for each try and awaits its steps, `Lock` and `Notify` among them. This module
holds the pool, LISTEN, that runner, and the primitives.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Sequence
from types import ModuleType
from typing import Any, ClassVar, TypeVar
from uuid import UUID

import asyncpg

from gateway.errors import StoreError
from gateway.store import postgres_queries as q
from gateway.store.codec import POSTGRES, Codec
from gateway.store.postgres_listen import Listener
from gateway.store.postgres_queries import MIGRATIONS, Params, Sql
from gateway.store.postgres_retry import DRIVER_ERRORS, Work, atomically, reading
from gateway.store.sql import SqlStore
from gateway.store.steps import Execute, ExecuteMany, Fetch, Lock, MakeScript, Notify, Run, Step

__all__ = ["MIGRATIONS", "PostgresStore"]

log = logging.getLogger(__name__)
T = TypeVar("T")
POOL_SIZE = 10  # connections per store (per process), besides the LISTEN one


class PostgresStore(SqlStore):
    """The store on one PostgreSQL database, shared by any number of processes."""

    q: ClassVar[ModuleType] = q
    codec: ClassVar[Codec] = POSTGRES

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self.pool_size = pool_size  # most connections open at once (the LISTEN one aside)
        self.applied_migrations: list[int] = []  # by the last open()
        self._pool: asyncpg.Pool | None = None
        self._listener: Listener | None = None
        self._watchers: list[Callable[[], None]] = []
        self._change_watchers: list[Callable[[UUID | None], None]] = []

    # -- Connections and transactions ---------------------------------------------------------
    async def open(self) -> None:
        """Create the pool and apply pending migrations."""
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=self.pool_size)
            self.applied_migrations = await self._migrate()
        except DRIVER_ERRORS as exc:
            await self.close()
            raise StoreError(f"cannot open PostgreSQL database: {exc}") from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop listening and close the pool."""
        listener, pool, self._listener, self._pool = self._listener, self._pool, None, None
        self._watchers.clear()
        self._change_watchers.clear()
        if listener is not None:
            await listener.close()
        with contextlib.suppress(*DRIVER_ERRORS):
            if pool is not None:
                await pool.close()

    def _is_open(self) -> bool:
        return self._pool is not None

    def _open(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the store is not open")
        return self._pool

    async def _atomically(self, work: Work[T]) -> T:
        """`work(connection)` in one transaction, run again after a deadlock, a serialization
        failure, or a connection lost before COMMIT (postgres_retry.atomically)."""
        return await atomically(self._open(), work)

    async def _rows(self, query: Sql | str, params: Params | None = None) -> list[asyncpg.Record]:
        return await reading(self._open(), lambda conn: _fetch(conn, query, params or {}))

    async def _transact(self, script: MakeScript[T]) -> T:
        """A fresh `script()` for each try of the transaction (postgres_retry.atomically)."""

        async def work(conn: asyncpg.Connection) -> T:
            run = Run(script)
            step = run.send(None)
            while step is not None:
                step = run.send(await _run_step(conn, step))
            return run.result

        return await self._atomically(work)

    def _ids(self, ids: Collection[UUID]) -> list[UUID]:
        return list(ids)

    def _raw_id(self, value: UUID) -> UUID:
        return value  # asyncpg's UUIDs hash and compare as uuid.UUID's do

    async def watch_new_work(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever any process commits new due notifications (LISTEN)."""
        self._watchers.append(callback)
        await self._listen()

    async def watch_webhook_changes(self, callback: Callable[[UUID | None], None]) -> None:
        """Call `callback` with a webhook's id whenever any process commits a change of its
        status or secret (LISTEN); with None after the connection was lost and is back."""
        self._change_watchers.append(callback)
        await self._listen()

    async def _listen(self) -> None:
        if self._listener is not None:
            return
        self._open()
        # Losing this connection costs latency only: workers find new work at their polls,
        # and re-read webhooks after a second, until it is back (postgres_listen.Listener
        # reconnects with backoff).
        self._listener = Listener(
            self.url, q.NEW_WORK_CHANNEL, self._notified,
            others={q.WEBHOOK_CHANGED_CHANNEL: self._webhook_changed},
        )  # fmt: skip
        await self._listener.start()

    def _notified(self) -> None:
        for callback in self._watchers:
            callback()

    def _webhook_changed(self, payload: str | None) -> None:
        try:
            webhook_id = None if payload is None else UUID(payload)
        except ValueError:
            log.warning("unreadable webhook change notice", extra={"payload": str(payload)[:64]})
            return
        for callback in self._change_watchers:
            callback(webhook_id)


async def _notify(conn: asyncpg.Connection, channel: str, payload: str = "") -> None:
    """Tell every process listening on `channel`, once this transaction commits."""
    await _execute(conn, q.NOTIFY, {"channel": channel, "payload": payload})


async def _run_step(conn: asyncpg.Connection, step: Step) -> Any:
    match step:
        case Fetch(sql, params):
            return await _fetch(conn, sql, params)
        case Execute(sql, params):
            return await _execute(conn, sql, params)
        case ExecuteMany(sql, rows, _):
            await _execute_many(conn, sql, rows)
        case Lock(sql, params):
            return await _fetch(conn, sql, params)
        case Notify(channel, payload):
            await _notify(conn, channel, payload)
    return None


async def _fetch(
    conn: asyncpg.Connection, query: Sql | str, params: Params
) -> list[asyncpg.Record]:
    prepared = q.sql(query) if isinstance(query, str) else query
    return list(await conn.fetch(prepared.text, *prepared.args(params)))


async def _execute(conn: asyncpg.Connection, query: Sql | str, params: Params) -> int:
    """Run one statement (text made as the store ran, a listing's, is numbered on first use,
    then cached); return how many rows it changed (from the command tag)."""
    prepared = q.sql(query) if isinstance(query, str) else query
    status: str = await conn.execute(prepared.text, *prepared.args(params))
    count = status.rsplit(" ", 1)[-1]
    return int(count) if count.isdigit() else 0


async def _execute_many(conn: asyncpg.Connection, query: Sql | str, rows: Sequence[Params]) -> None:
    prepared = q.sql(query) if isinstance(query, str) else query
    if rows:
        await conn.executemany(prepared.text, [prepared.args(row) for row in rows])
