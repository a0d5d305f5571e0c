"""`PostgresStore`: the scale-out store (DESIGN §8), through an asyncpg pool.

Several gateway processes share one database. Claims lease rows with `FOR UPDATE SKIP LOCKED`,
so two workers never take the same notification while its lease runs. Transactions that change
webhooks lock their rows first, in id order, and only then their notifications; every
transaction takes locks in that order, so concurrent processes queue instead of deadlocking.
`add_events` sends a NOTIFY on commit; `watch_new_work` LISTENs on a connection of its own and
wakes the workers of every process at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from gateway.errors import StoreError
from gateway.filters import compile_order
from gateway.models import (
    ApiKey,
    Event,
    Notification,
    NotificationState,
    Webhook,
    WebhookRule,
    utcnow,
)
from gateway.outcomes import AttemptOutcome, settle
from gateway.store import postgres_queries as q
from gateway.store.base import Page, Query, Store
from gateway.store.postgres_queries import MIGRATIONS, Listing, Params, R, Sql, decode, encode

__all__ = ["MIGRATIONS", "PostgresStore"]

log = logging.getLogger(__name__)
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
POOL_MAX_SIZE = 10


class PostgresStore(Store):
    """The store on one PostgreSQL database, shared by any number of processes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.applied_migrations: list[int] = []  # by the last open()
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._watchers: list[Callable[[], None]] = []

    # -- Connections and transactions ---------------------------------------------------------
    async def open(self) -> None:
        """Create the pool and apply pending migrations."""
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=POOL_MAX_SIZE)
            self.applied_migrations = await self._migrate()
        except _DRIVER_ERRORS as exc:
            await self.close()
            raise StoreError(f"cannot open PostgreSQL database: {exc}") from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop listening and close the pool."""
        listener, pool, self._listener, self._pool = self._listener, self._pool, None, None
        self._watchers.clear()
        with contextlib.suppress(*_DRIVER_ERRORS):
            if listener is not None:
                listener.remove_termination_listener(_listener_lost)
                await listener.close()
        with contextlib.suppress(*_DRIVER_ERRORS):
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
            async with self._transaction() as conn:
                # One process at a time: the others wait here, then find the version applied.
                await _execute(conn, q.LOCK_MIGRATIONS, {"key": q.MIGRATION_LOCK})
                await conn.execute(q.CREATE_MIGRATIONS)
                if await _fetch(conn, q.IS_APPLIED, {"version": version}):
                    continue
                await conn.execute(script)
                await _execute(conn, q.RECORD_MIGRATION, {"version": version, "now": utcnow()})
            applied.append(version)
        return applied

    def _open(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the store is not open")
        return self._pool

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            async with self._open().acquire() as conn, conn.transaction():
                yield conn
        except _DRIVER_ERRORS as exc:
            raise StoreError(f"PostgreSQL error: {exc}") from exc

    async def _rows(self, query: Sql, params: Params | None = None) -> list[asyncpg.Record]:
        try:
            return list(await self._open().fetch(query.text, *query.args(params or {})))
        except _DRIVER_ERRORS as exc:
            raise StoreError(f"PostgreSQL error: {exc}") from exc

    async def _one(self, cls: type[R], query: Sql, params: Params) -> R | None:
        rows = await self._rows(query, params)
        return decode(cls, rows[0]) if rows else None

    async def _write(self, query: Sql, params: Params) -> int:
        """Run one statement in its own transaction; return how many rows it changed."""
        async with self._transaction() as conn:
            return await _execute(conn, query, params)

    async def _page(
        self, listing: Listing, where: str, params: Params, query: Query
    ) -> tuple[list[asyncpg.Record], int]:
        extra, values = q.where_filter(listing.columns, query.filter)
        where, params = where + extra, {**params, **values}
        order = compile_order(
            query.order or listing.default_order, listing.columns, default=listing.default_order
        )
        total = (await self._rows(q.sql(listing.count.format(where=where)), params))[0][0]
        select = listing.select.format(where=where, order=f"{order}, {listing.tiebreak}")
        page = {"limit": query.page_size, "offset": query.page_size * query.page_number}
        return await self._rows(q.sql(select), {**params, **page}), total

    async def ping(self) -> None:
        """Raise StoreError if the database does not answer."""
        await self._rows(q.PING)

    async def watch_new_work(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever any process commits new due notifications (LISTEN)."""
        self._watchers.append(callback)
        if self._listener is not None:
            return
        self._open()
        try:
            listener = await asyncpg.connect(self.url)
            await listener.add_listener(q.NEW_WORK_CHANNEL, self._notified)
        except _DRIVER_ERRORS as exc:
            # Not fatal: workers still find new work at their next poll.
            log.warning("cannot LISTEN for new work (%s); workers will poll", exc)
            return
        # Losing this connection later costs latency only, for the same reason.
        listener.add_termination_listener(_listener_lost)
        self._listener = listener

    def _notified(self, *_args: Any) -> None:
        for callback in self._watchers:
            callback()

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
        async with self._transaction() as conn:
            await _execute_many(conn, q.INSERT_WEBHOOK, [encode(w) for w in webhooks])

    async def get_webhook(self, group_key: UUID, webhook_id: UUID) -> Webhook | None:
        """One webhook of this group."""
        params = {"group_key": group_key, "webhook_id": webhook_id}
        return await self._one(Webhook, q.GET_WEBHOOK, params)

    async def get_webhook_any_group(self, webhook_id: UUID) -> Webhook | None:
        """One webhook whatever its group (for the delivery worker only)."""
        return await self._one(Webhook, q.GET_WEBHOOK_ANY_GROUP, {"webhook_id": webhook_id})

    async def update_webhook(self, webhook: Webhook, *, release_parked: bool = False) -> bool:
        """Replace the stored webhook, except its failure count (the worker's); with
        `release_parked` the count resets and its parked notifications become due at
        `webhook.modified` (the reactivation time) in the same transaction."""
        async with self._transaction() as conn:
            if not await _execute(conn, q.UPDATE_WEBHOOK, encode(webhook, release=release_parked)):
                return False
            if release_parked:
                params = {"webhook_id": webhook.webhook_id, "now": webhook.modified}
                if await _execute(conn, q.RELEASE_PARKED, params):
                    await _notify(conn)
        return True

    async def delete_webhook(self, group_key: UUID, webhook_id: UUID) -> bool:
        """Delete a webhook with its rules and notifications; False if not found."""
        params = {"group_key": group_key, "webhook_id": webhook_id}
        return await self._write(q.DELETE_WEBHOOK, params) > 0

    async def query_webhooks(self, group_key: UUID, query: Query) -> Page[Webhook]:
        """Filter, order and page this group's webhooks."""
        where, params = "group_key = :group_key", {"group_key": group_key}
        rows, total = await self._page(q.WEBHOOKS, where, params, query)
        return Page([decode(Webhook, row) for row in rows], total)

    async def expire_webhooks(self, now: datetime, message: str) -> int:
        """Make Active webhooks whose expirationDate has passed Inactive; return how many."""
        return await self._write(q.EXPIRE_WEBHOOKS, {"now": now, "message": message})

    # -- Rules --------------------------------------------------------------------------------
    async def add_rules(self, rules: Sequence[WebhookRule]) -> None:
        """Insert all or none."""
        async with self._transaction() as conn:
            await _execute_many(conn, q.INSERT_RULE, [encode(r) for r in rules])

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
    ) -> list[int]:
        """Store events and their notifications in one transaction, numbering each webhook's
        notifications from its counter in the order given (returned); NOTIFY the workers on
        commit when some are left for them to claim."""
        async with self._transaction() as conn:
            await _execute_many(conn, q.INSERT_EVENT, [encode(e) for e in events])
            sequences = await _reserve(conn, notifications)
            rows, given = [], []
            for note in notifications:
                sequence = sequences[note.webhook_id]
                sequences[note.webhook_id] += 1
                given.append(sequence)
                label = f"{note.table_key}.{note.event_type.value}"
                rows.append(encode(note, sequence=sequence, event_type_label=label))
            await _execute_many(conn, q.INSERT_NOTIFICATION, rows)
            if any(_claimable(n) for n in notifications):
                await _notify(conn)
        return given

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
        async with self._transaction() as conn:
            rows = await _fetch(conn, q.CLAIM_DUE, params)
        notes = [decode(Notification, row) for row in rows]
        # RETURNING follows no ORDER BY; restore the claim order.
        return sorted(notes, key=lambda n: (n.webhook_id, n.sequence))

    async def record_attempts(self, outcomes: Sequence[AttemptOutcome]) -> int:
        """Write attempt outcomes and lifecycle changes; return how many held their lease."""
        if not outcomes:
            return 0
        ids = [o.notification_id for o in outcomes]
        async with self._transaction() as conn:
            webhooks = await _fetch(conn, q.WEBHOOKS_OF, {"notification_ids": ids})
            hooks = await _lock_webhooks(conn, [row[0] for row in webhooks])
            leased = {"notification_ids": ids, "owners": [o.lease_owner for o in outcomes]}
            rows = await _fetch(conn, q.LEASED, leased)
            held = {q.plain_uuid(row[0]): q.plain_uuid(row[1]) for row in rows}
            batch = _Settling(hooks, utcnow())
            for outcome in outcomes:
                if (webhook_id := held.pop(outcome.notification_id, None)) is not None:
                    batch.add(outcome, webhook_id)
            await batch.write(conn)
        return len(batch.notes)

    async def release_leases(self, lease_owner: str) -> int:
        """Give back every lease this owner holds (graceful shutdown)."""
        async with self._transaction() as conn:
            # Webhooks first, as every other writer locks them, so this cannot deadlock with a
            # worker settling (and parking) notifications of the same webhooks.
            leased = await _fetch(conn, q.LEASED_WEBHOOKS, {"owner": lease_owner})
            await _lock_webhooks(conn, [row[0] for row in leased])
            return await _execute(conn, q.RELEASE_LEASES, {"owner": lease_owner})

    async def get_notification(
        self, group_key: UUID, webhook_id: UUID, notification_id: UUID
    ) -> Notification | None:
        """One history row of this group's webhook."""
        params = {"group_key": group_key, "webhook_id": webhook_id,
                  "notification_id": notification_id}  # fmt: skip
        return await self._one(Notification, q.GET_NOTIFICATION, params)

    async def requeue_notification(
        self, group_key: UUID, webhook_id: UUID, notification_id: UUID, now: datetime
    ) -> bool:
        """Make a failed or parked notification pending and due now; False if not found."""
        params = {"group_key": group_key, "webhook_id": webhook_id,
                  "notification_id": notification_id, "now": now}  # fmt: skip
        async with self._transaction() as conn:
            if not await _execute(conn, q.REQUEUE_NOTIFICATION, params):
                return False
            await _notify(conn)
        return True

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
        async with self._transaction() as conn:
            pruned = await _execute(conn, q.PRUNE_HISTORY, params)
            await _execute(conn, q.PRUNE_EVENTS, params)
        return pruned

    async def delivery_stats(self, now: datetime) -> dict[str, float]:
        """Queue depth by state, and for how many seconds the longest-waiting due notification
        has been due."""
        row = (await self._rows(q.DELIVERY_STATS))[0]
        due = row["first_due"]
        overdue = (now - due).total_seconds() if due else 0.0
        stats = {state: float(row[state]) for state in ("pending", "parked", "failed", "succeeded")}
        return {**stats, "overdue_seconds": max(overdue, 0.0)}


class _Settling:
    """One batch of outcomes settled in order against the locked webhook rows, as if each were
    written before the next was settled (what the SQLite store does statement by statement)."""

    def __init__(self, hooks: dict[UUID, Webhook], now: datetime) -> None:
        self.hooks = hooks
        self.now = now
        self.notes: dict[UUID, dict[str, Any]] = {}  # notification id -> SETTLE_NOTIFICATION
        self.changed: set[UUID] = set()
        self.parked: set[UUID] = set()

    def add(self, outcome: AttemptOutcome, webhook_id: UUID) -> None:
        """Settle one outcome whose lease held, against its webhook as it stands now."""
        hook = self.hooks[webhook_id]
        done = settle(hook, outcome, self.now)
        if done.park_webhook:
            # Parking reaches the earlier outcomes of this batch that were left pending.
            for row in self.notes.values():
                if row["webhook_id"] == webhook_id and row["state"] == "pending":
                    row["state"] = NotificationState.PARKED.value
            self.parked.add(webhook_id)
        self.notes[outcome.notification_id] = {
            "notification_id": outcome.notification_id, "webhook_id": webhook_id,
            "state": done.state.value, "next_attempt_at": done.next_attempt_at,
            "sent": outcome.request_sent, "is_successful": done.is_successful,
            "response_status_code": outcome.response_status_code,
            "process_result_message": done.process_result_message,
            "request_message": outcome.request_message,
            "response_message": outcome.response_message, "now": self.now,
        }  # fmt: skip
        if (change := done.webhook) is not None:
            moved = change.status is not hook.status_code
            self.hooks[webhook_id] = dataclasses.replace(
                hook, failure_count=change.failure_count, status_code=change.status,
                status_message=change.status_message, modified=self.now if moved else hook.modified,
            )  # fmt: skip
            self.changed.add(webhook_id)

    async def write(self, conn: asyncpg.Connection) -> None:
        """The batch's writes: notifications, then webhooks, then parking the rest."""
        await _execute_many(conn, q.SETTLE_NOTIFICATION, list(self.notes.values()))
        lifecycle = [encode(self.hooks[w]) for w in sorted(self.changed)]
        await _execute_many(conn, q.SETTLE_LIFECYCLE, lifecycle)
        if self.parked:
            params = {"webhook_ids": sorted(self.parked), "settled": list(self.notes),
                      "now": self.now}  # fmt: skip
            await _execute(conn, q.PARK_PENDING, params)


def _claimable(note: Notification) -> bool:
    """Pending and not leased already (a worker in the publishing process took it)."""
    return note.state is NotificationState.PENDING and note.lease_owner is None


async def _reserve(
    conn: asyncpg.Connection, notifications: Sequence[Notification]
) -> dict[UUID, int]:
    """Reserve sequence numbers atomically across processes; return each webhook's first."""
    counts: dict[tuple[UUID, UUID], int] = {}
    for note in notifications:
        key = (note.webhook_id, note.group_key)
        counts[key] = counts.get(key, 0) + 1
    if not counts:
        return {}
    await _lock_webhooks(conn, [webhook_id for webhook_id, _ in counts])
    params = {
        "webhook_ids": [w for w, _ in counts], "group_keys": [g for _, g in counts],
        "counts": list(counts.values()),
    }  # fmt: skip
    rows = await _fetch(conn, q.RESERVE_SEQUENCES, params)
    last = {(q.plain_uuid(r[0]), q.plain_uuid(r[1])): r[2] for r in rows}
    first: dict[UUID, int] = {}
    for (webhook_id, group_key), count in counts.items():
        # Keyed by group too: a notification naming another group's webhook is refused.
        if (webhook_id, group_key) not in last:
            raise StoreError(f"no webhook {webhook_id} in group {group_key}")
        first[webhook_id] = last[webhook_id, group_key] - count + 1
    return first


async def _lock_webhooks(
    conn: asyncpg.Connection, webhook_ids: Sequence[UUID]
) -> dict[UUID, Webhook]:
    """Lock these webhook rows in id order; return them as they are now."""
    if not webhook_ids:
        return {}
    rows = await _fetch(conn, q.LOCK_WEBHOOKS, {"webhook_ids": list(webhook_ids)})
    return {hook.webhook_id: hook for hook in (decode(Webhook, row) for row in rows)}


def _listener_lost(_conn: asyncpg.Connection) -> None:
    log.warning("LISTEN connection lost; workers will poll for new work")


async def _notify(conn: asyncpg.Connection) -> None:
    """Tell every listening worker that work is due, once this transaction commits."""
    await _execute(conn, q.NOTIFY_NEW_WORK, {"channel": q.NEW_WORK_CHANNEL})


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
