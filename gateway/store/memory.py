"""`MemoryStore`: the store contract over plain dicts, for unit tests.

Every method runs without awaiting anything in between, so each is atomic on the event loop.
Filters are checked as the SQL stores check them and evaluated on each record's wire shape;
orders are read by the same `parse_order`. No SQL here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from gateway import lifecycle
from gateway.errors import Conflict, StoreError
from gateway.filter_values import as_bool, parse_order
from gateway.filters import And, FieldType, Literal, Node, Or, check_filter, evaluate
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
from gateway.store.base import (
    HISTORY_DEFAULT_ORDER,
    HISTORY_FIELDS,
    RULE_DEFAULT_ORDER,
    RULE_FIELDS,
    WEBHOOK_DEFAULT_ORDER,
    WEBHOOK_FIELDS,
    Added,
    Page,
    Query,
    Requeue,
    Store,
    WebhookEdit,
)

T = TypeVar("T")
PENDING, PARKED = NotificationState.PENDING, NotificationState.PARKED


def _text(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def webhook_fields(hook: Webhook) -> dict[str, Any]:
    """A webhook's filterable fields by wire name."""
    return {
        "webhookId": str(hook.webhook_id), "groupKey": str(hook.group_key), "name": hook.name,
        "statusCode": hook.status_code.value, "statusMessage": hook.status_message,
        "requestContentType": hook.request_content_type.value,
        "callbackHttpMethod": hook.callback_http_method.value, "callbackUrl": hook.callback_url,
        "expirationDate": hook.expiration_date, "retryCount": hook.retry_count,
        "created": hook.created, "createdUserId": str(hook.created_user_id),
        "modified": hook.modified, "modifiedUserId": str(hook.modified_user_id),
        "partitionKey": hook.partition_key,
    }  # fmt: skip


def rule_fields(rule: WebhookRule) -> dict[str, Any]:
    """A rule's filterable fields by wire name."""
    return {
        "webhookRuleId": str(rule.webhook_rule_id), "webhookId": str(rule.webhook_id),
        "groupKey": str(rule.group_key), "tableKey": rule.table_key,
        "eventType": rule.event_type.value, "filter": rule.filter, "created": rule.created,
        "createdUserId": str(rule.created_user_id), "modified": rule.modified,
        "modifiedUserId": str(rule.modified_user_id),
    }  # fmt: skip


def history_fields(note: Notification) -> dict[str, Any]:
    """A history row's filterable fields by wire name."""
    return {
        "webhookHistoryId": str(note.notification_id), "webhookId": str(note.webhook_id),
        "groupKey": str(note.group_key), "eventType": f"{note.table_key}.{note.event_type.value}",
        "requestSent": note.request_sent, "isSuccessful": note.is_successful,
        "responseStatusCode": note.response_status_code,
        "processResultMessage": note.process_result_message,
        "failureCount": note.attempts - (1 if note.is_successful else 0),
        "timestamp": note.timestamp,
    }  # fmt: skip


def _prepare(node: Node | None, types: Mapping[str, FieldType]) -> Node | None:
    """Refuse what the SQL stores refuse, and compare ids and booleans as they bind them."""
    if node is None:
        return None
    check_filter(node, types)  # the same FilterError for a bad value
    return _canonical(node, types)


def _canonical(node: Node, types: Mapping[str, FieldType]) -> Node:
    if isinstance(node, And):
        return And(tuple(_canonical(item, types) for item in node.items))
    if isinstance(node, Or):
        return Or(tuple(_canonical(item, types) for item in node.items))
    kind = types[node.field]
    if kind is FieldType.UUID:
        values = tuple(Literal(str(UUID(str(v.value))), True) for v in node.values)
    elif kind is FieldType.BOOLEAN:
        values = tuple(Literal(as_bool(v.value) is True, False) for v in node.values)
    else:
        return node
    return dataclasses.replace(node, values=values)


def _sort_key(name: str) -> Callable[[dict[str, Any]], tuple[bool, Any]]:
    # NULLs first when ascending, as SQLite and PostgreSQL's NULLS FIRST for ASC.
    return lambda row: (row[name] is not None, row[name])


def _page(
    items: Iterable[T],
    shape: Callable[[T], dict[str, Any]],
    types: Mapping[str, FieldType],
    default_order: str,
    query: Query,
) -> Page[T]:
    """Filter, order (the first field, the id, breaks ties) and page records; `types` are the
    filterable fields by lowercase wire name."""
    node = _prepare(query.filter, types)
    rows = [(item, shape(item)) for item in items]
    rows = [(item, wire) for item, wire in rows if evaluate(node, wire)]
    lowered = [(item, {k.lower(): v for k, v in wire.items()}) for item, wire in rows]
    tiebreak = next(iter(types))
    lowered.sort(key=lambda pair: pair[1][tiebreak])
    for term in reversed(parse_order(query.order, types, default=default_order)):
        key = _sort_key(term.field)
        lowered.sort(key=lambda pair: key(pair[1]), reverse=term.descending)
    start = query.page_size * query.page_number
    return Page([item for item, _ in lowered[start : start + query.page_size]], len(lowered))


class MemoryStore(Store):
    """The whole database in dicts; data survives close() and open()."""

    def __init__(self) -> None:
        self.api_keys: dict[UUID, ApiKey] = {}
        self.webhooks: dict[UUID, Webhook] = {}
        self.rules: dict[UUID, WebhookRule] = {}
        self.events: dict[UUID, Event] = {}
        self.notifications: dict[UUID, Notification] = {}
        self.attempt_log: dict[UUID, list[Attempt]] = {}  # by notification
        self._last_sequence: dict[UUID, int] = {}
        self.handshake_nonces: dict[str, datetime] = {}  # nonce -> when its code expires

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to release."""

    async def ping(self) -> None:
        """Always answers."""

    # -- API keys -----------------------------------------------------------------------------
    async def add_api_key(self, key: ApiKey) -> None:
        """Store a new key (hashed)."""
        taken = any(k.key_hash == key.key_hash for k in self.api_keys.values())
        if key.api_key_id in self.api_keys or taken:
            raise StoreError(f"api key {key.api_key_id} already exists")
        self.api_keys[key.api_key_id] = key

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, revoked or not."""
        return next((k for k in self.api_keys.values() if k.key_hash == key_hash), None)

    async def list_api_keys(self) -> list[ApiKey]:
        """Every key, oldest first."""
        return sorted(self.api_keys.values(), key=lambda k: (k.created, str(k.api_key_id)))

    async def revoke_api_key(self, api_key_id: UUID, when: datetime) -> bool:
        """Mark a key revoked; False if there is no such key."""
        key = self.api_keys.get(api_key_id)
        if key is None:
            return False
        self.api_keys[api_key_id] = dataclasses.replace(key, revoked=when)
        return True

    async def group_key_for_name(self, group_name: str) -> UUID | None:
        """The group key already used for this group name, if any."""
        keys = [k for k in await self.list_api_keys() if k.group_name == group_name]
        return keys[0].group_key if keys else None

    # -- Webhooks -----------------------------------------------------------------------------
    async def add_webhooks(self, webhooks: Sequence[Webhook]) -> None:
        """Insert all or none."""
        _check_new(self.webhooks, [w.webhook_id for w in webhooks], "webhook")
        for hook in webhooks:
            self.webhooks[hook.webhook_id] = hook
            self._last_sequence[hook.webhook_id] = 0

    async def get_webhook(self, group_key: UUID, webhook_id: UUID) -> Webhook | None:
        """One webhook of this group."""
        hook = self.webhooks.get(webhook_id)
        return hook if hook is not None and hook.group_key == group_key else None

    async def get_webhook_any_group(self, webhook_id: UUID) -> Webhook | None:
        """One webhook whatever its group (for the delivery worker only)."""
        return self.webhooks.get(webhook_id)

    async def edit_webhook(
        self, group_key: UUID, webhook_id: UUID, edit: WebhookEdit, now: datetime
    ) -> Webhook | None:
        """Apply an owner's edit; the webhook after it, None if not found, Conflict if an
        expectation failed."""
        hook = await self.get_webhook(group_key, webhook_id)
        if hook is None:
            return None
        stale = sorted(name for name, value in edit.expect.items() if getattr(hook, name) != value)
        if stale:
            raise conflict(webhook_id, stale)
        hook = dataclasses.replace(hook, **edit.values)
        if edit.status is not None:
            hook = self._change_status(hook, edit.status, now)
        self.webhooks[webhook_id] = hook
        return hook

    def _change_status(self, hook: Webhook, change: StatusChange, now: datetime) -> Webhook:
        """The webhook with this status, its notifications parked or released to match."""
        count = 0 if change.reset_failures else hook.failure_count
        hook = dataclasses.replace(
            hook, status_code=change.status, status_message=change.status_message,
            status_reason=change.reason, failure_count=count,
        )  # fmt: skip
        if change.move is Move.PARK:
            self._park(hook.webhook_id, change.status, change.status_message, now)
        else:
            self._change(
                lambda n: n.webhook_id == hook.webhook_id and n.state is PARKED,
                state=PENDING, next_attempt_at=now, timestamp=now, lease_owner=None,
                lease_until=None, process_result_message=lifecycle.RELEASED_MESSAGE,
            )  # fmt: skip
        return hook

    def _park(
        self,
        webhook_id: UUID,
        status: WebhookStatus,
        message: str | None,
        now: datetime,
        keep: UUID | None = None,
    ) -> None:
        """Park the webhook's pending notifications (but `keep`), leases kept."""
        self._change(
            lambda n: (
                n.webhook_id == webhook_id and n.state is PENDING and n.notification_id != keep
            ),
            state=PARKED,
            timestamp=now,
            process_result_message=lifecycle.parked_message(status, message),
        )

    async def regenerate_secret(
        self,
        group_key: UUID,
        webhook_id: UUID,
        secret: str,
        previous_until: datetime,
        now: datetime,
        user_id: UUID,
    ) -> Webhook | None:
        """A new client secret; the current one signs until `previous_until`."""
        hook = await self.get_webhook(group_key, webhook_id)
        if hook is None:
            return None
        hook = self.webhooks[webhook_id] = dataclasses.replace(
            hook, client_secret=secret, previous_secret=hook.client_secret,
            previous_secret_expires=previous_until, modified=now, modified_user_id=user_id,
        )  # fmt: skip
        return hook

    async def delete_webhook(self, group_key: UUID, webhook_id: UUID) -> bool:
        """Delete a webhook with its rules and notifications; False if not found."""
        if await self.get_webhook(group_key, webhook_id) is None:
            return False
        del self.webhooks[webhook_id]
        self.rules = {k: r for k, r in self.rules.items() if r.webhook_id != webhook_id}
        self.notifications = {
            k: n for k, n in self.notifications.items() if n.webhook_id != webhook_id
        }
        self.attempt_log = {k: a for k, a in self.attempt_log.items() if k in self.notifications}
        return True

    async def query_webhooks(self, group_key: UUID, query: Query) -> Page[Webhook]:
        """Filter, order and page this group's webhooks."""
        mine = [h for h in self.webhooks.values() if h.group_key == group_key]
        return _page(mine, webhook_fields, WEBHOOK_FIELDS, WEBHOOK_DEFAULT_ORDER, query)

    async def expire_webhooks(self, now: datetime) -> list[Webhook]:
        """Make expired Active webhooks Inactive and park their notifications."""
        expired = []
        for hook in list(self.webhooks.values()):
            change = lifecycle.expiry(hook, now)
            if change is not None:
                hook = dataclasses.replace(self._change_status(hook, change, now), modified=now)
                self.webhooks[hook.webhook_id] = hook
                expired.append(hook)
        return expired

    # -- Rules --------------------------------------------------------------------------------
    async def add_rules(self, rules: Sequence[WebhookRule]) -> None:
        """Insert all or none."""
        _check_new(self.rules, [r.webhook_rule_id for r in rules], "rule")
        missing = [r.webhook_id for r in rules if r.webhook_id not in self.webhooks]
        if missing:
            raise StoreError(f"no webhook {missing[0]}")
        self.rules.update((r.webhook_rule_id, r) for r in rules)

    async def get_rule(self, group_key: UUID, rule_id: UUID) -> WebhookRule | None:
        """One rule of this group."""
        rule = self.rules.get(rule_id)
        return rule if rule is not None and rule.group_key == group_key else None

    async def update_rule(self, rule: WebhookRule) -> bool:
        """Replace the stored rule; False if gone."""
        if await self.get_rule(rule.group_key, rule.webhook_rule_id) is None:
            return False
        if rule.webhook_id not in self.webhooks:
            raise StoreError(f"no webhook {rule.webhook_id}")
        self.rules[rule.webhook_rule_id] = rule
        return True

    async def delete_rule(self, group_key: UUID, rule_id: UUID) -> bool:
        """Delete a rule; False if not found."""
        if await self.get_rule(group_key, rule_id) is None:
            return False
        del self.rules[rule_id]
        return True

    async def query_rules(self, group_key: UUID, query: Query) -> Page[WebhookRule]:
        """Filter, order and page this group's rules."""
        mine = [r for r in self.rules.values() if r.group_key == group_key]
        return _page(mine, rule_fields, RULE_FIELDS, RULE_DEFAULT_ORDER, query)

    def _rules_in_order(self, group_key: UUID) -> list[WebhookRule]:
        mine = [r for r in self.rules.values() if r.group_key == group_key]
        return sorted(mine, key=lambda r: (r.created, str(r.webhook_rule_id)))

    async def rules_for_webhooks(
        self, group_key: UUID, webhook_ids: Sequence[UUID]
    ) -> dict[UUID, list[WebhookRule]]:
        """The rules of each of these webhooks (every id is a key, possibly with no rules)."""
        found: dict[UUID, list[WebhookRule]] = {w: [] for w in webhook_ids}
        for rule in self._rules_in_order(group_key):
            if rule.webhook_id in found:
                found[rule.webhook_id].append(rule)
        return found

    async def matching_rules(
        self, group_key: UUID, table_key: str, event_type: str
    ) -> list[tuple[WebhookRule, Webhook]]:
        """Rules (with their webhooks) for this table and event type."""
        return [
            (r, self.webhooks[r.webhook_id]) for r in self._rules_in_order(group_key)
            if r.table_key == table_key and r.event_type.value == event_type
        ]  # fmt: skip

    # -- Events and notifications -------------------------------------------------------------
    async def add_events(
        self, events: Sequence[Event], notifications: Sequence[Notification]
    ) -> Added:
        """Store events and their notifications, all or none, numbering each webhook's
        notifications from its counter in the order given, pending or parked as its webhook
        is now."""
        self._check_events(events, notifications)
        self.events.update((e.event_id, e) for e in events)
        given = []
        active: dict[UUID, bool] = {}
        for note in notifications:
            hook = self.webhooks[note.webhook_id]
            pending = active.setdefault(hook.webhook_id, lifecycle.is_active(hook, note.created))
            sequence = self._last_sequence[note.webhook_id] + 1
            self._last_sequence[note.webhook_id] = sequence
            self.notifications[note.notification_id] = dataclasses.replace(
                note, sequence=sequence, **_publish_state(hook, note, pending)
            )
            given.append(sequence)
        return Added(given, active)

    def _check_events(self, events: Sequence[Event], notes: Sequence[Notification]) -> None:
        _check_new(self.events, [e.event_id for e in events], "event")
        _check_new(self.notifications, [n.notification_id for n in notes], "notification")
        known = set(self.events) | {e.event_id for e in events}
        for note in notes:
            hook = self.webhooks.get(note.webhook_id)
            if hook is None or hook.group_key != note.group_key:
                raise StoreError(f"no webhook {note.webhook_id} in group {note.group_key}")
            if note.event_id not in known:
                raise StoreError(f"no event {note.event_id}")

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
        excluded, groups = set(exclude_webhooks), set(exclude_groups)
        due = [
            n for n in self.notifications.values()
            if n.state is PENDING and n.next_attempt_at <= now
            and (n.lease_until is None or n.lease_until <= now) and n.webhook_id not in excluded
            and n.group_key not in groups
        ]  # fmt: skip
        due.sort(key=lambda n: (n.next_attempt_at, n.webhook_id, n.sequence))
        claimed = []
        for note in due[:limit]:
            note = dataclasses.replace(note, lease_owner=lease_owner, lease_until=lease_until)
            self.notifications[note.notification_id] = note
            claimed.append(note)
        return sorted(claimed, key=lambda n: (n.webhook_id, n.sequence))

    async def record_attempts(self, outcomes: Sequence[AttemptOutcome]) -> Recorded:
        """Settle attempt outcomes whose lease holds, in order, with their lifecycle changes."""
        now = utcnow()
        held = []
        for outcome in outcomes:
            note = self.notifications.get(outcome.notification_id)
            hook = self.webhooks.get(note.webhook_id) if note else None
            if note is None or hook is None or note.lease_owner != outcome.lease_owner:
                continue  # the lease was lost: someone else owns this notification now
            # A second outcome for the same notification finds no lease.
            self.notifications[note.notification_id] = dataclasses.replace(note, lease_owner=None)
            held.append((outcome, hook))
        settled = settle_in_order(held, now)
        for outcome, hook, done in settled:
            self._settle(outcome, done, now)
            if (change := done.webhook) is not None:
                moved = change.status is not hook.status_code
                self.webhooks[hook.webhook_id] = dataclasses.replace(
                    self.webhooks[hook.webhook_id], failure_count=change.failure_count,
                    status_code=change.status, status_message=change.status_message,
                    status_reason=change.reason,
                    modified=now if moved else self.webhooks[hook.webhook_id].modified,
                )  # fmt: skip
            if done.park_webhook and done.webhook is not None:
                self._park(hook.webhook_id, done.webhook.status, done.webhook.status_message,
                           now, keep=outcome.notification_id)  # fmt: skip
        return Recorded(len(settled), changes_of(settled), not_active(settled, now))

    def _settle(self, outcome: AttemptOutcome, done: Settlement, now: datetime) -> None:
        note = self.notifications[outcome.notification_id]
        fields: dict[str, Any] = {
            "state": done.state, "next_attempt_at": done.next_attempt_at or note.next_attempt_at,
            "is_successful": done.is_successful,
            "process_result_message": done.process_result_message, "timestamp": now,
            "lease_owner": None, "lease_until": None,
        }  # fmt: skip
        if done.attempted:
            fields.update(
                attempts=note.attempts + 1, request_sent=True,
                response_status_code=outcome.response_status_code,
                request_message=outcome.request_message,
                response_message=outcome.response_message,
            )  # fmt: skip
        note = self.notifications[note.notification_id] = dataclasses.replace(note, **fields)
        if done.logged:
            self.attempt_log.setdefault(note.notification_id, []).append(
                Attempt(
                    note.notification_id,
                    note.attempts,
                    now,
                    note.response_status_code,
                    note.process_result_message,
                    note.request_message,
                    note.response_message,
                )
            )

    def _change(self, which: Callable[[Notification], bool], **changes: Any) -> int:
        """Apply `changes` to every notification `which` selects; return how many."""
        chosen = [n for n in self.notifications.values() if which(n)]
        for note in chosen:
            self.notifications[note.notification_id] = dataclasses.replace(note, **changes)
        return len(chosen)

    async def release_leases(self, lease_owner: str) -> int:
        """Give back every lease this owner holds (graceful shutdown)."""
        return self._change(
            lambda n: n.state is PENDING and n.lease_owner == lease_owner,
            lease_owner=None, lease_until=None,
        )  # fmt: skip

    async def get_notification(
        self, group_key: UUID, webhook_id: UUID, notification_id: UUID
    ) -> Notification | None:
        """One history row of this group's webhook."""
        note = self.notifications.get(notification_id)
        if note is None or (note.group_key, note.webhook_id) != (group_key, webhook_id):
            return None
        return note

    async def requeue_notification(
        self, group_key: UUID, webhook_id: UUID, notification_id: UUID, now: datetime
    ) -> Requeue:
        """Make a notification that has not succeeded pending and due now, if its webhook is
        Active."""
        note = await self.get_notification(group_key, webhook_id, notification_id)
        if note is None:
            return Requeue.NOT_FOUND
        if note.state is NotificationState.SUCCEEDED:
            return Requeue.SUCCEEDED
        if not lifecycle.is_active(self.webhooks[webhook_id], now):
            return Requeue.NOT_ACTIVE
        self.notifications[notification_id] = dataclasses.replace(
            note, state=PENDING, next_attempt_at=now, timestamp=now,
            lease_owner=None, lease_until=None,
        )  # fmt: skip
        return Requeue.QUEUED

    async def attempts(
        self, group_key: UUID, webhook_id: UUID, notification_ids: Sequence[UUID]
    ) -> dict[UUID, list[Attempt]]:
        """The logged failed attempts of these notifications, in order."""
        found: dict[UUID, list[Attempt]] = {}
        for notification_id in notification_ids:
            note = await self.get_notification(group_key, webhook_id, notification_id)
            found[notification_id] = list(self.attempt_log.get(notification_id, [])) if note else []
        return found

    async def query_history(
        self, group_key: UUID, webhook_id: UUID, query: Query
    ) -> Page[Notification]:
        """Filter and page one webhook's history (HISTORY_FIELDS)."""
        mine = [
            n for n in self.notifications.values()
            if n.group_key == group_key and n.webhook_id == webhook_id
        ]  # fmt: skip
        return _page(mine, history_fields, HISTORY_FIELDS, HISTORY_DEFAULT_ORDER, query)

    async def prune_history(self, succeeded_before: datetime) -> int:
        """Delete successful notifications older than this (and events left with none)."""
        old = [
            n.notification_id for n in self.notifications.values()
            if n.state is NotificationState.SUCCEEDED and n.timestamp < succeeded_before
        ]  # fmt: skip
        for notification_id in old:
            del self.notifications[notification_id]
            self.attempt_log.pop(notification_id, None)
        used = {n.event_id for n in self.notifications.values()}
        self.events = {
            k: e for k, e in self.events.items() if k in used or e.created >= succeeded_before
        }
        return len(old)

    async def check_invariants(self, now: datetime, *, repair: bool) -> dict[str, int]:
        """Count (and with `repair`, set right) notifications that break an invariant."""
        active = {w for w, hook in self.webhooks.items() if lifecycle.is_active(hook, now)}
        parked = [
            n for n in self.notifications.values() if n.state is PARKED and n.webhook_id in active
        ]
        stray = [
            n for n in self.notifications.values()
            if n.state is PENDING and n.webhook_id not in active
            and (n.lease_until is None or n.lease_until <= now)
        ]  # fmt: skip
        if repair:
            for note in parked:
                self.notifications[note.notification_id] = dataclasses.replace(
                    note, state=PENDING, next_attempt_at=now, timestamp=now, lease_owner=None,
                    lease_until=None, process_result_message=lifecycle.RELEASED_MESSAGE,
                )  # fmt: skip
            for note in stray:
                hook = self.webhooks[note.webhook_id]
                status, message = lifecycle.effective_status(hook, now)
                self.notifications[note.notification_id] = dataclasses.replace(
                    note, state=PARKED, timestamp=now,
                    process_result_message=lifecycle.parked_message(status, message),
                )  # fmt: skip
        return {"parked_of_active": len(parked), "pending_of_inactive": len(stray)}

    async def delivery_stats(self, now: datetime) -> dict[str, float]:
        """Queue depth by state, and for how many seconds the longest-waiting due notification
        has been due."""
        stats = {state.value: 0.0 for state in NotificationState}
        for note in self.notifications.values():
            stats[note.state.value] += 1
        due = [n.next_attempt_at for n in self.notifications.values() if n.state is PENDING]
        overdue = (now - min(due)).total_seconds() if due else 0.0
        return {**stats, "overdue_seconds": max(overdue, 0.0)}

    async def take_handshake_nonce(self, nonce: str, expires: datetime) -> bool:
        """Mark the nonce used: True the first time, False after."""
        if nonce in self.handshake_nonces:
            return False
        self.handshake_nonces[nonce] = expires
        return True

    async def prune_handshake_nonces(self, now: datetime) -> int:
        """Forget the nonces that expired by `now`; return how many."""
        expired = [nonce for nonce, expires in self.handshake_nonces.items() if expires <= now]
        for nonce in expired:
            del self.handshake_nonces[nonce]
        return len(expired)


def conflict(webhook_id: UUID, fields: Sequence[str]) -> Conflict:
    """The answer to an edit whose expectations no longer hold."""
    return Conflict(
        f"webhook {webhook_id} changed while this request was handled "
        f"({', '.join(fields)}); send the request again"
    )


def _publish_state(hook: Webhook, note: Notification, pending: bool) -> dict[str, Any]:
    """The state fields of a new notification of this webhook: pending, or parked saying why;
    a finished row (seeded by tests or imports) as it is."""
    if note.state not in (PENDING, PARKED):
        return {}
    if pending:
        return {"state": PENDING}
    status, message = lifecycle.effective_status(hook, note.created)
    return {
        "state": PARKED, "lease_owner": None, "lease_until": None,
        "process_result_message": lifecycle.parked_message(status, message),
    }  # fmt: skip


def _check_new(existing: Mapping[UUID, object], ids: Sequence[UUID], what: str) -> None:
    """Refuse a batch that repeats an id, within itself or with what is stored."""
    if len(set(ids)) != len(ids) or any(i in existing for i in ids):
        raise StoreError(f"duplicate {what} id")
