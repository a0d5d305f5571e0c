"""`PostgresStore`: the scale-out store (DESIGN §8), through an asyncpg pool.

Several gateway processes share one database. Claims lease rows with `FOR UPDATE SKIP LOCKED`,
so two workers never take the same notification while its lease runs. Transactions that change
webhooks lock their rows first, in id order, and only then their notifications; every
transaction takes locks in that order, so concurrent processes queue instead of deadlocking.
`add_events` sends a NOTIFY on commit; `watch_new_work` LISTENs on a connection of its own and
wakes the workers of every process at once.

Every transaction runs through `postgres_retry.atomically`, which runs it again after a
deadlock, a serialization failure or a connection lost before COMMIT; so each transaction here is
a function of its connection (`work`) that may run more than once, and keeps its state inside.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from types import ModuleType
from typing import Any, ClassVar, TypeVar
from uuid import UUID

import asyncpg

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
from gateway.store import postgres_queries as q
from gateway.store import queries as shared
from gateway.store.base import Added, Requeue, WebhookEdit, conflict
from gateway.store.postgres_listen import Listener
from gateway.store.postgres_queries import MIGRATIONS, Params, R, Sql, decode, encode
from gateway.store.postgres_retry import DRIVER_ERRORS, Work, atomically, reading
from gateway.store.sql import SqlStore

__all__ = ["MIGRATIONS", "PostgresStore"]

log = logging.getLogger(__name__)
T = TypeVar("T")
POOL_SIZE = 10  # connections per store (per process), besides the LISTEN one


class PostgresStore(SqlStore):
    """The store on one PostgreSQL database, shared by any number of processes."""

    q: ClassVar[ModuleType] = q

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

    async def migrate(self) -> list[int]:
        """Apply pending migrations (opening the store if needed); return their versions."""
        if self._pool is None:
            await self.open()
            return self.applied_migrations
        return await self._migrate()

    async def _migrate(self) -> list[int]:
        applied = []
        for version, script in q.migration_files():
            if await self._atomically(functools.partial(_apply, version=version, script=script)):
                applied.append(version)
        return applied

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

    async def _write(self, query: Sql | str, params: Params) -> int:
        """Run one statement in its own transaction; return how many rows it changed."""
        return await self._atomically(lambda conn: _execute(conn, query, params))

    async def _write_in_one(self, statements: Sequence[tuple[Sql | str, Params]]) -> list[int]:
        async def work(conn: asyncpg.Connection) -> list[int]:
            return [await _execute(conn, query, params) for query, params in statements]

        return await self._atomically(work)

    async def _insert_all(self, query: Sql | str, rows: Sequence[Params]) -> None:
        await self._atomically(lambda conn: _execute_many(conn, query, rows))

    def _decode_rows(
        self, cls: type[R], rows: Sequence[asyncpg.Record], prefix: str = ""
    ) -> list[R]:
        return [decode(cls, row, prefix) for row in rows]

    def _encode(self, record: Any) -> Params:
        return encode(record)

    def _ids(self, ids: Collection[UUID]) -> list[UUID]:
        return list(ids)

    def _read_uuid(self, value: Any) -> UUID:
        return q.plain_uuid(value)

    def _read_time(self, value: datetime) -> datetime:
        return value

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

    # -- Webhooks -----------------------------------------------------------------------------
    async def edit_webhook(
        self, group_key: UUID, webhook_id: UUID, edit: WebhookEdit, now: datetime
    ) -> Webhook | None:
        """Apply an owner's edit in one transaction; the webhook after it, None if not found,
        Conflict if an expectation failed."""
        ids = {"webhook_id": webhook_id, "group_key": group_key}
        params = {
            **ids,
            **{f"v_{name}": q.to_sql(value) for name, value in edit.values.items()},
            **{f"e_{name}": q.to_sql(value) for name, value in edit.expect.items()},
        }
        query = q.edit_webhook(tuple(edit.values), tuple(edit.expect))

        async def work(conn: asyncpg.Connection) -> Webhook | None:
            rows = await _fetch(conn, query, params)
            if not rows:
                if not await _fetch(conn, shared.WEBHOOK_EXISTS, ids):
                    return None
                raise conflict(webhook_id, sorted(edit.expect))
            hook = decode(Webhook, rows[0])
            if edit.status is not None:
                hook = await _change_status(conn, webhook_id, edit.status, now)
            return hook

        return await self._atomically(work)

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
        params = {"webhook_id": webhook_id, "group_key": group_key, "secret": secret,
                  "previous_until": previous_until, "now": now, "user_id": user_id}  # fmt: skip

        async def work(conn: asyncpg.Connection) -> Webhook | None:
            rows = await _fetch(conn, q.REGENERATE_SECRET, params)
            if not rows:
                return None
            await _webhook_changed(conn, webhook_id)
            return decode(Webhook, rows[0])

        return await self._atomically(work)

    async def expire_webhooks(self, now: datetime) -> list[Webhook]:
        """Make expired Active webhooks Inactive and park their notifications."""

        async def work(conn: asyncpg.Connection) -> list[Webhook]:
            expired = []
            for row in await _fetch(conn, q.EXPIRING, {"now": now}):
                hook = decode(Webhook, row)
                change = lifecycle.expiry(hook, now)
                if change is None:
                    continue
                await _change_status(conn, hook.webhook_id, change, now)
                touched = await _fetch(
                    conn, q.TOUCH_WEBHOOK, {"webhook_id": hook.webhook_id, "now": now}
                )
                expired.append(decode(Webhook, touched[0]))
            return expired

        return await self._atomically(work)

    # -- Events and notifications -------------------------------------------------------------
    async def add_events(
        self, events: Sequence[Event], notifications: Sequence[Notification]
    ) -> Added:
        """Store events and their notifications in one transaction, numbering each webhook's
        notifications from its counter in the order given, pending or parked as the webhook
        is in that transaction; NOTIFY the workers on commit when some are left for them to
        claim."""
        now = notifications[0].created if notifications else utcnow()

        async def work(conn: asyncpg.Connection) -> Added:
            await _execute_many(conn, q.INSERT_EVENT, [encode(e) for e in events])
            sequences, parked = await _reserve(conn, notifications, now)
            rows, given = [], []
            for note in notifications:
                sequence = sequences[note.webhook_id]
                sequences[note.webhook_id] += 1
                given.append(sequence)
                label = f"{note.table_key}.{note.event_type.value}"
                state = _publish_state(note, parked.get(note.webhook_id))
                rows.append(encode(note, sequence=sequence, event_type_label=label, **state))
            await _execute_many(conn, q.INSERT_NOTIFICATION, rows)
            if any(_claimable(row) for row in rows):
                await _notify(conn)
            return Added(given, {w: w not in parked for w in sequences})

        return await self._atomically(work)

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
            "now": now, "limit": limit, "owner": lease_owner, "lease_until": lease_until,
            "exclude": list(exclude_webhooks), "exclude_groups": list(exclude_groups),
        }  # fmt: skip
        rows = await self._atomically(lambda conn: _fetch(conn, q.CLAIM_DUE, params))
        notes = [decode(Notification, row) for row in rows]
        # RETURNING follows no ORDER BY; restore the claim order.
        return sorted(notes, key=lambda n: (n.webhook_id, n.sequence))

    async def record_attempts(self, outcomes: Sequence[AttemptOutcome]) -> Recorded:
        """Write attempt outcomes and lifecycle changes; say how many held their lease, the
        changes made, and which of the webhooks are not Active now."""
        if not outcomes:
            return Recorded(0)
        ids = [o.notification_id for o in outcomes]
        now = utcnow()

        async def work(conn: asyncpg.Connection) -> Recorded:
            webhooks = await _fetch(conn, q.WEBHOOKS_OF, {"notification_ids": ids})
            hooks = await _lock_webhooks(conn, [row[0] for row in webhooks])
            leased = {"notification_ids": ids, "owners": [o.lease_owner for o in outcomes]}
            rows = await _fetch(conn, q.LEASED, leased)
            held = {q.plain_uuid(row[0]): q.plain_uuid(row[1]) for row in rows}
            batch = []
            for outcome in outcomes:
                webhook_id = held.pop(outcome.notification_id, None)
                if webhook_id is not None and webhook_id in hooks:
                    batch.append((outcome, hooks[webhook_id]))
            settled = settle_in_order(batch, now)
            await _write_settled(conn, settled, now)
            return Recorded(len(settled), changes_of(settled), not_active(settled, now))

        return await self._atomically(work)

    async def release_leases(self, lease_owner: str) -> int:
        """Give back every lease this owner holds (graceful shutdown)."""

        async def work(conn: asyncpg.Connection) -> int:
            # Webhooks first, as every other writer locks them, so this cannot deadlock with a
            # worker settling (and parking) notifications of the same webhooks.
            leased = await _fetch(conn, q.LEASED_WEBHOOKS, {"owner": lease_owner})
            await _lock_webhooks(conn, [row[0] for row in leased])
            return await _execute(conn, shared.RELEASE_LEASES, {"owner": lease_owner})

        return await self._atomically(work)

    async def requeue_notification(
        self, group_key: UUID, webhook_id: UUID, notification_id: UUID, now: datetime
    ) -> Requeue:
        """Make a notification that has not succeeded pending and due now, if its webhook is
        Active; what was found."""
        ids = {"group_key": group_key, "webhook_id": webhook_id,
               "notification_id": notification_id}  # fmt: skip

        async def work(conn: asyncpg.Connection) -> Requeue:
            active = await _fetch(conn, q.LOCK_ACTIVE_WEBHOOK, {**ids, "now": now})
            if active and await _execute(conn, q.REQUEUE_NOTIFICATION, {**ids, "now": now}):
                await _notify(conn)
                return Requeue.QUEUED
            row = await _fetch(conn, shared.NOTIFICATION_STATE, ids)
            if not row:
                return Requeue.NOT_FOUND
            if row[0][0] == NotificationState.SUCCEEDED.value:
                return Requeue.SUCCEEDED
            return Requeue.NOT_ACTIVE

        return await self._atomically(work)

    async def check_invariants(self, now: datetime, *, repair: bool) -> dict[str, int]:
        """Count (and with `repair`, set right) notifications that break an invariant. The
        repair locks the webhooks involved first, as every change of their state does, and
        checks each row again as it writes."""
        parked = await self._rows(q.PARKED_OF_ACTIVE, {"now": now})
        stray = await self._rows(q.PENDING_OF_INACTIVE, {"now": now})
        if repair and (parked or stray):
            await self._atomically(functools.partial(_repair, parked=parked, stray=stray, now=now))
        return {"parked_of_active": len(parked), "pending_of_inactive": len(stray)}


async def _write_settled(
    conn: asyncpg.Connection,
    settled: list[tuple[AttemptOutcome, Webhook, Settlement]],
    now: datetime,
) -> None:
    """A settled batch's writes, set-wise in this order, which ends as one-by-one would: a
    webhook that leaves Active never comes back within a batch, so no later outcome needs a
    parked row."""
    attempts, unsent, logged, changes, parks = [], [], [], [], []
    for outcome, hook, done in settled:
        row = {
            "notification_id": outcome.notification_id, "state": done.state.value,
            "next_attempt_at": done.next_attempt_at,
            "process_result_message": done.process_result_message, "now": now,
        }  # fmt: skip
        if done.attempted:
            attempts.append({
                **row, "is_successful": done.is_successful,
                "response_status_code": outcome.response_status_code,
                "request_message": outcome.request_message,
                "response_message": outcome.response_message,
            })  # fmt: skip
        else:
            unsent.append(row)
        if done.logged:
            logged.append({"notification_id": outcome.notification_id})
        if (change := done.webhook) is not None:
            changes.append({
                "webhook_id": hook.webhook_id, "now": now, "failure_count": change.failure_count,
                "status_code": change.status.value, "status_message": change.status_message,
                "status_reason": None if change.reason is None else change.reason.value,
            })  # fmt: skip
            if done.park_webhook:
                parks.append({
                    "webhook_id": hook.webhook_id, "now": now, "keep": outcome.notification_id,
                    "message": lifecycle.parked_message(change.status, change.status_message),
                })  # fmt: skip
    for query, rows in ((q.SETTLE_ATTEMPT, attempts), (q.SETTLE_UNSENT, unsent),
                        (shared.LOG_ATTEMPT, logged), (q.SETTLE_LIFECYCLE, changes),
                        (q.PARK_PENDING, parks)):  # fmt: skip
        await _execute_many(conn, query, rows)


async def _change_status(
    conn: asyncpg.Connection, webhook_id: UUID, change: StatusChange, now: datetime
) -> Webhook:
    """Set a webhook's status, park or release its notifications to match, and tell the
    workers of every process; the webhook after it."""
    rows = await _fetch(conn, q.SET_STATUS, {
        "webhook_id": webhook_id, "status_code": change.status.value,
        "status_message": change.status_message,
        "status_reason": None if change.reason is None else change.reason.value,
        "reset_failures": change.reset_failures,
    })  # fmt: skip
    if change.move is Move.PARK:
        message = lifecycle.parked_message(change.status, change.status_message)
        await _execute(conn, q.PARK_PENDING, {"webhook_id": webhook_id, "now": now,
                                              "message": message, "keep": None})  # fmt: skip
    else:
        params = {"webhook_id": webhook_id, "now": now, "message": lifecycle.RELEASED_MESSAGE}
        if await _execute(conn, shared.RELEASE_PARKED, params):
            await _notify(conn)
    await _webhook_changed(conn, webhook_id)
    return decode(Webhook, rows[0])


async def _repair(
    conn: asyncpg.Connection,
    *,
    parked: list[asyncpg.Record],
    stray: list[asyncpg.Record],
    now: datetime,
) -> None:
    """check_invariants' repairs, with the webhooks involved locked first."""
    hooks = await _lock_webhooks(conn, sorted({row[1] for row in [*parked, *stray]}))
    released = [{"notification_id": row[0], "now": now, "message": lifecycle.RELEASED_MESSAGE}
                for row in parked]  # fmt: skip
    parking = [
        {"notification_id": row[0], "now": now, "message": lifecycle.parked_message(
            *lifecycle.effective_status(hooks[q.plain_uuid(row[1])], now))}
        for row in stray if q.plain_uuid(row[1]) in hooks
    ]  # fmt: skip
    await _execute_many(conn, shared.RELEASE_ONE, released)
    await _execute_many(conn, shared.PARK_ONE, parking)
    if released:
        await _notify(conn)


def _publish_state(note: Notification, parked: str | None) -> dict[str, Any]:
    """A new notification's state fields: pending, or parked saying why; a finished row
    (seeded by tests or imports) as it is."""
    if note.state not in (NotificationState.PENDING, NotificationState.PARKED):
        return {}
    if parked is None:
        return {"state": NotificationState.PENDING.value, "process_result_message": None}
    return {"state": NotificationState.PARKED.value, "lease_owner": None, "lease_until": None,
            "process_result_message": parked}  # fmt: skip


def _claimable(row: Mapping[str, Any]) -> bool:
    """Pending and not leased already (a worker in the publishing process took it)."""
    return row["state"] == NotificationState.PENDING.value and row["lease_owner"] is None


async def _reserve(
    conn: asyncpg.Connection, notifications: Sequence[Notification], now: datetime
) -> tuple[dict[UUID, int], dict[UUID, str]]:
    """Reserve sequence numbers atomically across processes; return each webhook's first, and
    for each webhook that is not Active in this transaction, why its notifications park."""
    counts: dict[tuple[UUID, UUID], int] = {}
    for note in notifications:
        key = (note.webhook_id, note.group_key)
        counts[key] = counts.get(key, 0) + 1
    if not counts:
        return {}, {}
    await _lock_webhooks(conn, [webhook_id for webhook_id, _ in counts])
    params = {
        "webhook_ids": [w for w, _ in counts], "group_keys": [g for _, g in counts],
        "counts": list(counts.values()),
    }  # fmt: skip
    rows = await _fetch(conn, q.RESERVE_SEQUENCES, params)
    last = {(q.plain_uuid(r[0]), q.plain_uuid(r[1])): r[2] for r in rows}
    parked = {}
    for row in rows:
        status, expiration = WebhookStatus(row[3]), row[5]
        if not lifecycle.receives(status, expiration, now):
            shown = lifecycle.shown_status(status, row[4], expiration, now)
            parked[q.plain_uuid(row[0])] = lifecycle.parked_message(*shown)
    first: dict[UUID, int] = {}
    for (webhook_id, group_key), count in counts.items():
        # Keyed by group too: a notification naming another group's webhook is refused.
        if (webhook_id, group_key) not in last:
            raise StoreError(f"no webhook {webhook_id} in group {group_key}")
        first[webhook_id] = last[webhook_id, group_key] - count + 1
    return first, parked


async def _lock_webhooks(
    conn: asyncpg.Connection, webhook_ids: Sequence[UUID]
) -> dict[UUID, Webhook]:
    """Lock these webhook rows in id order; return them as they are now."""
    if not webhook_ids:
        return {}
    rows = await _fetch(conn, q.LOCK_WEBHOOKS, {"webhook_ids": list(webhook_ids)})
    return {hook.webhook_id: hook for hook in (decode(Webhook, row) for row in rows)}


async def _apply(conn: asyncpg.Connection, *, version: int, script: str) -> bool:
    """Apply one migration unless another process did; whether this one did."""
    # One process at a time: the others wait here, then find the version applied.
    await _execute(conn, q.LOCK_MIGRATIONS, {"key": q.MIGRATION_LOCK})
    await conn.execute(q.CREATE_MIGRATIONS)
    if await _fetch(conn, shared.IS_APPLIED, {"version": version}):
        return False
    await conn.execute(script)
    await _execute(conn, shared.RECORD_MIGRATION, {"version": version, "now": utcnow()})
    return True


async def _notify(conn: asyncpg.Connection) -> None:
    """Tell every listening worker that work is due, once this transaction commits."""
    await _execute(conn, q.NOTIFY_NEW_WORK, {"channel": q.NEW_WORK_CHANNEL})


async def _webhook_changed(conn: asyncpg.Connection, webhook_id: UUID) -> None:
    """Tell every listening worker that this webhook changed, once this transaction commits."""
    params = {"channel": q.WEBHOOK_CHANGED_CHANNEL, "webhook_id": str(webhook_id)}
    await _execute(conn, q.NOTIFY_WEBHOOK_CHANGED, params)


async def _fetch(
    conn: asyncpg.Connection, query: Sql | str, params: Params
) -> list[asyncpg.Record]:
    prepared = q.sql(query) if isinstance(query, str) else query
    return list(await conn.fetch(prepared.text, *prepared.args(params)))


async def _execute(conn: asyncpg.Connection, query: Sql | str, params: Params) -> int:
    """Run one statement (a shared one's text is numbered on first use, then cached); return
    how many rows it changed (from the command tag)."""
    prepared = q.sql(query) if isinstance(query, str) else query
    status: str = await conn.execute(prepared.text, *prepared.args(params))
    count = status.rsplit(" ", 1)[-1]
    return int(count) if count.isdigit() else 0


async def _execute_many(conn: asyncpg.Connection, query: Sql | str, rows: Sequence[Params]) -> None:
    prepared = q.sql(query) if isinstance(query, str) else query
    if rows:
        await conn.executemany(prepared.text, [prepared.args(row) for row in rows])
