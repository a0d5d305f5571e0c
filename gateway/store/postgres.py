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
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from gateway import lifecycle
from gateway.errors import StoreError
from gateway.lifecycle import Move, StatusChange
from gateway.models import (
    ApiKey,
    Attempt,
    Event,
    Notification,
    NotificationState,
    Webhook,
    WebhookRule,
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
from gateway.store.base import Added, Page, Query, Requeue, Store, WebhookEdit
from gateway.store.filter_sql import Listing, order_by, where_filter
from gateway.store.memory import conflict
from gateway.store.postgres_listen import Listener
from gateway.store.postgres_queries import MIGRATIONS, Params, R, Sql, decode, encode
from gateway.store.postgres_retry import DRIVER_ERRORS, Work, atomically, reading

__all__ = ["MIGRATIONS", "PostgresStore"]

log = logging.getLogger(__name__)
T = TypeVar("T")
POOL_SIZE = 10  # connections per store (per process), besides the LISTEN one


class PostgresStore(Store):
    """The store on one PostgreSQL database, shared by any number of processes."""

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

    async def _rows(self, query: Sql, params: Params | None = None) -> list[asyncpg.Record]:
        return await reading(self._open(), lambda conn: _fetch(conn, query, params or {}))

    async def _one(self, cls: type[R], query: Sql, params: Params) -> R | None:
        rows = await self._rows(query, params)
        return decode(cls, rows[0]) if rows else None

    async def _write(self, query: Sql, params: Params) -> int:
        """Run one statement in its own transaction; return how many rows it changed."""
        return await self._atomically(lambda conn: _execute(conn, query, params))

    async def _page(
        self, listing: Listing, where: str, params: Params, query: Query
    ) -> tuple[list[asyncpg.Record], int]:
        extra, values = where_filter(listing.columns, query.filter, q.to_sql)
        where, params = where + extra, {**params, **values}
        order = order_by(listing, query.order)
        total = (await self._rows(q.sql(listing.count.format(where=where)), params))[0][0]
        select = listing.select.format(where=where, order=order)
        page = {"limit": query.page_size, "offset": query.page_size * query.page_number}
        return await self._rows(q.sql(select), {**params, **page}), total

    async def ping(self) -> None:
        """Raise StoreError if the database does not answer."""
        await self._rows(q.PING)

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

    # -- API keys -----------------------------------------------------------------------------
    async def add_api_key(self, key: ApiKey) -> None:
        """Store a new key (hashed)."""
        await self._write(q.INSERT_API_KEY, encode(key))

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, revoked or not."""
        return await self._one(ApiKey, q.API_KEY_BY_HASH, {"key_hash": key_hash})

    async def list_api_keys(self) -> list[ApiKey]:
        """Every key, oldest first."""
        return [decode(ApiKey, row) for row in await self._rows(q.LIST_API_KEYS)]

    async def revoke_api_key(self, api_key_id: UUID, when: datetime) -> bool:
        """Mark a key revoked; False if there is no such key."""
        return await self._write(q.REVOKE_API_KEY, {"api_key_id": api_key_id, "revoked": when}) > 0

    async def group_key_for_name(self, group_name: str) -> UUID | None:
        """The group key already used for this group name, if any."""
        rows = await self._rows(q.GROUP_KEY_FOR_NAME, {"group_name": group_name})
        return q.plain_uuid(rows[0][0]) if rows else None

    # -- Webhooks -----------------------------------------------------------------------------
    async def add_webhooks(self, webhooks: Sequence[Webhook]) -> None:
        """Insert all or none."""
        rows = [encode(w) for w in webhooks]
        await self._atomically(lambda conn: _execute_many(conn, q.INSERT_WEBHOOK, rows))

    async def get_webhook(self, group_key: UUID, webhook_id: UUID) -> Webhook | None:
        """One webhook of this group."""
        params = {"group_key": group_key, "webhook_id": webhook_id}
        return await self._one(Webhook, q.GET_WEBHOOK, params)

    async def get_webhook_any_group(self, webhook_id: UUID) -> Webhook | None:
        """One webhook whatever its group (for the delivery worker only)."""
        return await self._one(Webhook, q.GET_WEBHOOK_ANY_GROUP, {"webhook_id": webhook_id})

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
                if not await _fetch(conn, q.WEBHOOK_EXISTS, ids):
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

    async def delete_webhook(self, group_key: UUID, webhook_id: UUID) -> bool:
        """Delete a webhook with its rules and notifications; False if not found."""
        params = {"group_key": group_key, "webhook_id": webhook_id}
        return await self._write(q.DELETE_WEBHOOK, params) > 0

    async def query_webhooks(self, group_key: UUID, query: Query) -> Page[Webhook]:
        """Filter, order and page this group's webhooks."""
        where, params = "group_key = :group_key", {"group_key": group_key}
        rows, total = await self._page(q.WEBHOOKS, where, params, query)
        return Page([decode(Webhook, row) for row in rows], total)

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

    # -- Rules --------------------------------------------------------------------------------
    async def add_rules(self, rules: Sequence[WebhookRule]) -> None:
        """Insert all or none."""
        rows = [encode(r) for r in rules]
        await self._atomically(lambda conn: _execute_many(conn, q.INSERT_RULE, rows))

    async def get_rule(self, group_key: UUID, rule_id: UUID) -> WebhookRule | None:
        """One rule of this group."""
        params = {"group_key": group_key, "webhook_rule_id": rule_id}
        return await self._one(WebhookRule, q.GET_RULE, params)

    async def update_rule(self, rule: WebhookRule) -> bool:
        """Replace the stored rule; False if gone."""
        return await self._write(q.UPDATE_RULE, encode(rule)) > 0

    async def delete_rule(self, group_key: UUID, rule_id: UUID) -> bool:
        """Delete a rule; False if not found."""
        params = {"group_key": group_key, "webhook_rule_id": rule_id}
        return await self._write(q.DELETE_RULE, params) > 0

    async def query_rules(self, group_key: UUID, query: Query) -> Page[WebhookRule]:
        """Filter, order and page this group's rules."""
        where, params = "group_key = :group_key", {"group_key": group_key}
        rows, total = await self._page(q.RULES, where, params, query)
        return Page([decode(WebhookRule, row) for row in rows], total)

    async def rules_for_webhooks(
        self, group_key: UUID, webhook_ids: Sequence[UUID]
    ) -> dict[UUID, list[WebhookRule]]:
        """The rules of each of these webhooks (every id is a key, possibly with no rules)."""
        found: dict[UUID, list[WebhookRule]] = {w: [] for w in webhook_ids}
        params = {"group_key": group_key, "webhook_ids": list(webhook_ids)}
        for row in await self._rows(q.RULES_FOR_WEBHOOKS, params):
            rule = decode(WebhookRule, row)
            found[rule.webhook_id].append(rule)
        return found

    async def matching_rules(
        self, group_key: UUID, table_key: str, event_type: str
    ) -> list[tuple[WebhookRule, Webhook]]:
        """Rules (with their webhooks) for this table and event type, by index lookup."""
        params = {"group_key": group_key, "table_key": table_key, "event_type": event_type}
        rows = await self._rows(q.MATCHING_RULES, params)
        return [(decode(WebhookRule, row), decode(Webhook, row, "w_")) for row in rows]

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
            return await _execute(conn, q.RELEASE_LEASES, {"owner": lease_owner})

        return await self._atomically(work)

    async def get_notification(
        self, group_key: UUID, webhook_id: UUID, notification_id: UUID
    ) -> Notification | None:
        """One history row of this group's webhook."""
        params = {"group_key": group_key, "webhook_id": webhook_id,
                  "notification_id": notification_id}  # fmt: skip
        return await self._one(Notification, q.GET_NOTIFICATION, params)

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
            row = await _fetch(conn, q.NOTIFICATION_STATE, ids)
            if not row:
                return Requeue.NOT_FOUND
            if row[0][0] == NotificationState.SUCCEEDED.value:
                return Requeue.SUCCEEDED
            return Requeue.NOT_ACTIVE

        return await self._atomically(work)

    async def attempts(
        self, group_key: UUID, webhook_id: UUID, notification_ids: Sequence[UUID]
    ) -> dict[UUID, list[Attempt]]:
        """The logged failed attempts of these notifications, in order."""
        found: dict[UUID, list[Attempt]] = {n: [] for n in notification_ids}
        params = {"group_key": group_key, "webhook_id": webhook_id,
                  "ids": list(notification_ids)}  # fmt: skip
        for row in await self._rows(q.ATTEMPTS, params):
            attempt = decode(Attempt, row)
            found[attempt.notification_id].append(attempt)
        return found

    async def query_history(
        self, group_key: UUID, webhook_id: UUID, query: Query
    ) -> Page[Notification]:
        """Filter and page one webhook's history (HISTORY_FIELDS)."""
        where = "group_key = :group_key AND webhook_id = :webhook_id"
        params = {"group_key": group_key, "webhook_id": webhook_id}
        rows, total = await self._page(q.HISTORY, where, params, query)
        return Page([decode(Notification, row) for row in rows], total)

    async def prune_history(self, succeeded_before: datetime) -> int:
        """Delete successful notifications older than this (and events left with none)."""
        params = {"before": succeeded_before}

        async def work(conn: asyncpg.Connection) -> int:
            pruned = await _execute(conn, q.PRUNE_HISTORY, params)
            await _execute(conn, q.PRUNE_EVENTS, params)
            return pruned

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

    async def delivery_stats(self, now: datetime) -> dict[str, float]:
        """Queue depth by state, and for how many seconds the longest-waiting due notification
        has been due."""
        row = (await self._rows(q.DELIVERY_STATS))[0]
        due = row["first_due"]
        overdue = (now - due).total_seconds() if due else 0.0
        stats = {state: float(row[state]) for state in ("pending", "parked", "failed", "succeeded")}
        return {**stats, "overdue_seconds": max(overdue, 0.0)}

    # -- Handshake codes ----------------------------------------------------------------------
    async def take_handshake_nonce(self, nonce: str, expires: datetime) -> bool:
        """Mark the nonce used: True the first time, False after (the insert finds it)."""
        params = {"nonce": nonce, "expires": expires}
        return await self._write(q.TAKE_HANDSHAKE_NONCE, params) == 1

    async def prune_handshake_nonces(self, now: datetime) -> int:
        """Forget the nonces that expired by `now`; return how many."""
        return await self._write(q.PRUNE_HANDSHAKE_NONCES, {"now": now})


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
                        (q.LOG_ATTEMPT, logged), (q.SETTLE_LIFECYCLE, changes),
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
        if await _execute(conn, q.RELEASE_PARKED, params):
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
    await _execute_many(conn, q.RELEASE_ONE, released)
    await _execute_many(conn, q.PARK_ONE, parking)
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
    if await _fetch(conn, q.IS_APPLIED, {"version": version}):
        return False
    await conn.execute(script)
    await _execute(conn, q.RECORD_MIGRATION, {"version": version, "now": utcnow()})
    return True


async def _notify(conn: asyncpg.Connection) -> None:
    """Tell every listening worker that work is due, once this transaction commits."""
    await _execute(conn, q.NOTIFY_NEW_WORK, {"channel": q.NEW_WORK_CHANNEL})


async def _webhook_changed(conn: asyncpg.Connection, webhook_id: UUID) -> None:
    """Tell every listening worker that this webhook changed, once this transaction commits."""
    params = {"channel": q.WEBHOOK_CHANGED_CHANNEL, "webhook_id": str(webhook_id)}
    await _execute(conn, q.NOTIFY_WEBHOOK_CHANGED, params)


async def _fetch(conn: asyncpg.Connection, query: Sql, params: Params) -> list[asyncpg.Record]:
    return list(await conn.fetch(query.text, *query.args(params)))


async def _execute(conn: asyncpg.Connection, query: Sql, params: Params) -> int:
    """Run one statement; return how many rows it changed (from the command tag)."""
    status: str = await conn.execute(query.text, *query.args(params))
    count = status.rsplit(" ", 1)[-1]
    return int(count) if count.isdigit() else 0


async def _execute_many(conn: asyncpg.Connection, query: Sql, rows: Sequence[Params]) -> None:
    if rows:
        await conn.executemany(query.text, [query.args(row) for row in rows])
