"""`SqliteStore`: the embedded default (DESIGN §8), one database file through aiosqlite.

Every transaction runs on one writer connection, one at a time behind an asyncio.Lock, and begins
IMMEDIATE so it never has to upgrade its lock mid-way. Reads go to a second, read-only connection:
in WAL mode it sees only committed data and never waits for the writer.

Several processes may share the file (`gateway serve` and `gateway worker`). Only one of them
writes at a time; the others' BEGIN IMMEDIATE finds the file busy and tries again after each of
BUSY_PAUSES (see `_begin_immediate`), up to `busy_timeout` seconds.

The writes on the delivery path (add_events, claim_due, record_attempts) run as one function on
the writer's thread (`_atomically`), so the file stays locked only while SQLite works.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import shutil
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, TypeVar
from uuid import UUID

import aiosqlite
import orjson

from gateway import lifecycle
from gateway.errors import StoreError
from gateway.lifecycle import Move, StatusChange
from gateway.models import (
    Event,
    Notification,
    NotificationState,
    Webhook,
    WebhookStatus,
    utcnow,
)
from gateway.outcomes import (
    AttemptOutcome,
    Recorded,
    Settlement,
    changes_of,
    not_active,
    settle_in_order,
)
from gateway.store import queries as shared
from gateway.store import sqlite_queries as q
from gateway.store.base import Added, Requeue, WebhookEdit, conflict
from gateway.store.sql import SqlStore
from gateway.store.sqlite_queries import (
    MIGRATIONS,
    Params,
    R,
    decode,
    decode_rows,
    encode,
    stamp,
)

__all__ = ["MIGRATIONS", "SqliteStore", "ThrowawaySqliteStore"]

T = TypeVar("T")

# Pauses between tries of BEGIN IMMEDIATE while another process writes, the last repeated. SQLite's
# own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ... 100 ms: a worker process sharing the file
# with `serve` lost tens of milliseconds per claim and stood still for whole half-seconds
# while events were published (the measurements are in commit 9134304's message).
BUSY_PAUSES = (0.0002, 0.0005, 0.001, 0.002)


class _HideSqlParameters(logging.Filter):
    """aiosqlite logs every call at DEBUG with its arguments, and those hold client secrets:
    keep the record, but name only the function called."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_call_name(arg) for arg in record.args)
        return True


def _call_name(arg: object) -> object:
    if isinstance(arg, functools.partial):
        return f"{getattr(arg.func, '__qualname__', type(arg.func).__name__)}(...)"
    return arg


_HIDE_SQL_PARAMETERS = _HideSqlParameters()


class SqliteStore(SqlStore):
    """The store on one SQLite file."""

    q: ClassVar[ModuleType] = q

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
        logging.getLogger("aiosqlite").addFilter(_HIDE_SQL_PARAMETERS)  # a no-op once added
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
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

    async def migrate(self) -> list[int]:
        """Apply pending migrations (opening the store if needed); return their versions."""
        if self._writer is None:
            await self.open()
            return self.applied_migrations
        return await self._migrate()

    async def _migrate(self) -> list[int]:
        async with self._transaction() as conn:
            await conn.execute(q.CREATE_MIGRATIONS)
        applied = []
        for version, script in q.migration_files():
            async with self._transaction() as conn:
                # Checked inside the transaction: another process may have just applied it.
                if await conn.execute_fetchall(shared.IS_APPLIED, {"version": version}):
                    continue
                for statement in q.statements(script):
                    await conn.execute(statement)
                await conn.execute(shared.RECORD_MIGRATION, {"version": version, "now": _now()})
            applied.append(version)
        return applied

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        conn = self._open(self._writer)
        async with self._lock:
            try:
                await _on_thread(conn, _begin_immediate, self.busy_timeout)
                try:
                    yield conn
                    await conn.commit()
                finally:
                    if conn.in_transaction:
                        await conn.rollback()
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite error: {exc}") from exc

    async def _atomically(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` in one transaction, run whole on the writer's thread.

        `_transaction` awaits each statement, and each await waits for a turn of this process's
        event loop while the file stays locked. In a worker process busy sending, claims and
        records held the lock that long, and serve's publishes waited on them (the
        measurements are in commit 9a3154a's message).
        """
        conn = self._open(self._writer)
        async with self._lock:
            try:
                return await _on_thread(conn, _run_atomically, work, self.busy_timeout)
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite error: {exc}") from exc

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

    async def _write(self, sql: str, params: Params) -> int:
        """Run one statement in its own transaction; return how many rows it changed."""
        async with self._transaction() as conn:
            return (await conn.execute(sql, _values(params))).rowcount

    async def _write_in_one(self, statements: Sequence[tuple[str, Params]]) -> list[int]:
        async with self._transaction() as conn:
            return [
                (await conn.execute(sql, _values(params))).rowcount for sql, params in statements
            ]

    async def _insert_all(self, sql: str, rows: Sequence[Params]) -> None:
        async with self._transaction() as conn:
            await conn.executemany(sql, rows)

    def _decode_rows(self, cls: type[R], rows: Sequence[sqlite3.Row], prefix: str = "") -> list[R]:
        return decode_rows(cls, rows, prefix)

    def _encode(self, record: Any) -> Params:
        return encode(record)

    def _ids(self, ids: Collection[UUID]) -> str:
        return _json_ids(ids)

    def _read_uuid(self, value: str) -> UUID:
        return UUID(value)

    def _read_time(self, value: str) -> datetime:
        return datetime.fromisoformat(value)

    # -- Webhooks -----------------------------------------------------------------------------
    async def edit_webhook(
        self, group_key: UUID, webhook_id: UUID, edit: WebhookEdit, now: datetime
    ) -> Webhook | None:
        """Apply an owner's edit in one transaction; the webhook after it, None if not found,
        Conflict if an expectation failed."""
        ids = {"webhook_id": str(webhook_id), "group_key": str(group_key)}
        params = {
            **ids,
            **{f"v_{name}": q.to_sql(value) for name, value in edit.values.items()},
            **{f"e_{name}": q.to_sql(value) for name, value in edit.expect.items()},
        }
        sql = q.edit_webhook(edit.values, edit.expect)

        def apply(conn: sqlite3.Connection) -> Webhook | None:
            if not conn.execute(sql, params).rowcount:
                if conn.execute(shared.WEBHOOK_EXISTS, ids).fetchone() is None:
                    return None
                raise conflict(webhook_id, sorted(edit.expect))
            if edit.status is not None:
                _change_status(conn, str(webhook_id), edit.status, stamp(now))
            return decode(Webhook, conn.execute(shared.GET_WEBHOOK, ids).fetchone())

        return await self._atomically(apply)

    async def regenerate_secret(
        self,
        group_key: UUID,
        webhook_id: UUID,
        secret: str,
        previous_until: datetime,
        now: datetime,
        user_id: UUID,
    ) -> Webhook | None:
        """A new client secret; the one it replaces signs until `previous_until`."""
        ids = {"webhook_id": str(webhook_id), "group_key": str(group_key)}
        params = {**ids, "secret": secret, "previous_until": stamp(previous_until),
                  "now": stamp(now), "user_id": str(user_id)}  # fmt: skip

        def apply(conn: sqlite3.Connection) -> Webhook | None:
            if not conn.execute(q.REGENERATE_SECRET, params).rowcount:
                return None
            return decode(Webhook, conn.execute(shared.GET_WEBHOOK, ids).fetchone())

        return await self._atomically(apply)

    async def expire_webhooks(self, now: datetime) -> list[Webhook]:
        """Make expired Active webhooks Inactive and park their notifications."""
        at = stamp(now)

        def apply(conn: sqlite3.Connection) -> list[Webhook]:
            expired = []
            for hook in decode_rows(Webhook, conn.execute(q.EXPIRING, {"now": at}).fetchall()):
                change = lifecycle.expiry(hook, now)
                if change is None:  # the text comparison and the rule disagree: trust the rule
                    continue
                _change_status(conn, str(hook.webhook_id), change, at)
                conn.execute(q.TOUCH_WEBHOOK, {"webhook_id": str(hook.webhook_id), "now": at})
                ids = {"webhook_id": str(hook.webhook_id), "group_key": str(hook.group_key)}
                expired.append(decode(Webhook, conn.execute(shared.GET_WEBHOOK, ids).fetchone()))
            return expired

        return await self._atomically(apply)

    # -- Events and notifications -------------------------------------------------------------
    async def add_events(
        self, events: Sequence[Event], notifications: Sequence[Notification]
    ) -> Added:
        """Store events and their notifications in one transaction, numbering each webhook's
        notifications from its counter in the order given, pending or parked as the webhook
        is in that transaction."""
        # Encoded before the writer is taken: another request's rows can be written meanwhile.
        event_rows = [q.event_row(e) for e in events]
        note_rows = [q.notification_row(n) for n in notifications]
        now = notifications[0].created if notifications else utcnow()

        def insert(conn: sqlite3.Connection) -> dict[str, bool]:
            conn.executemany(q.INSERT_EVENT, event_rows)
            sequences, parked = _reserve(conn, note_rows, now)
            for row in note_rows:
                webhook_id = row[q.ROW_WEBHOOK]
                row[q.ROW_SEQUENCE] = sequences[webhook_id]
                sequences[webhook_id] += 1
                if row[q.ROW_STATE] not in _WAITING:
                    continue  # a finished row, seeded as it is (tests, imports)
                if webhook_id in parked:
                    _park_row(row, parked[webhook_id])
                elif row[q.ROW_STATE] != NotificationState.PENDING.value:
                    row[q.ROW_STATE] = NotificationState.PENDING.value
                    row[q.ROW_MESSAGE] = None
            conn.executemany(q.INSERT_NOTIFICATION, note_rows)
            return {webhook_id: webhook_id not in parked for webhook_id in sequences}

        active = await self._atomically(insert)
        # Each webhook once, matched by its text (a str hashes in C, a uuid.UUID in Python).
        ids = {
            row[q.ROW_WEBHOOK]: note.webhook_id
            for row, note in zip(note_rows, notifications, strict=True)
        }
        return Added(
            [row[q.ROW_SEQUENCE] for row in note_rows],
            {webhook_id: active[text] for text, webhook_id in ids.items()},
        )

    async def claim_due(
        self,
        now: datetime,
        limit: int,
        lease_owner: str,
        lease_until: datetime,
        *,
        exclude_webhooks: Collection[UUID] = (),
        exclude_groups: Collection[UUID] = (),
    ) -> list[Notification]:
        """Lease up to `limit` pending notifications due by `now` (or whose lease expired)."""
        params = {
            "now": stamp(now), "limit": limit, "owner": lease_owner,
            "lease_until": stamp(lease_until), "exclude": _json_ids(exclude_webhooks),
            "exclude_groups": _json_ids(exclude_groups),
        }  # fmt: skip
        rows = await self._atomically(lambda conn: conn.execute(q.CLAIM_DUE, params).fetchall())
        notes = q.notifications(rows)
        # RETURNING follows no ORDER BY; restore the claim order.
        return sorted(notes, key=lambda n: (n.webhook_id, n.sequence))

    async def record_attempts(self, outcomes: Sequence[AttemptOutcome]) -> Recorded:
        """Write attempt outcomes and lifecycle changes; say how many held their lease, the
        changes made, and which of the webhooks are not Active now."""
        now = _now()
        return await self._atomically(lambda conn: _record(conn, outcomes, now))

    async def release_leases(self, lease_owner: str) -> int:
        """Give back every lease this owner holds (graceful shutdown)."""
        return await self._write(shared.RELEASE_LEASES, {"owner": lease_owner})

    async def requeue_notification(
        self, group_key: UUID, webhook_id: UUID, notification_id: UUID, now: datetime
    ) -> Requeue:
        """Make a notification that has not succeeded pending and due now, if its webhook is
        Active; what was found."""
        ids = _ids(group_key, webhook_id, notification_id)
        params = {**ids, "now": stamp(now)}

        def apply(conn: sqlite3.Connection) -> Requeue:
            if conn.execute(q.REQUEUE_NOTIFICATION, params).rowcount:
                return Requeue.QUEUED
            row = conn.execute(shared.NOTIFICATION_STATE, ids).fetchone()
            if row is None:
                return Requeue.NOT_FOUND
            if row[0] == NotificationState.SUCCEEDED.value:
                return Requeue.SUCCEEDED
            return Requeue.NOT_ACTIVE

        return await self._atomically(apply)

    async def check_invariants(self, now: datetime, *, repair: bool) -> dict[str, int]:
        """Count (and with `repair`, set right) notifications that break an invariant. They
        are read without the write lock; each repair checks its row again as it writes."""
        at = stamp(now)
        parked = await self._rows(q.PARKED_OF_ACTIVE, {"now": at})
        stray = await self._rows(q.PENDING_OF_INACTIVE, {"now": at})
        if repair and (parked or stray):
            ids = {"ids": _json_ids({row[1] for row in stray})}
            hooks = decode_rows(Webhook, await self._rows(q.WEBHOOKS_BY_ID, ids))
            why = {str(hook.webhook_id): _parked_why(hook, now) for hook in hooks}
            released = [{"notification_id": row[0], "now": at,
                         "message": lifecycle.RELEASED_MESSAGE} for row in parked]  # fmt: skip
            parking = [{"notification_id": row[0], "now": at, "message": why[row[1]]}
                       for row in stray if row[1] in why]  # fmt: skip

            def apply(conn: sqlite3.Connection) -> None:
                conn.executemany(shared.RELEASE_ONE, released)
                conn.executemany(shared.PARK_ONE, parking)

            await self._atomically(apply)
        return {"parked_of_active": len(parked), "pending_of_inactive": len(stray)}


_WAITING = (NotificationState.PENDING.value, NotificationState.PARKED.value)


def _values(params: Params) -> Params:
    """Parameters as SQLite stores their values (those already stored so pass unchanged)."""
    return {name: q.to_sql(value) for name, value in params.items()}


def _now() -> str:
    return stamp(utcnow())


async def _on_thread(conn: aiosqlite.Connection, call: Callable[..., T], *args: object) -> T:
    """`call(sqlite3 connection, *args)` run on `conn`'s own thread, in one hop.

    aiosqlite has no public way to do this; `_execute` and `_conn` are how it runs its own
    calls there, and pyproject.toml keeps aiosqlite to the versions known to have them.
    """
    done: T = await conn._execute(call, conn._conn, *args)  # type: ignore[no-untyped-call]
    return done


def _begin_immediate(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """BEGIN IMMEDIATE, trying again while another process holds the write lock (the writer's
    own busy_timeout is 0: SQLITE_BUSY comes back at once). Runs on the writer's thread."""
    deadline = time.monotonic() + busy_timeout
    for attempt in itertools.count():
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(BUSY_PAUSES[min(attempt, len(BUSY_PAUSES) - 1)])


def _run_atomically(
    conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T], busy_timeout: float
) -> T:
    _begin_immediate(conn, busy_timeout)
    try:
        done = work(conn)
        conn.execute("COMMIT")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    return done


def _reserve(
    conn: sqlite3.Connection, note_rows: list[list[Any]], now: datetime
) -> tuple[dict[str, int], dict[str, str]]:
    """Reserve sequence numbers in one statement; return the first one for each webhook, and
    for each webhook that is not Active now, why its notifications are parked."""
    counts: dict[tuple[str, str], int] = {}
    for row in note_rows:
        key = (row[q.ROW_WEBHOOK], row[q.ROW_GROUP])
        counts[key] = counts.get(key, 0) + 1
    if not counts:
        return {}, {}
    wanted = orjson.dumps([[w, g, n] for (w, g), n in counts.items()]).decode()
    rows = conn.execute(q.RESERVE_SEQUENCES, {"counts": wanted}).fetchall()
    last = {(row[0], row[1]): row[2] for row in rows}
    parked = {}
    for row in rows:
        status = WebhookStatus(row[3])
        expiration = None if row[5] is None else datetime.fromisoformat(row[5])
        if not lifecycle.receives(status, expiration, now):
            shown = lifecycle.shown_status(status, row[4], expiration, now)
            parked[row[0]] = lifecycle.parked_message(*shown)
    first: dict[str, int] = {}
    for (webhook_id, group_key), count in counts.items():
        if (webhook_id, group_key) not in last:
            raise StoreError(f"no webhook {webhook_id} in group {group_key}")
        first[webhook_id] = last[webhook_id, group_key] - count + 1
    return first, parked


def _park_row(row: list[Any], message: str) -> None:
    """A new notification row, parked: not pending, not leased, saying why."""
    row[q.ROW_STATE] = NotificationState.PARKED.value
    row[q.ROW_LEASE_UNTIL] = row[q.ROW_LEASE_OWNER] = None
    row[q.ROW_MESSAGE] = message


def _change_status(
    conn: sqlite3.Connection, webhook_id: str, change: StatusChange, now: str
) -> None:
    """Set a webhook's status, and park or release its notifications to match."""
    conn.execute(q.SET_STATUS, {
        "webhook_id": webhook_id, "status_code": change.status.value,
        "status_message": change.status_message,
        "status_reason": None if change.reason is None else change.reason.value,
        "reset_failures": change.reset_failures,
    })  # fmt: skip
    if change.move is Move.PARK:
        message = lifecycle.parked_message(change.status, change.status_message)
        conn.execute(q.PARK_PENDING, {"webhook_id": webhook_id, "now": now,
                                      "message": message, "keep": None})  # fmt: skip
    else:
        conn.execute(shared.RELEASE_PARKED, {"webhook_id": webhook_id, "now": now,
                                        "message": lifecycle.RELEASED_MESSAGE})  # fmt: skip


def _record(conn: sqlite3.Connection, outcomes: Sequence[AttemptOutcome], now: str) -> Recorded:
    """record_attempts' transaction: settle the outcomes whose lease holds, in order."""
    held = _leased(conn, outcomes)
    at = datetime.fromisoformat(now)
    settled = settle_in_order(held, at)
    # Set-wise in this order, the writes end as one-by-one would: a webhook that leaves
    # Active never comes back within a batch, so no later outcome needs a parked row.
    attempts = [_settled_note(o, done, now) for o, _, done in settled if done.attempted]
    unsent = [_unsent_note(o, done, now) for o, _, done in settled if not done.attempted]
    logged = [{"notification_id": str(o.notification_id)} for o, _, done in settled if done.logged]
    changes = [_lifecycle(hook, done, now) for _, hook, done in settled if done.webhook]
    parks = [_park_others(outcome, hook, done, now)
             for outcome, hook, done in settled if done.park_webhook]  # fmt: skip
    for sql, rows in ((q.SETTLE_ATTEMPT, attempts), (q.SETTLE_UNSENT, unsent),
                      (shared.LOG_ATTEMPT, logged), (q.SETTLE_LIFECYCLE, changes),
                      (q.PARK_PENDING, parks)):  # fmt: skip
        if rows:
            conn.executemany(sql, rows)
    return Recorded(len(settled), changes_of(settled), not_active(settled, at))


def _leased(
    conn: sqlite3.Connection, outcomes: Sequence[AttemptOutcome]
) -> list[tuple[AttemptOutcome, Webhook]]:
    """The outcomes whose lease still holds, each with its webhook as this transaction sees
    it. A lost lease (or a deleted webhook) is dropped: someone else settles it."""
    ids = {"ids": _json_ids(o.notification_id for o in outcomes)}
    # notification id -> (lease owner, webhook id), read by position
    leases = {row[0]: (row[1], row[2]) for row in conn.execute(q.LEASES, ids)}
    wanted = {"ids": _json_ids({webhook for _, webhook in leases.values()})}
    rows = conn.execute(q.WEBHOOKS_BY_ID, wanted).fetchall()
    hooks = {str(hook.webhook_id): hook for hook in decode_rows(Webhook, rows)}
    held = []
    for outcome in outcomes:
        key = str(outcome.notification_id)
        lease = leases.get(key)
        if lease is None or lease[0] != outcome.lease_owner or lease[1] not in hooks:
            continue
        del leases[key]  # settled now: a second outcome for it finds no lease
        held.append((outcome, hooks[lease[1]]))
    return held


def _settled_note(outcome: AttemptOutcome, done: Settlement, now: str) -> tuple[Any, ...]:
    """SETTLE_ATTEMPT's parameters, in q.SETTLE_COLUMNS order."""
    return (
        done.state.value, stamp(done.next_attempt_at) if done.next_attempt_at else None,
        done.is_successful, outcome.response_status_code, done.process_result_message,
        outcome.request_message, outcome.response_message, now, str(outcome.notification_id),
        outcome.lease_owner,
    )  # fmt: skip


def _unsent_note(outcome: AttemptOutcome, done: Settlement, now: str) -> Params:
    return {
        "state": done.state.value,
        "next_attempt_at": stamp(done.next_attempt_at) if done.next_attempt_at else None,
        "process_result_message": done.process_result_message, "now": now,
        "notification_id": str(outcome.notification_id), "lease_owner": outcome.lease_owner,
    }  # fmt: skip


def _lifecycle(hook: Webhook, done: Settlement, now: str) -> Params:
    change = done.webhook
    assert change is not None
    return {
        "webhook_id": str(hook.webhook_id), "now": now, "failure_count": change.failure_count,
        "status_code": change.status.value, "status_message": change.status_message,
        "status_reason": None if change.reason is None else change.reason.value,
    }  # fmt: skip


def _park_others(outcome: AttemptOutcome, hook: Webhook, done: Settlement, now: str) -> Params:
    change = done.webhook
    assert change is not None
    return {
        "webhook_id": str(hook.webhook_id), "now": now,
        "message": lifecycle.parked_message(change.status, change.status_message),
        "keep": str(outcome.notification_id),
    }  # fmt: skip


def _parked_why(hook: Webhook, now: datetime) -> str:
    return lifecycle.parked_message(*lifecycle.effective_status(hook, now))


def _ids(group_key: UUID, webhook_id: UUID, notification_id: UUID) -> Params:
    return {"group_key": str(group_key), "webhook_id": str(webhook_id),
            "notification_id": str(notification_id)}  # fmt: skip


def _json_ids(ids: Iterable[UUID | str]) -> str:
    """A list of ids as one JSON parameter, for `IN (SELECT value FROM json_each(...))`."""
    return orjson.dumps([str(i) for i in ids]).decode()


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
