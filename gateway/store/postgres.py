"""`PostgresStore`: the scale-out store (contract §8), through an asyncpg pool.

Several gateway processes share one database. Claims lease rows with `FOR UPDATE SKIP LOCKED`;
transactions lock the webhook rows they change first, in id order, then their notifications, so
concurrent processes queue instead of deadlocking. Each transaction is a script (`steps.py`) run
step by step in `postgres_retry.atomically`, which may start it again. One that leaves work due
sends a NOTIFY on commit, which `Listener` hears in every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar, TypeVar
from uuid import UUID

import asyncpg

from gateway.errors import StoreError
from gateway.store import postgres_queries as q
from gateway.store.codec import POSTGRES, Codec
from gateway.store.postgres_queries import MIGRATIONS, Params, Sql
from gateway.store.postgres_retry import DRIVER_ERRORS, atomically, reading
from gateway.store.queries import NEW_WORK_CHANNEL, WEBHOOK_CHANGED_CHANNEL
from gateway.store.sql import SqlStore
from gateway.store.steps import Execute, ExecuteMany, Fetch, Lock, MakeScript, Notify, Run, Step

__all__ = ["MIGRATIONS", "PostgresStore"]

log = logging.getLogger(__name__)
T = TypeVar("T")
POOL_SIZE = 10  # connections per store (per process), besides the LISTEN one
FIRST_PAUSE = 0.1  # seconds before LISTEN's first reconnect; each later one up to twice as long
MAX_PAUSE = 10.0
CONNECT_TIMEOUT = 10.0


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
        self._unnested: dict[Sql, Sql] = {}  # statements run as one for many rows, by open()

    async def open(self) -> None:
        """Create the pool and apply pending migrations."""
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=self.pool_size, reset=_keep_session
            )
            self.applied_migrations = await self._migrate()
            self._unnested = await self._unnest_inserts()
        except BaseException as exc:
            await self.close()
            if isinstance(exc, DRIVER_ERRORS):
                raise StoreError(f"cannot open PostgreSQL database: {exc}") from exc
            raise

    async def _unnest_inserts(self) -> dict[Sql, Sql]:
        """The publish path's inserts (q.UNNESTED), each as one statement for many rows, typed
        by the schema as migrated."""
        inserts = [getattr(q, name) for name in q.UNNESTED]
        tables = sorted({q.inserts_into(statement) for statement in inserts})
        rows = await self._rows(q.COLUMN_TYPES, {"tables": tables})
        types = {(table, column): kind for table, column, kind in rows}
        return {
            statement: one
            for statement in inserts
            if (one := q.unnested(statement, types)) is not None
        }

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

    async def _rows(self, query: Sql | str, params: Params | None = None) -> list[asyncpg.Record]:
        return await reading(self._open(), lambda conn: conn.fetch(*_bound(query, params or {})))

    async def _transact(self, script: MakeScript[T]) -> T:
        """Run a fresh `script()` for each try of the transaction (`atomically` may retry)."""

        async def work(conn: asyncpg.Connection) -> T:
            run = Run(script)
            step = run.send(None)
            while step is not None:
                step = run.send(await _run_step(conn, step, self._unnested))
            return run.result

        return await atomically(self._open(), work)

    def _ids(self, ids: Collection[UUID]) -> list[UUID]:
        return list(ids)

    async def watch_new_work(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever any process commits new due notifications (LISTEN)."""
        self._watchers.append(callback)
        await self._listen()

    async def watch_webhook_changes(self, callback: Callable[[UUID | None], None]) -> None:
        """Call `callback` with a webhook's id whenever any process commits a change of its
        status or secret (LISTEN); with None when a lost connection is back."""
        self._change_watchers.append(callback)
        await self._listen()

    async def _listen(self) -> None:
        if self._listener is None:
            self._open()
            channels = (NEW_WORK_CHANNEL, WEBHOOK_CHANGED_CHANNEL)
            self._listener = Listener(self.url, channels, self._notified)
            await self._listener.start()

    def _notified(self, channel: str, payload: str | None) -> None:
        if channel == NEW_WORK_CHANNEL:
            for wake in self._watchers:
                wake()
            return
        try:
            webhook_id = None if payload is None else UUID(payload)
        except ValueError:
            log.warning("unreadable webhook change notice", extra={"payload": str(payload)[:64]})
            return
        for callback in self._change_watchers:
            callback(webhook_id)


class Listener:
    """LISTENs on a connection of its own, calling `notified(channel, payload)` for each NOTIFY.
    A lost connection (a server restart, `pg_terminate_backend`) costs latency only, as workers
    poll meanwhile: it reconnects with backoff, then calls `notified(channel, None)` on each
    channel, as anything may have been committed meanwhile."""

    def __init__(
        self, url: str, channels: Sequence[str], notified: Callable[[str, str | None], None]
    ) -> None:
        self.url, self.channels, self.notified = url, tuple(channels), notified
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        """Listen now if the server lets us; else keep trying in the background."""
        conn = None
        try:
            conn = await self._connect()
        except DRIVER_ERRORS as exc:
            log.warning("cannot LISTEN for new work (%s); workers poll meanwhile", exc)
        if self._closed:  # while connecting
            return await _close(conn)
        self._task = asyncio.get_running_loop().create_task(self._reconnect(conn))

    async def close(self) -> None:
        """Stop listening and reconnecting."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])

    async def _reconnect(self, conn: asyncpg.Connection | None) -> None:
        """Hold the connection; whenever it is lost, connect again, with backoff."""
        ceiling, tries = FIRST_PAUSE, 0
        try:
            while True:
                if conn is not None:
                    await _until_lost(conn)
                    log.warning("LISTEN connection lost; reconnecting, and workers poll meanwhile")
                await asyncio.sleep(random.uniform(ceiling / 2, ceiling))
                tries, conn = tries + 1, None
                try:
                    conn = await self._connect()
                except DRIVER_ERRORS as exc:
                    log.info("LISTEN reconnect failed (%s)", exc, extra={"tries": tries})
                    ceiling = min(ceiling * 2, MAX_PAUSE)
                    continue
                log.warning("LISTEN connection restored", extra={"tries": tries})
                ceiling, tries = FIRST_PAUSE, 0
                for channel in self.channels:  # as asyncpg calls back: a raise ends no loop
                    asyncio.get_running_loop().call_soon(self.notified, channel, None)
        finally:
            await _close(conn)

    async def _connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT)
        try:
            for channel in self.channels:
                await conn.add_listener(channel, self._notify)
        except BaseException:
            await _close(conn)
            raise
        return conn

    def _notify(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        self.notified(channel, payload)


async def _until_lost(conn: asyncpg.Connection) -> None:
    lost = asyncio.Event()
    conn.add_termination_listener(lambda _conn: lost.set())
    if not conn.is_closed():
        await lost.wait()


async def _close(conn: asyncpg.Connection | None) -> None:
    with contextlib.suppress(*DRIVER_ERRORS):
        if conn is not None:
            await conn.close()


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection goes back to the pool with: its session as it is. asyncpg's default
    sends a reset query (advisory locks, cursors, LISTEN, settings) on every release, a round
    trip for each transaction; the pool's connections keep none of those past a transaction (the
    store's advisory locks are transaction locks, and LISTEN has a connection of its own).
    asyncpg still rolls back a transaction left open before calling this."""


def _bound(query: Sql | str, params: Params) -> tuple[Any, ...]:
    numbered = q.sql(query)
    return (numbered.text, *numbered.args(params))


async def _run_step(conn: asyncpg.Connection, step: Step, unnested: Mapping[Sql, Sql]) -> Any:
    match step:
        case Fetch(query, params) | Lock(query, params):
            return await conn.fetch(*_bound(query, params))
        case Execute(query, params):
            status: str = await conn.execute(*_bound(query, params))
            count = status.rsplit(" ", 1)[-1]  # of the rows changed, from the command tag
            return int(count) if count.isdigit() else 0
        case ExecuteMany(query, rows, _) if rows and (one := unnested.get(query)) is not None:
            await conn.execute(one.text, *([row[name] for row in rows] for name in one.names))
        case ExecuteMany(query, rows, _) if rows:
            numbered = q.sql(query)
            await conn.executemany(numbered.text, [numbered.args(row) for row in rows])
        case Notify(channel, payload):
            await conn.execute(*_bound(q.NOTIFY, {"channel": channel, "payload": payload}))
    return None
