"""`SqlStore`, the store (`gateway.store.Store`): every operation the gateway persists, written
once over SQL for both dialects (`sqlite.SqliteStore`, also memory://; `postgres.PostgresStore`).
tests/integration/test_store_contract.py runs against both.

- Every read or write of a tenant's data takes the caller's `group_key`: another group's record is
  simply not found, so existence never leaks across groups.
- Statements are read by name from the dialect's query module, `self.q` (`gateway.store.queries`).
  Filters arrive parsed and compile over whitelisted columns (`filter_sql`), never pasted text.
  Parameters are Python values; the dialect's `codec` makes them its driver's and reads rows back.
- A transaction is a script (`gateway.store.steps`) that each dialect runs its way; PostgreSQL
  may run it again from the start, so a script keeps its state inside. Writers lock webhook rows
  (in id order) before their notifications; SQLite, whose writer holds the whole file, skips locks.
- The delivery path (add_events, claim_due, record_attempts) moves hundreds of rows a call: its
  rows are the dialect's written-out `event_row`, `notification_row`, `settled_row` (written
  by the dialect's `settling`: on PostgreSQL one statement over arrays) and `claimed`, and a
  new notification row is read at the dialect's `ROW_*` keys.
- A Strict webhook's queue (gateway.ordering) is set right by `queues.normalize` in every
  transaction that changes it; an Unordered webhook's rows never meet it, so batches of Unordered
  webhooks run no statement more than they did before deliveryOrder existed.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import functools
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any, ClassVar, Self, TypeVar
from uuid import UUID

from gateway import lifecycle, matching, models, notices, ordering
from gateway.errors import Conflict, LimitReached, StoreError, ValidationError
from gateway.lifecycle import Move, StatusChange, Transition
from gateway.models import (
    ApiKey,
    Attempt,
    Authentication,
    Due,
    Event,
    EventTypeDefinition,
    Notification,
    Recipient,
    Webhook,
    WebhookRule,
    utcnow,
)
from gateway.notices import Notice
from gateway.outcomes import (
    AttemptOutcome,
    Recorded,
    Settlement,
    changes_of,
    failed,
    not_active,
    settle_in_order,
)
from gateway.store import queues
from gateway.store.base import Added, HourOfDeliveries, Page, Query, Requeue, WebhookEdit
from gateway.store.codec import Codec, Kind
from gateway.store.filter_sql import Listing, order_by, where_filter
from gateway.store.queries import NEW_WORK_CHANNEL, WEBHOOK_CHANGED_CHANNEL
from gateway.store.steps import Execute, ExecuteMany, Fetch, Lock, MakeScript, Notify, Script, Step

R = TypeVar(
    "R", ApiKey, Webhook, WebhookRule, Notification, Attempt, Authentication, EventTypeDefinition
)
T = TypeVar("T")
Params = Mapping[str, Any]
_DELIVERY_STATES = ("pending", "parked", "waiting", "failed", "succeeded")
_PENDING, _PARKED = models.NotificationState.PENDING.value, models.NotificationState.PARKED.value
_WAITING = models.NotificationState.WAITING.value
_STRICT = models.DeliveryOrder.STRICT
Held = list[tuple[AttemptOutcome, Webhook]]
Settled = list[tuple[AttemptOutcome, Webhook, Settlement]]


class SqlStore(abc.ABC):
    """Async persistence for keys, webhooks, rules, events and notifications."""

    q: ClassVar[ModuleType]  # the dialect's named statements
    codec: ClassVar[Codec]  # the dialect's values: records to rows and back
    applied_migrations: list[int]  # by the last open()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""

    async def watch_new_work(self, callback: Callable[[], None]) -> None:  # noqa: B027
        """Call `callback` when another process adds due notifications, until `close()`. By
        default a no-op: the API that adds work runs in the worker's process and wakes it."""

    async def watch_webhook_changes(self, callback: Callable[[UUID | None], None]) -> None:  # noqa: B027
        """Call `callback` with a webhook's id (None: any) when another process changes its
        status or secret, until `close()`. By default a no-op: the API of the same process
        tells its worker, and `serve` its worker processes."""

    # -- Primitives, one implementation per dialect ----------------------------------------------
    @abc.abstractmethod
    async def _rows(self, sql: Any, params: Params | None = None) -> Sequence[Any]:
        """The rows one statement reads, outside any write transaction."""

    @abc.abstractmethod
    async def _transact(self, script: MakeScript[T]) -> T:
        """Run a fresh `script()` in one transaction; what it returns."""

    @abc.abstractmethod
    def _ids(self, ids: Collection[UUID]) -> Any:
        """A list of ids as one parameter (`ids IN ...` in the dialect's statements)."""

    @abc.abstractmethod
    def _is_open(self) -> bool:
        """Whether open() has connected (and migrated)."""

    async def _run(self, *steps: Step) -> list[Any]:
        """Run these steps in one transaction; what each answered."""

        def script() -> Script[list[Any]]:
            answers = []
            for step in steps:
                answers.append((yield step))
            return answers

        return await self._transact(script)

    async def _write(self, sql: Any, params: Params) -> int:
        """Run one statement in its own transaction; how many rows it changed."""
        changed: int = (await self._run(Execute(sql, params)))[0]
        return changed

    async def _one(self, cls: type[R], sql: Any, params: Params) -> R | None:
        """The record in the first row a statement reads, if any."""
        rows = await self._rows(sql, params)
        return self.codec.decode_rows(cls, rows[:1])[0] if rows else None

    async def _grouped(
        self, cls: type[R], sql: Any, params: Params, keys: Sequence[UUID], key: str
    ) -> dict[UUID, list[R]]:
        """The records a statement reads, listed under their `key` field (each of `keys`)."""
        found: dict[UUID, list[R]] = {k: [] for k in keys}
        for record in self.codec.decode_rows(cls, await self._rows(sql, params)):
            found[getattr(record, key)].append(record)
        return found

    async def _page(self, cls: type[R], listing: Listing, query: Query, **match: UUID) -> Page[R]:
        """A page of the listing's rows whose columns equal `match`, filtered and ordered as
        `query` says, and how many there are in all."""
        where = " AND ".join(f"{column} = :{column}" for column in match)
        extra, params = where_filter(listing.columns, query.filter, self.codec.to_sql)
        where, params = where + extra, {**match, **params}
        total = (await self._rows(listing.count.format(where=where), params))[0][0]
        select = listing.select.format(where=where, order=order_by(listing, query.order))
        page = {"limit": query.page_size, "offset": query.page_size * query.page_number}
        rows = await self._rows(select, {**params, **page})
        return Page(self.codec.decode_rows(cls, rows), total)

    # -- Migrations and readiness ----------------------------------------------------------------
    async def migrate(self) -> list[int]:
        """Apply pending migrations (opening the store if needed); their versions."""
        if not self._is_open():
            await self.open()
            return self.applied_migrations
        return await self._migrate()

    async def _migrate(self) -> list[int]:
        """Apply pending migrations, each in a transaction of its own; their versions."""
        applied = []
        for version, script in self.q.migration_files():
            if await self._transact(functools.partial(self._apply, version, script)):
                applied.append(version)
        return applied

    def _apply(self, version: int, script: str) -> Script[bool]:
        """Apply one migration unless another process did; whether this one did."""
        yield Lock(self.q.LOCK_MIGRATIONS, {})  # the others wait here, then find it applied
        yield Execute(self.q.CREATE_MIGRATIONS, {})
        if (yield Fetch(self.q.IS_APPLIED, {"version": version})):
            return False
        for statement in self.q.statements(script):
            yield Execute(statement, {})
        yield Execute(self.q.RECORD_MIGRATION, {"version": version, "now": utcnow()})
        return True

    async def ping(self) -> None:
        """Raise StoreError if the database does not answer, or lacks this gateway's schema (a
        database made again empty while the gateway ran): readiness."""
        applied = await self._rows(self.q.APPLIED_VERSIONS)
        latest = self.q.migration_files()[-1][0]
        if not applied or applied[-1][0] < latest:
            raise StoreError(
                f"the database lacks this gateway's schema (migration {latest} is not applied): "
                "run `gateway migrate`, or restart the gateway, which migrates"
            )

    # -- API keys --------------------------------------------------------------------------------
    async def add_api_key(self, key: ApiKey) -> None:
        """Store a new key (hashed)."""
        await self._write(self.q.INSERT_API_KEY, self.codec.encode(key))

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, revoked or not."""
        return await self._one(ApiKey, self.q.API_KEY_BY_HASH, {"key_hash": key_hash})

    async def list_api_keys(self) -> list[ApiKey]:
        """Every key, oldest first."""
        return self.codec.decode_rows(ApiKey, await self._rows(self.q.LIST_API_KEYS))

    async def revoke_api_key(self, api_key_id: UUID, when: datetime) -> bool:
        """Mark a key revoked; False if there is no such key."""
        params = {"api_key_id": api_key_id, "revoked": when}
        return await self._write(self.q.REVOKE_API_KEY, params) > 0

    async def group_key_for_name(self, group_name: str) -> UUID | None:
        """The group key already used for this group name, if any."""
        rows = await self._rows(self.q.GROUP_KEY_FOR_NAME, {"group_name": group_name})
        return self.codec.read(Kind.ID, rows[0][0]) if rows else None

    # -- Webhooks and rules ----------------------------------------------------------------------
    async def add_webhooks(
        self,
        webhooks: Sequence[Webhook],
        *,
        most_per_group: int = 0,
        rules: Sequence[WebhookRule] = (),
    ) -> None:
        """Insert all or none, with these rules of theirs. With `most_per_group`, none if a
        group would then have more webhooks than that (LimitReached): counted in the
        transaction that inserts, so concurrent creates cannot pass the limit together."""
        rows = [self.codec.encode(w) for w in webhooks]
        rule_rows = [self.codec.encode(r) for r in rules]

        def script() -> Script[None]:
            if most_per_group:
                yield from self._within_limit(webhooks, most_per_group)
            for i, hook in enumerate(webhooks):
                field = f"[{i}].authenticationId"
                yield from self._hold_authentication(hook.group_key, hook.authentication_id, field)
            yield ExecuteMany(self.q.INSERT_WEBHOOK, rows, encoded=True)
            yield ExecuteMany(self.q.INSERT_RULE, rule_rows, encoded=True)

        await self._transact(script)

    def _hold_authentication(
        self, group_key: UUID, authentication_id: UUID | None, field: str
    ) -> Script[None]:
        """Refuse, as the API does (gateway.management), a webhook naming an authentication its
        group no longer has: deleted after the API's check, before this write, it would fail
        the foreign key (a StoreError, 503). On PostgreSQL the row is held until commit."""
        if authentication_id is None:
            return
        params = {"group_key": group_key, "authentication_id": authentication_id}
        if not (yield Fetch(self.q.HOLD_AUTHENTICATION, params)):
            raise ValidationError.field(field, f"no authentication {authentication_id}")

    def _within_limit(self, webhooks: Sequence[Webhook], most: int) -> Script[None]:
        """Refuse a group these webhooks would take past `most`. On PostgreSQL each group's
        count is held still first, by a lock on the group (in key order) that every create
        under a limit takes: a group with no webhook has no row to lock. SQLite's writer holds
        the whole file."""
        adding = collections.Counter(w.group_key for w in webhooks)
        for group in sorted(adding):
            params = {"group_key": group}
            yield Lock(self.q.LOCK_GROUP_WEBHOOKS, params)
            have = (yield Fetch(self.q.COUNT_GROUP_WEBHOOKS, params))[0][0]
            if have + adding[group] > most:
                raise LimitReached.webhooks(most, have, adding[group])

    async def count_webhooks(self, group_key: UUID) -> int:
        """How many webhooks this group has, whatever their status."""
        rows = await self._rows(self.q.COUNT_GROUP_WEBHOOKS, {"group_key": group_key})
        count: int = rows[0][0]
        return count

    async def get_webhook(self, group_key: UUID, webhook_id: UUID) -> Webhook | None:
        """One webhook of this group."""
        params = {"group_key": group_key, "webhook_id": webhook_id}
        return await self._one(Webhook, self.q.GET_WEBHOOK, params)

    async def get_webhook_any_group(self, webhook_id: UUID) -> Webhook | None:
        """One webhook whatever its group (for the delivery worker only)."""
        return await self._one(Webhook, self.q.GET_WEBHOOK_ANY_GROUP, {"webhook_id": webhook_id})

    async def get_webhooks_any_group(self, webhook_ids: Collection[UUID]) -> list[Webhook]:
        """The webhooks of these ids that exist, whatever their group, in one read (for the
        delivery worker only)."""
        rows = await self._rows(self.q.WEBHOOKS_ANY_GROUP, {"webhook_ids": self._ids(webhook_ids)})
        return self.codec.decode_rows(Webhook, rows)

    async def delete_webhook(self, group_key: UUID, webhook_id: UUID) -> bool:
        """Delete a webhook with its rules and notifications; False if not found."""
        params = {"group_key": group_key, "webhook_id": webhook_id}
        return await self._write(self.q.DELETE_WEBHOOK, params) > 0

    async def query_webhooks(self, group_key: UUID, query: Query) -> Page[Webhook]:
        """Filter, order and page this group's webhooks."""
        return await self._page(Webhook, self.q.listings().webhooks, query, group_key=group_key)

    async def add_rules(self, rules: Sequence[WebhookRule]) -> None:
        """Insert all or none."""
        rows = [self.codec.encode(r) for r in rules]
        await self._run(ExecuteMany(self.q.INSERT_RULE, rows, encoded=True))

    async def get_rule(self, group_key: UUID, rule_id: UUID) -> WebhookRule | None:
        """One rule of this group."""
        params = {"group_key": group_key, "webhook_rule_id": rule_id}
        return await self._one(WebhookRule, self.q.GET_RULE, params)

    async def update_rule(self, rule: WebhookRule) -> bool:
        """Replace the stored rule; False if gone."""
        return await self._write(self.q.UPDATE_RULE, self.codec.encode(rule)) > 0

    async def delete_rule(self, group_key: UUID, rule_id: UUID) -> bool:
        """Delete a rule; False if not found."""
        params = {"group_key": group_key, "webhook_rule_id": rule_id}
        return await self._write(self.q.DELETE_RULE, params) > 0

    async def query_rules(self, group_key: UUID, query: Query) -> Page[WebhookRule]:
        """Filter, order and page this group's rules."""
        return await self._page(WebhookRule, self.q.listings().rules, query, group_key=group_key)

    async def rules_for_webhooks(
        self, group_key: UUID, webhook_ids: Sequence[UUID]
    ) -> dict[UUID, list[WebhookRule]]:
        """The rules of each of these webhooks (every id is a key, possibly with no rules)."""
        params = {"group_key": group_key, "webhook_ids": self._ids(webhook_ids)}
        sql = self.q.RULES_FOR_WEBHOOKS
        return await self._grouped(WebhookRule, sql, params, webhook_ids, "webhook_id")

    async def matching_rules(
        self, group_key: UUID, table_key: str, event_type: str
    ) -> list[tuple[str | None, Recipient]]:
        """The filter of each rule for this table and event type, with its webhook as
        publishing reads it, by index lookup; in the order the rules were created."""
        params = {"group_key": group_key, "table_key": table_key, "event_type": event_type}
        return self._matched(await self._rows(self.q.MATCHING_RULES, params))

    def _matched(self, rows: Sequence[Any]) -> list[tuple[str | None, Recipient]]:
        """MATCHING_RULES's rows as (filter, recipient)."""
        filters = [row[0] for row in rows]
        return list(zip(filters, self.codec.decode_rows(Recipient, rows), strict=True))

    # -- Authentications --------------------------------------------------------------------------
    async def add_authentications(self, authentications: Sequence[Authentication]) -> None:
        """Insert all or none."""
        rows = [self.codec.encode(a) for a in authentications]
        await self._run(ExecuteMany(self.q.INSERT_AUTHENTICATION, rows, encoded=True))

    async def get_authentication(
        self, group_key: UUID, authentication_id: UUID
    ) -> Authentication | None:
        """One authentication of this group."""
        params = {"group_key": group_key, "authentication_id": authentication_id}
        return await self._one(Authentication, self.q.GET_AUTHENTICATION, params)

    async def update_authentication(self, authentication: Authentication) -> list[UUID] | None:
        """Replace the stored authentication and tell every process that the webhooks using it
        changed (they send with it from their next request); their ids, or None if it is gone."""
        ids = {"group_key": authentication.group_key,
               "authentication_id": authentication.authentication_id}  # fmt: skip
        row = self.codec.encode(authentication)

        def script() -> Script[list[UUID] | None]:
            if not (yield Execute(self.q.UPDATE_AUTHENTICATION, row)):
                return None
            users = yield Fetch(self.q.AUTHENTICATION_USERS, ids)
            webhook_ids = [self.codec.read(Kind.ID, user[0]) for user in users]
            for webhook_id in webhook_ids:
                yield Notify(WEBHOOK_CHANGED_CHANNEL, str(webhook_id))
            return webhook_ids

        return await self._transact(script)

    async def delete_authentication(self, group_key: UUID, authentication_id: UUID) -> bool:
        """Delete an authentication no webhook uses; False if not found, `Conflict` naming the
        webhooks that use it (then nothing is deleted)."""
        ids = {"group_key": group_key, "authentication_id": authentication_id}

        def script() -> Script[bool]:
            # Held first (PostgreSQL), so a webhook naming it that committed meanwhile is among
            # the users read next, rather than failing the DELETE's foreign key (a 503).
            yield Lock(self.q.LOCK_AUTHENTICATION, ids)
            users = yield Fetch(self.q.AUTHENTICATION_USERS, ids)
            if users:
                raise Conflict(_in_use(authentication_id, users))
            deleted = yield Execute(self.q.DELETE_AUTHENTICATION, ids)
            return bool(deleted)

        return await self._transact(script)

    async def query_authentications(self, group_key: UUID, query: Query) -> Page[Authentication]:
        """Filter, order and page this group's authentications."""
        listing = self.q.listings().authentications
        return await self._page(Authentication, listing, query, group_key=group_key)

    # -- The event-type catalogue ---------------------------------------------------------------
    async def add_event_types(self, declared: Sequence[EventTypeDefinition]) -> None:
        """Insert all or none; Conflict naming the first (group, table, event type) that is
        declared already, or twice in `declared`."""
        rows = [self.codec.encode(d) for d in declared]

        def script() -> Script[None]:
            for index, (row, entry) in enumerate(zip(rows, declared, strict=True)):
                if not (yield Execute(self.q.INSERT_EVENT_TYPE, row)):
                    label = f"{entry.table_key}.{entry.event_type.value}"
                    message = f"event type {label} is declared already"
                    raise Conflict(message, errors={f"[{index}].eventType": [message]})

        await self._transact(script)

    async def get_event_type(
        self, group_key: UUID, event_type_id: UUID
    ) -> EventTypeDefinition | None:
        """One event type of this group."""
        params = {"group_key": group_key, "event_type_id": event_type_id}
        return await self._one(EventTypeDefinition, self.q.GET_EVENT_TYPE, params)

    async def update_event_type(self, changed: EventTypeDefinition) -> bool:
        """Write what a PATCH may change (never its table and event type); False if gone."""
        return await self._write(self.q.UPDATE_EVENT_TYPE, self.codec.encode(changed)) > 0

    async def delete_event_type(self, group_key: UUID, event_type_id: UUID) -> bool:
        """Delete an event type; False if not found."""
        params = {"group_key": group_key, "event_type_id": event_type_id}
        return await self._write(self.q.DELETE_EVENT_TYPE, params) > 0

    async def query_event_types(self, group_key: UUID, query: Query) -> Page[EventTypeDefinition]:
        """Filter, order and page this group's event types."""
        listing = self.q.listings().event_types
        return await self._page(EventTypeDefinition, listing, query, group_key=group_key)

    async def event_types_of_group(self, group_key: UUID) -> list[EventTypeDefinition]:
        """Every event type of this group (the catalogue the gateway enforces)."""
        rows = await self._rows(self.q.EVENT_TYPES_OF_GROUP, {"group_key": group_key})
        return self.codec.decode_rows(EventTypeDefinition, rows)

    # -- History and housekeeping ----------------------------------------------------------------
    async def get_notification(
        self, group_key: UUID, webhook_id: UUID, notification_id: UUID
    ) -> Notification | None:
        """One history row of this group's webhook."""
        params = {"group_key": group_key, "webhook_id": webhook_id,
                  "notification_id": notification_id}  # fmt: skip
        return await self._one(Notification, self.q.GET_NOTIFICATION, params)

    async def attempts(
        self, group_key: UUID, webhook_id: UUID, notification_ids: Sequence[UUID]
    ) -> dict[UUID, list[Attempt]]:
        """The logged failed attempts of these notifications of this group's webhook, in order
        (every id is a key)."""
        params = {"group_key": group_key, "webhook_id": webhook_id,
                  "ids": self._ids(notification_ids)}  # fmt: skip
        sql = self.q.ATTEMPTS
        return await self._grouped(Attempt, sql, params, notification_ids, "notification_id")

    async def query_history(
        self, group_key: UUID, webhook_id: UUID, query: Query
    ) -> Page[Notification]:
        """Filter, order and page one webhook's history."""
        history = self.q.listings().history
        return await self._page(
            Notification, history, query, group_key=group_key, webhook_id=webhook_id
        )

    async def delivery_activity(
        self, group_key: UUID, webhook_id: UUID, since: datetime
    ) -> list[HourOfDeliveries]:
        """This group's webhook's attempts since `since`, by UTC hour (only hours with one),
        oldest first: delivered, failed, and the receiver's mean and longest answer time."""
        params = {"group_key": group_key, "webhook_id": webhook_id, "since": since}
        rows = await self._rows(self.q.DELIVERY_ACTIVITY, params)
        return [_hour(row) for row in rows]

    async def record_test_send(self, event: Event, note: Notification) -> bool:
        """Keep a test send in its webhook's history, as sent (a finished row, its event
        beside it) and taking no sequence number: the partner's count of real notifications
        has no gap. False if its webhook is gone."""
        ids = {"group_key": note.group_key, "webhook_id": note.webhook_id}
        event_row, note_row = self.q.event_row(event), self.q.notification_row(note)

        def script() -> Script[bool]:
            if not (yield Fetch(self.q.GET_WEBHOOK, ids)):
                return False
            yield ExecuteMany(self.q.INSERT_EVENT, [event_row], encoded=True)
            yield ExecuteMany(self.q.INSERT_NOTIFICATION, [note_row], encoded=True)
            return True

        return await self._transact(script)

    async def prune_history(self, succeeded_before: datetime) -> int:
        """Delete successful notifications older than this (and events left with none); how many."""
        params = {"before": succeeded_before}
        pruned, _ = await self._run(
            Execute(self.q.PRUNE_HISTORY, params), Execute(self.q.PRUNE_EVENTS, params)
        )
        return int(pruned)

    async def delivery_stats(self, now: datetime) -> dict[str, float]:
        """Queue depth by state, and for how many seconds the longest-waiting due notification
        has been due."""
        row = (await self._rows(self.q.DELIVERY_STATS))[0]
        due = row["first_due"]
        overdue = (now - self.codec.read(Kind.TIME, due)).total_seconds() if due else 0.0
        stats = {state: float(row[state]) for state in _DELIVERY_STATES}
        return {**stats, "overdue_seconds": max(overdue, 0.0)}

    async def take_handshake_nonce(self, nonce: str, expires: datetime) -> bool:
        """Mark the nonce of an accepted handshake code used: True the first time, False ever
        after, in every process sharing the store (of two takes at once, one insert wins). Kept
        at least until `expires`, when its code can no longer pass anyway."""
        params = {"nonce": nonce, "expires": expires}
        return await self._write(self.q.TAKE_HANDSHAKE_NONCE, params) == 1

    async def prune_handshake_nonces(self, now: datetime) -> int:
        """Forget the nonces that expired by `now` (housekeeping); how many."""
        return await self._write(self.q.PRUNE_HANDSHAKE_NONCES, {"now": now})

    # -- Portal revocations ----------------------------------------------------------------------
    async def revoke_portal(
        self, subject: UUID, revoked_before: datetime, expires: datetime
    ) -> None:
        """Refuse every portal session and link of `subject` (a link's id, or a group key)
        issued before `revoked_before`, until `expires` (when none of them can be open any
        more); of two revocations of one subject, the later of each time stands."""
        params = {"subject": subject, "revoked_before": revoked_before, "expires": expires}
        await self._write(self.q.REVOKE_PORTAL, params)

    async def portal_revoked_before(self, link_id: UUID, group_key: UUID) -> datetime | None:
        """Before when the sessions of this link, or of this group, are revoked (None: never)."""
        params = {"link_id": link_id, "group_key": group_key}
        found = (await self._rows(self.q.PORTAL_REVOKED_BEFORE, params))[0][0]
        return None if found is None else self.codec.read(Kind.TIME, found)

    async def prune_portal_revocations(self, now: datetime) -> int:
        """Forget the revocations that expired by `now` (housekeeping); how many."""
        return await self._write(self.q.PRUNE_PORTAL_REVOCATIONS, {"now": now})

    # -- Lifecycle transactions ------------------------------------------------------------------
    async def edit_webhook(
        self, group_key: UUID, webhook_id: UUID, edit: WebhookEdit, now: datetime
    ) -> Webhook | None:
        """Apply an owner's edit in one transaction (see WebhookEdit); the webhook after it,
        None if there is no such webhook, `Conflict` if an expectation failed."""
        ids = {"webhook_id": webhook_id, "group_key": group_key}
        to_sql = self.codec.to_sql
        params = {**ids, **{f"v_{name}": to_sql(v) for name, v in edit.values.items()},
                  **{f"e_{name}": to_sql(v) for name, v in edit.expect.items()}}  # fmt: skip
        query = self.q.edit_webhook(tuple(edit.values), tuple(edit.expect))

        def script() -> Script[tuple[Webhook | None, list[Notice]]]:
            if edit.status is not None:
                yield from self._lock_notice_subscribers([webhook_id])
            if "authentication_id" in edit.values:
                named = edit.values["authentication_id"]
                yield from self._hold_authentication(group_key, named, "authenticationId")
            order = None  # the deliveryOrder before the edit, when it may change it
            if "delivery_order" in edit.values:
                found = yield from self._lock_webhooks([webhook_id])
                order = found[webhook_id].delivery_order if webhook_id in found else None
            rows = yield Fetch(query, params)
            if not rows:
                if not (yield Fetch(self.q.WEBHOOK_EXISTS, ids)):
                    return None, []
                fields = ", ".join(sorted(edit.expect))
                raise Conflict(
                    f"webhook {webhook_id} changed while this request was handled ({fields}); "
                    "send the request again"
                )
            edited = self.codec.decode_rows(Webhook, rows)[0]
            notified: list[Notice] = []
            if edit.status is not None:
                edited, notified = yield from self._change_status(edited, edit.status, now)
            if order is not None and order is not edited.delivery_order:
                yield from queues.switch_order(self.q, edited, now)
                # Every process's workers give back what they hold of it unsent (Worker.
                # webhook_changed): it goes out by the new order, not as claimed under the old.
                yield Notify(WEBHOOK_CHANGED_CHANNEL, str(edited.webhook_id))
            return edited, notified

        changed, notified = await self._transact(script)
        notices.count(n.kind for n in notified)
        return changed

    def _change_status(
        self, before: Webhook, change: StatusChange, now: datetime
    ) -> Script[tuple[Webhook, list[Notice]]]:
        """Set a webhook's status (it was `before`), publish the lifecycle notice of the change
        and tell the workers of every process; the webhook after it, and the notice. Leaving
        Active parks its pending notifications (leases kept: sends in flight are still
        recorded); becoming Active releases the parked ones (due `now`, leases cleared). A
        Strict webhook's waiting ones stay waiting: only its head moves (leases kept both
        ways), its queue set right after (gateway.ordering)."""
        webhook_id = before.webhook_id
        reset = {"webhook_id": webhook_id, "reset_failures": change.reset_failures,
                 "window_start": now if change.reset_failures else None}  # fmt: skip
        rows = yield Fetch(self.q.SET_STATUS, {**reset, **_status(change)})
        after = self.codec.decode_rows(Webhook, rows)[0]
        strict = after.delivery_order is _STRICT
        if change.move is Move.PARK:
            yield Execute(self.q.PARK_PENDING, _parking(webhook_id, change, now))
        else:
            params = {"webhook_id": webhook_id, "now": now, "message": lifecycle.RELEASED_MESSAGE}
            release = self.q.RELEASE_HEAD if strict else self.q.RELEASE_PARKED
            if (yield Execute(release, params)):
                yield Notify(NEW_WORK_CHANNEL)
        if strict:
            yield from queues.normalize(self.q, {webhook_id: queues.why_parked(after, now)}, now)
        yield Notify(WEBHOOK_CHANGED_CHANNEL, str(webhook_id))
        notified = notices.about(before, after, now)
        yield from self._publish_notices(notified)
        return after, notified

    def _publish_notices(self, notified: Sequence[Notice]) -> Script[None]:
        """Publish lifecycle notices into their webhooks' groups, in this transaction: each an
        event, with a notification for every other webhook whose rules take it (pending, or
        parked for one that is not Active). A notice nobody takes stores nothing.

        The owner's edits and the settlements lock the subscribers with the webhooks that
        change, in one id order, before either (`_lock_notice_subscribers`). The periodic
        sweeps (expiry, re-verification) lock them afterwards: on PostgreSQL such a
        transaction may deadlock with a publish to the group, and the server's choice of loser
        runs again (postgres_retry); they run once a minute."""
        subscribers: dict[UUID, list[matching.Subscriber]] = {}
        events, notes = [], []
        for notice in notified:
            group = notice.webhook.group_key
            if group not in subscribers:
                params = {"group_key": group, "table_key": notices.TABLE_KEY,
                          "event_type": notices.EVENT_TYPE.value}  # fmt: skip
                rows = yield Fetch(self.q.MATCHING_RULES, params)
                subscribers[group] = matching.subscribers(self._matched(rows))
            event, its_notes = notices.publication(notice, subscribers[group])
            if its_notes:
                events.append(event)
                notes.extend(its_notes)
        if notes:
            event_rows = [self.q.event_row(e) for e in events]
            note_rows = [self.q.notification_row(n) for n in notes]
            yield from self._add_events(event_rows, note_rows, notes[0].created)

    async def regenerate_secret(
        self,
        group_key: UUID,
        webhook_id: UUID,
        secret: str,
        previous_until: datetime,
        now: datetime,
        user_id: UUID,
        key_pair: tuple[str, str] | None = None,
    ) -> Webhook | None:
        """Make `secret` the client secret and the current one the previous secret, signing
        until `previous_until`, in one statement (two at once chain, neither is lost); a
        webhook with an Ed25519 key pair takes `key_pair` (private, public) likewise. The
        webhook after it, or None."""
        private, public = key_pair or (None, None)
        params = {"webhook_id": webhook_id, "group_key": group_key, "secret": secret,
                  "previous_until": previous_until, "now": now, "user_id": user_id,
                  "signing_key": private, "public_key": public}  # fmt: skip

        def script() -> Script[Webhook | None]:
            rows = yield Fetch(self.q.REGENERATE_SECRET, params)
            if not rows:
                return None
            yield Notify(WEBHOOK_CHANGED_CHANNEL, str(webhook_id))
            return self.codec.decode_rows(Webhook, rows)[0]

        return await self._transact(script)

    async def expire_webhooks(self, now: datetime) -> list[Webhook]:
        """Make Active webhooks whose expirationDate has passed Inactive (`lifecycle.expiry`,
        as readers already see them) and park their pending notifications, in one
        transaction; them as they are now."""

        def script() -> Script[tuple[list[Webhook], list[Notice]]]:
            expired, notified = [], []
            rows = yield Fetch(self.q.EXPIRING, {"now": now})
            for hook in self.codec.decode_rows(Webhook, rows):
                change = lifecycle.expiry(hook, now)
                if change is None:  # the SQL comparison and the rule disagree: trust the rule
                    continue
                _, its_notices = yield from self._change_status(hook, change, now)
                notified.extend(its_notices)
                params = {"webhook_id": hook.webhook_id, "now": now}
                touched = yield Fetch(self.q.TOUCH_WEBHOOK, params)
                expired.extend(self.codec.decode_rows(Webhook, touched))
            return expired, notified

        expired, notified = await self._transact(script)
        notices.count(n.kind for n in notified)
        return expired

    async def warn_expiring(self, now: datetime, horizon: datetime) -> list[Webhook]:
        """Issue an `expiring` notice for each Active webhook that expires after `now` and by
        `horizon`, once per expiry date (the date warned of is kept with it), in one
        transaction; those warned now."""

        def script() -> Script[list[Webhook]]:
            params = {"now": now, "horizon": horizon}
            warned = []
            candidates = yield Fetch(self.q.EXPIRY_WARNINGS, params)
            for hook in self.codec.decode_rows(Webhook, candidates):
                rows = yield Fetch(self.q.WARN_EXPIRY, {**params, "webhook_id": hook.webhook_id})
                warned.extend(self.codec.decode_rows(Webhook, rows))
            yield from self._publish_notices(
                [Notice(notices.Kind.EXPIRING, hook, now) for hook in warned]
            )
            return warned

        warned = await self._transact(script)
        notices.count(notices.Kind.EXPIRING for _ in warned)
        return warned

    # -- Re-verification --------------------------------------------------------------------------
    async def unscheduled_reverifications(self, latest: datetime, most: int) -> list[UUID]:
        """Up to `most` Active webhooks with no re-verification due, or one due after `latest`
        (the interval was shortened)."""
        rows = await self._rows(self.q.UNSCHEDULED, {"latest": latest, "most": most})
        return [self.codec.read(Kind.ID, row[0]) for row in rows]

    async def schedule_reverifications(
        self, due: Mapping[UUID, datetime], latest: datetime
    ) -> None:
        """Give these webhooks their next re-verification, unless one was given meanwhile."""
        rows = [{"webhook_id": webhook_id, "due": when, "latest": latest}
                for webhook_id, when in due.items()]  # fmt: skip
        await self._run(ExecuteMany(self.q.SCHEDULE_REVERIFY, rows))

    async def due_for_reverification(self, now: datetime, most: int) -> list[Webhook]:
        """Up to `most` Active webhooks whose re-verification is due by `now`, longest-due first."""
        rows = await self._rows(self.q.REVERIFY_DUE, {"now": now, "most": most})
        return self.codec.decode_rows(Webhook, rows)

    async def record_verified(self, hook: Webhook, now: datetime, due: datetime) -> bool:
        """Its callback passed re-verification at `now`: next due at `due`. Only while the
        webhook (`hook`, as the sweep read it) is Active, due as then, with the callback
        verified; whether it was."""
        params = {"webhook_id": hook.webhook_id, "now": now, "due": due,
                  "reverify_due": hook.reverify_due, "callback_url": hook.callback_url,
                  "callback_http_method": hook.callback_http_method.value}  # fmt: skip
        return await self._write(self.q.VERIFIED, params) > 0

    async def fail_verification(
        self, hook: Webhook, change: StatusChange, now: datetime
    ) -> Webhook | None:
        """Its callback failed re-verification: make it `change` (Errored) and park its
        pending notifications, with its `verificationFailed` notice, in one transaction; only
        while it (`hook`, as the sweep read it) is Active, not expired, due as then (no handshake
        of its owner's passed meanwhile), with the callback that failed. The webhook after it,
        or None if it was not so."""
        params = {"webhook_id": hook.webhook_id, "now": now, "callback_url": hook.callback_url,
                  "callback_http_method": hook.callback_http_method.value,
                  "reverify_due": hook.reverify_due,
                  **_status(change)}  # fmt: skip

        def script() -> Script[tuple[Webhook | None, list[Notice]]]:
            rows = yield Fetch(self.q.FAIL_VERIFICATION, params)
            if not rows:
                return None, []
            yield Execute(self.q.PARK_PENDING, _parking(hook.webhook_id, change, now))
            yield Notify(WEBHOOK_CHANGED_CHANNEL, str(hook.webhook_id))
            after = self.codec.decode_rows(Webhook, rows)[0]
            if after.delivery_order is _STRICT:
                yield from queues.normalize(
                    self.q, {hook.webhook_id: queues.why_parked(after, now)}, now
                )
            notified = notices.about(hook, after, now)
            yield from self._publish_notices(notified)
            return after, notified

        after, notified = await self._transact(script)
        notices.count(n.kind for n in notified)
        return after

    async def release_leases(self, lease_owner: str, now: datetime | None = None) -> int:
        """Give back every lease this owner holds (graceful shutdown), as of `now` (by default
        the current time)."""
        params = {"owner": lease_owner}
        at = now or utcnow()

        def script() -> Script[int]:
            # Their webhooks first, as every other writer locks them: no deadlock with a worker
            # settling (and parking) notifications of the same webhooks.
            yield Lock(self.q.LOCK_LEASED_WEBHOOKS, params)
            released = yield Fetch(self.q.RELEASE_LEASES, params)
            # A Strict webhook that had several in flight (since it became Strict) keeps one.
            hooks = yield from self._lock_webhooks({row[0] for row in released})
            if strict := queues.of_webhooks(hooks.values(), at):
                yield from queues.normalize(self.q, strict, at)
            return len(released)

        return await self._transact(script)

    async def requeue_notification(
        self, group_key: UUID, webhook_id: UUID, notification_id: UUID, now: datetime
    ) -> Requeue:
        """Make a notification that has not succeeded pending and due now, in one statement
        guarded by its webhook being Active (and not expired); what was found. Nothing of its
        recorded attempt changes. One in flight (leased) is left as it is, being sent already.
        A Strict webhook's joins its queue in its sequence place instead (gateway.ordering)."""
        ids = {"group_key": group_key, "webhook_id": webhook_id,
               "notification_id": notification_id}  # fmt: skip
        params = {**ids, "now": now}

        def script() -> Script[Requeue]:
            # Locked as every writer of its notifications locks it: a concurrent pause waits.
            hook = (yield from self._lock_webhooks([webhook_id])).get(webhook_id)
            strict = hook is not None and hook.delivery_order is _STRICT
            active = hook is not None and lifecycle.is_active(hook, now)
            if strict:  # it joins the queue, in its place (gateway.ordering)
                waits = {**params, "message": ordering.WAITING_MESSAGE}
                if (yield Execute(self.q.REQUEUE_IN_ORDER, waits)):
                    yield from queues.normalize(self.q, {webhook_id: None}, now)
                    return Requeue.QUEUED
            elif (yield Execute(self.q.REQUEUE_NOTIFICATION, params)):
                yield Notify(NEW_WORK_CHANNEL)
                return Requeue.QUEUED
            rows = yield Fetch(self.q.NOTIFICATION_STATE, ids)
            if not rows:
                return Requeue.NOT_FOUND
            if rows[0][1]:
                return Requeue.TEST
            if rows[0][0] == models.NotificationState.SUCCEEDED.value:
                return Requeue.SUCCEEDED
            if active and rows[0][0] == _PENDING:
                return Requeue.QUEUED  # in flight already: its send settles it
            return Requeue.NOT_ACTIVE

        return await self._transact(script)

    async def check_invariants(self, now: datetime, *, repair: bool) -> dict[str, int]:
        """Count the notifications that break an invariant of `lifecycle` or of `ordering`
        (base.INVARIANTS names them) and, with `repair`, set them right. They are read outside
        a transaction; the repair locks their webhooks first, as every change of their state
        does, and checks each row again as it writes (a queue is set right whole, as it is
        then)."""
        parked = await self._rows(self.q.PARKED_OF_ACTIVE, {"now": now})
        stray = await self._rows(self.q.PENDING_OF_INACTIVE, {"now": now})
        strict = await self._rows(self.q.STRICT_QUEUES, {"now": now})
        headless, extra, broken = queues.broken(strict)
        unordered = await self._rows(self.q.WAITING_OF_UNORDERED)
        broken |= {row[0] for row in unordered}
        if repair and (parked or stray or broken):
            await self._transact(functools.partial(self._repair, parked, stray, broken, now))
        return {"parked_of_active": len(parked), "pending_of_inactive": len(stray),
                "queue_without_head": headless, "queue_extra_heads": extra,
                "waiting_of_unordered": sum(int(row[1]) for row in unordered)}  # fmt: skip

    def _repair(
        self, parked: Sequence[Any], stray: Sequence[Any], broken: Collection[Any], now: datetime
    ) -> Script[None]:
        """Release the parked rows of Active webhooks, park the pending rows of the others, and
        set right the queues of these webhooks as their deliveryOrder is now: a Strict one's
        normalized, an Unordered one's waiting rows pending (or parked)."""
        webhook_ids = {self.codec.read(Kind.ID, row[1]) for row in [*parked, *stray]}
        webhook_ids |= {self.codec.read(Kind.ID, webhook_id) for webhook_id in broken}
        hooks = yield from self._lock_webhooks(webhook_ids)
        released = [{"notification_id": row[0], "now": now,
                     "message": lifecycle.RELEASED_MESSAGE} for row in parked]  # fmt: skip
        parking = []
        for row in stray:
            if (hook := hooks.get(self.codec.read(Kind.ID, row[1]))) is not None:
                why = lifecycle.parked_message(*lifecycle.effective_status(hook, now))
                parking.append({"notification_id": row[0], "now": now, "message": why})
        yield ExecuteMany(self.q.RELEASE_ONE, released)
        yield ExecuteMany(self.q.PARK_ONE, parking)
        if released:
            yield Notify(NEW_WORK_CHANNEL)
        found = [
            hooks[key] for key in (self.codec.read(Kind.ID, w) for w in broken) if key in hooks
        ]
        for hook in found:  # (one deleted meanwhile is not found)
            if hook.delivery_order is not _STRICT:
                yield from queues.switch_order(self.q, hook, now)  # its waiting rows leave
        yield from queues.normalize(self.q, queues.of_webhooks(found, now), now)

    def _lock_notice_subscribers(self, webhook_ids: Collection[Any]) -> Script[None]:
        """Before a change of these webhooks' status, lock them and the lifecycle-notice
        subscribers of their groups in id order (PostgreSQL; LOCK_NOTICE_SUBSCRIBERS says why)."""
        params = {"webhook_ids": self._ids(webhook_ids), "table_key": notices.TABLE_KEY,
                  "event_type": notices.EVENT_TYPE.value}  # fmt: skip
        yield Lock(self.q.LOCK_NOTICE_SUBSCRIBERS, params)

    def _lock_webhooks(self, webhook_ids: Collection[Any]) -> Script[dict[UUID, Webhook]]:
        """Lock these webhook rows (on PostgreSQL, in id order); them as they are now."""
        if not webhook_ids:
            return {}
        rows = yield Fetch(self.q.LOCK_WEBHOOKS, {"webhook_ids": self._ids(webhook_ids)})
        return {hook.webhook_id: hook for hook in self.codec.decode_rows(Webhook, rows)}

    # -- The delivery path -----------------------------------------------------------------------
    async def add_events(
        self, events: Sequence[Event], notifications: Sequence[Notification]
    ) -> Added:
        """Store events and their notifications in one transaction; tell the workers when some
        are left for them to claim.

        Each notification's `sequence` (the one passed is ignored) comes from its webhook's
        counter, in the order given. It waits pending if its webhook is Active (and not
        expired) in this transaction, else parked with the reason, not leased. A row in a
        finished state (seeded by tests or imports) is stored as it is. A pending one may come
        leased already (a worker in this process took it): claims leave it alone. A Strict
        webhook's join its queue (gateway.ordering), never leased: waiting, but the lowest
        when the queue has no head.
        """
        # Encoded before the transaction: another request's rows can be written meanwhile.
        event_rows = [self.q.event_row(e) for e in events]
        note_rows = [self.q.notification_row(n) for n in notifications]
        now = notifications[0].created if notifications else utcnow()
        script = functools.partial(self._add_events, event_rows, note_rows, now)
        sequences, active, strict, due, gone = await self._transact(script)
        # Each webhook once, by its value as encoded (on SQLite a str, which hashes in C).
        at = self.q.ROW_WEBHOOK
        ids = {row[at]: note.webhook_id for row, note in zip(note_rows, notifications, strict=True)}
        queued = frozenset(ids[key] for key in strict)
        active_by_id = {webhook_id: active.get(key, False) for key, webhook_id in ids.items()}
        return Added(sequences, active_by_id, queued, due, frozenset(ids[key] for key in gone))

    def _add_events(
        self, event_rows: list[Any], note_rows: list[Any], now: datetime
    ) -> Script[tuple[list[int], dict[Any, bool], set[Any], bool, set[Any]]]:
        """The transaction of add_events: the notifications' sequence numbers (0 for one not
        stored), whether each webhook was Active, the Strict ones (their rows joined a queue),
        whether one of their heads became due, and the webhooks deleted since their rules were
        read (their notifications are not stored: a delete takes a webhook's history with it)."""
        q = self.q
        yield ExecuteMany(q.INSERT_EVENT, event_rows, encoded=True)
        webhook_at, sequence_at, state_at, message_at = (
            q.ROW_WEBHOOK, q.ROW_SEQUENCE, q.ROW_STATE, q.ROW_MESSAGE)  # fmt: skip
        given = [row.copy() for row in note_rows]  # this try's own: PostgreSQL's may run again
        sequences, parked, strict, gone = yield from self._reserve(given, now)
        rows = [row for row in given if row[webhook_at] not in gone] if gone else given
        for row in rows:
            webhook_id = row[webhook_at]
            row[sequence_at] = sequences[webhook_id]
            sequences[webhook_id] += 1
            if row[state_at] not in (_PENDING, _PARKED):
                continue  # a finished row, seeded as it is (tests, imports)
            if strict and webhook_id in strict:  # in its queue: _normalize picks the head
                row[state_at], row[message_at] = _WAITING, ordering.WAITING_MESSAGE
                row[q.ROW_LEASE_UNTIL] = row[q.ROW_LEASE_OWNER] = None
            elif webhook_id in parked:  # not pending, not leased, saying why
                row[state_at], row[message_at] = _PARKED, parked[webhook_id]
                row[q.ROW_LEASE_UNTIL] = row[q.ROW_LEASE_OWNER] = None
            elif row[state_at] == _PARKED:
                row[state_at], row[message_at] = _PENDING, None
        due = False  # a Strict webhook's head became due (_normalize told the workers)
        if strict:  # its queue's (INSERT_WAITING), then the others
            waiting = [row for row in rows if row[state_at] == _WAITING]
            yield ExecuteMany(q.INSERT_WAITING, waiting, encoded=True)
            others = [row for row in rows if row[state_at] != _WAITING]
            yield ExecuteMany(q.INSERT_NOTIFICATION, others, encoded=True)
            due = yield from queues.normalize(self.q, {w: parked.get(w) for w in strict}, now)
        else:
            yield ExecuteMany(q.INSERT_NOTIFICATION, rows, encoded=True)
        # Pending and not leased already (a worker in the publishing process took it).
        if not due and any(row[state_at] == _PENDING and row[q.ROW_LEASE_OWNER] is None
                           for row in rows):  # fmt: skip
            yield Notify(NEW_WORK_CHANNEL)
        active = {w: w not in parked for w in sequences}
        numbers = [0 if row[webhook_at] in gone else row[sequence_at] for row in given]
        return numbers, active, strict, due, gone

    def _reserve(
        self, rows: list[Any], now: datetime
    ) -> Script[tuple[dict[Any, int], dict[Any, str], set[Any], set[Any]]]:
        """Reserve sequence numbers in one statement; the first for each webhook, for each
        webhook that is not Active in this transaction why its notifications are parked, the
        Strict webhooks, and those deleted since their rules were read."""
        webhook_at, group_at = self.q.ROW_WEBHOOK, self.q.ROW_GROUP
        counts = collections.Counter((row[webhook_at], row[group_at]) for row in rows)
        if not counts:
            return {}, {}, set(), set()
        yield Lock(self.q.LOCK_WEBHOOK_IDS, {"webhook_ids": [w for w, _ in counts]})
        found = yield Fetch(self.q.RESERVE_SEQUENCES, self.q.reserve_params(counts))
        last = {(row[0], row[1]): row[2] for row in found}
        parked, strict = {}, set()
        for row in found:
            status = models.WebhookStatus(row[3])
            expiration = None if row[5] is None else self.codec.read(Kind.TIME, row[5])
            if not lifecycle.receives(status, expiration, now):
                shown = lifecycle.shown_status(status, row[4], expiration, now)
                parked[row[0]] = lifecycle.parked_message(*shown)
            if row[6] == _STRICT:
                strict.add(row[0])
        first: dict[Any, int] = {}
        missing = set()
        for (webhook_id, group_key), count in counts.items():
            if (webhook_id, group_key) in last:
                first[webhook_id] = last[webhook_id, group_key] - count + 1
            else:
                missing.add(webhook_id)
        if missing:  # deleted since their rules were read; another group's are refused
            others = yield Fetch(self.q.WEBHOOKS_ANY_GROUP, {"webhook_ids": self._ids(missing)})
            if others:
                webhook_id = self.codec.decode_rows(Webhook, others[:1])[0].webhook_id
                raise StoreError(f"webhook {webhook_id} is not in the group its notification names")
        return first, parked, strict, missing

    async def claim_due(
        self,
        now: datetime,
        limit: int,
        lease_owner: str,
        lease_until: datetime,
        *,
        exclude_webhooks: Collection[UUID] = (),
        exclude_groups: Collection[UUID] = (),
    ) -> list[Due]:
        """Lease up to `limit` pending notifications due by `now` (or whose lease expired),
        skipping those of `exclude_webhooks` and `exclude_groups` (the caller holds enough).

        The longest-due go first (by due time, then webhook, then sequence, so a deep backlog
        cannot hold the other webhooks back); the batch comes back by webhook then sequence. A
        claimed notification is invisible to other claims until its lease ends.
        """
        params = {
            "now": now, "limit": limit, "owner": lease_owner, "lease_until": lease_until,
            "exclude": self._ids(exclude_webhooks), "exclude_groups": self._ids(exclude_groups),
        }  # fmt: skip
        [rows] = await self._run(Fetch(self.q.CLAIM_DUE, params))
        notes: list[Due] = self.q.claimed(rows, lease_owner, lease_until)
        # RETURNING follows no ORDER BY; restore the claim order.
        return sorted(notes, key=lambda n: (n.webhook_id, n.sequence))

    async def record_attempts(
        self, outcomes: Sequence[AttemptOutcome], now: datetime | None = None
    ) -> Recorded:
        """Settle attempt outcomes (gateway.outcomes.settle) against the webhook row as it is in
        the same transaction, log the failed attempts, change the webhooks' lifecycles and park
        what that implies; say how many held their lease (a lost lease is dropped), the status
        changes made, and which of the webhooks are not Active now. `now` (by default the
        current time) is when they are recorded."""
        if not outcomes:
            return Recorded(0)
        recorded = await self._transact(functools.partial(self._record, outcomes, now or utcnow()))
        notices.count(recorded.notices)
        return recorded

    def _record(self, outcomes: Sequence[AttemptOutcome], now: datetime) -> Script[Recorded]:
        held = yield from self._leased(outcomes)
        recent = yield from self._window_failures(held, now)
        settled = settle_in_order(held, now, recent)
        # Not `yield from`: a list cannot take what a write answers (on PostgreSQL, a count).
        for write in self._settled_writes(settled, now):  # noqa: UP028
            yield write
        due = False  # a Strict webhook's next notification became due
        if strict := queues.of_settled(settled, now):
            due = yield from queues.normalize(self.q, strict, now)
        notified = _settled_notices(settled, now)
        yield from self._publish_notices(notified)
        changes = changes_of(settled)
        return Recorded(len(settled), changes, not_active(settled, now),
                        [n.kind for n in notified], queue_due=due)  # fmt: skip

    def _window_failures(self, held: Held, now: datetime) -> Script[dict[UUID, int]]:
        """For each webhook with a failure window that a failure of this batch may trip, its
        failed attempts already logged within the window (and since its last reactivation),
        as this transaction sees them with the webhook locked: counted here, by every process
        in turn, a count is never missed by two settling at once."""
        windows = {hook.webhook_id: (window, hook.window_start) for outcome, hook in held
                   if (window := hook.failure_window) is not None and failed(outcome)}  # fmt: skip
        recent = {}
        for webhook_id, (window, start) in windows.items():
            since = now - timedelta(seconds=window.seconds)
            if start is not None:
                since = max(since, start)
            params = {"webhook_id": webhook_id, "since": since, "most": window.count}
            rows = yield Fetch(self.q.WINDOW_FAILURES, params)
            recent[webhook_id] = int(rows[0][0])
        return recent

    def _settled_writes(self, settled: Settled, now: datetime) -> list[Step]:
        """A settled batch's writes, a statement each over the whole batch. Set-wise in this
        order they end as one-by-one would: a webhook that leaves Active never comes back
        within a batch, so no later outcome needs a parked row."""
        attempts, unsent, logged, changes, parks = [], [], [], [], []
        settled_row, at = self.q.settled_row, self.codec.to_sql(now)  # `now` encoded once a batch
        for outcome, hook, done in settled:
            if done.attempted:
                attempts.append(settled_row(outcome, done, at))
            else:
                unsent.append({
                    "notification_id": outcome.notification_id, "state": done.state.value,
                    "next_attempt_at": done.next_attempt_at, "now": now,
                    "process_result_message": done.process_result_message,
                    "lease_owner": outcome.lease_owner,
                })  # fmt: skip
            if done.logged:
                logged.append({"notification_id": outcome.notification_id})
            if (change := done.webhook) is not None:
                changes.append({"webhook_id": hook.webhook_id, "now": now,
                                "failure_count": change.failure_count,
                                **_status(change)})  # fmt: skip
                if done.park_webhook:  # all but this one: its own settlement is written
                    parks.append(_parking(hook.webhook_id, change, now, outcome.notification_id))
        # An empty ExecuteMany runs nothing; the dialect's `settling` may be another step.
        settle = [self.q.settling(attempts, at)] if attempts else []
        return [*settle,
                ExecuteMany(self.q.SETTLE_UNSENT, unsent), ExecuteMany(self.q.LOG_ATTEMPT, logged),
                ExecuteMany(self.q.SETTLE_LIFECYCLE, changes),
                ExecuteMany(self.q.PARK_PENDING, parks)]  # fmt: skip

    def _leased(self, outcomes: Sequence[AttemptOutcome]) -> Script[Held]:
        """The outcomes whose lease still holds, each with its webhook as this transaction sees
        it (locked first). A lost lease (or a deleted webhook) is dropped: another settles it."""
        params = {"ids": self._ids([o.notification_id for o in outcomes]),
                  "owners": [o.lease_owner for o in outcomes]}  # fmt: skip
        # notification id -> (lease owner, webhook id), read by position
        rows = yield Fetch(self.q.LEASES, params)
        if any(failed(outcome) for outcome in outcomes):  # a webhook may leave Active
            yield from self._lock_notice_subscribers({row[2] for row in rows})
        found = yield from self._lock_webhooks({row[2] for row in rows})
        # PostgreSQL reads the leases again, locking them, now that their webhooks are locked:
        # a claim may have taken one over meanwhile. On SQLite what was read stands.
        locked = yield Lock(self.q.LOCK_LEASES, params)
        # Matched by the ids as the driver reads them (on SQLite text, which hashes in C).
        raw = self.codec.to_sql
        hooks = {raw(webhook_id): hook for webhook_id, hook in found.items()}
        leases = {row[0]: (row[1], row[2]) for row in (rows if locked is None else locked)}
        held = []
        for outcome in outcomes:
            key = raw(outcome.notification_id)
            lease = leases.get(key)
            if lease is None or lease[0] != outcome.lease_owner or lease[1] not in hooks:
                continue
            del leases[key]  # settled now: a second outcome for it finds no lease
            held.append((outcome, hooks[lease[1]]))
        return held


# At most this many webhooks are named when an authentication in use cannot be deleted.
NAMED_USERS = 20


def _in_use(authentication_id: UUID, users: Sequence[Any]) -> str:
    """Why an authentication cannot be deleted: the webhooks (id and name) that use it."""
    named = ", ".join(f"{user[0]} ({user[1]!r})" for user in users[:NAMED_USERS])
    more = f" and {len(users) - NAMED_USERS} more" if len(users) > NAMED_USERS else ""
    return (
        f"authentication {authentication_id} is used by {len(users)} webhook(s): {named}{more}; "
        "give them another authenticationId (or null) first"
    )


def _settled_notices(settled: Settled, now: datetime) -> list[Notice]:
    """The lifecycle notices of a settled batch's changes of status, in order."""
    notified = []
    for _, hook, done in settled:
        change = done.webhook
        if change is not None and change.status is not hook.status_code:
            after = dataclasses.replace(
                hook, failure_count=change.failure_count, status_code=change.status,
                status_message=change.status_message, status_reason=change.reason,
            )  # fmt: skip
            notified.extend(notices.about(hook, after, now))
    return notified


def _hour(row: Any) -> HourOfDeliveries:
    """A DELIVERY_ACTIVITY row; the times rounded to 0.1 ms, so both dialects' means agree."""
    hour = datetime.strptime(row[0], "%Y-%m-%dT%H").replace(tzinfo=UTC)
    mean, most = row[3], row[4]
    return HourOfDeliveries(hour, int(row[1]), int(row[2]),
                            None if mean is None else round(float(mean), 1),
                            None if most is None else round(float(most), 1))  # fmt: skip


def _status(change: StatusChange | Transition) -> dict[str, Any]:
    """The status columns a change writes (SET_STATUS, SETTLE_LIFECYCLE)."""
    return {"status_code": change.status.value, "status_message": change.status_message,
            "status_reason": None if change.reason is None else change.reason.value}  # fmt: skip


def _parking(
    webhook_id: UUID, change: StatusChange | Transition, now: datetime, keep: UUID | None = None
) -> dict[str, Any]:
    """PARK_PENDING's parameters: the webhook's pending notifications (but `keep`) parked."""
    message = lifecycle.parked_message(change.status, change.status_message)
    return {"webhook_id": webhook_id, "now": now, "message": message, "keep": keep}
