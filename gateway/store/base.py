"""The store interface: every persistent operation the gateway needs, async, backend-neutral.

Implementations: `memory.MemoryStore` (unit tests), `sqlite.SqliteStore` (embedded default),
`postgres.PostgresStore` (scale-out). One contract suite (tests/integration/test_store_contract.py)
runs against all of them.

Every read or write of a tenant's data takes the caller's `group_key`: a record of another group
is simply not found, so existence never leaks across groups.

Filters reach the store already parsed (`gateway.filters.Node`); each store compiles them over
the whitelists below, never by pasting user text into SQL.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Generic, Self, TypeVar
from uuid import UUID

from gateway.filters import FieldType, Node
from gateway.models import ApiKey, Event, Notification, Webhook, WebhookRule
from gateway.outcomes import AttemptOutcome

# Queryable fields per resource: wire name (lowercase) -> type. Stores map them to columns.
WEBHOOK_FIELDS: Mapping[str, FieldType] = {
    "webhookid": FieldType.UUID,
    "groupkey": FieldType.UUID,
    "name": FieldType.TEXT,
    "statuscode": FieldType.TEXT,
    "statusmessage": FieldType.TEXT,
    "requestcontenttype": FieldType.TEXT,
    "callbackhttpmethod": FieldType.TEXT,
    "callbackurl": FieldType.TEXT,
    "expirationdate": FieldType.DATETIME,
    "retrycount": FieldType.INTEGER,
    "created": FieldType.DATETIME,
    "createduserid": FieldType.UUID,
    "modified": FieldType.DATETIME,
    "modifieduserid": FieldType.UUID,
    "partitionkey": FieldType.TEXT,
}
RULE_FIELDS: Mapping[str, FieldType] = {
    "webhookruleid": FieldType.UUID,
    "webhookid": FieldType.UUID,
    "groupkey": FieldType.UUID,
    "tablekey": FieldType.TEXT,
    "eventtype": FieldType.TEXT,
    "filter": FieldType.TEXT,
    "created": FieldType.DATETIME,
    "createduserid": FieldType.UUID,
    "modified": FieldType.DATETIME,
    "modifieduserid": FieldType.UUID,
}
HISTORY_FIELDS: Mapping[str, FieldType] = {
    "webhookhistoryid": FieldType.UUID,
    "webhookid": FieldType.UUID,
    "groupkey": FieldType.UUID,
    "eventtype": FieldType.TEXT,  # "Invoice.U"
    "requestsent": FieldType.BOOLEAN,
    "issuccessful": FieldType.BOOLEAN,
    "responsestatuscode": FieldType.TEXT,
    "processresultmessage": FieldType.TEXT,
    "failurecount": FieldType.INTEGER,
    "timestamp": FieldType.DATETIME,
}
WEBHOOK_DEFAULT_ORDER = "created ASC, webhookId ASC"
RULE_DEFAULT_ORDER = "created ASC, webhookRuleId ASC"
HISTORY_DEFAULT_ORDER = "timestamp DESC"


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: filter, order (text, validated by the store) and page."""

    filter: Node | None = None
    order: str | None = None
    page_size: int = 250
    page_number: int = 0


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    records: list[T]
    total_count: int


class Store(abc.ABC):
    """Async persistence for keys, webhooks, rules, events and notifications."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreError if the database does not answer (readiness)."""

    async def watch_new_work(self, callback: Callable[[], None]) -> None:  # noqa: B027
        """Call `callback` when another process adds due notifications, until `close()`.

        By default there is nothing to watch: with an embedded store the API that adds work
        runs in the worker's own process and wakes it directly.
        """

    # -- API keys ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def add_api_key(self, key: ApiKey) -> None:
        """Store a new key (hashed)."""

    @abc.abstractmethod
    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, revoked or not."""

    @abc.abstractmethod
    async def list_api_keys(self) -> list[ApiKey]:
        """Every key, oldest first."""

    @abc.abstractmethod
    async def revoke_api_key(self, api_key_id: UUID, when: datetime) -> bool:
        """Mark a key revoked; False if there is no such key."""

    @abc.abstractmethod
    async def group_key_for_name(self, group_name: str) -> UUID | None:
        """The group key already used for this group name, if any."""

    # -- Webhooks ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def add_webhooks(self, webhooks: Sequence[Webhook]) -> None:
        """Insert all or none."""

    @abc.abstractmethod
    async def get_webhook(self, group_key: UUID, webhook_id: UUID) -> Webhook | None:
        """One webhook of this group."""

    @abc.abstractmethod
    async def get_webhook_any_group(self, webhook_id: UUID) -> Webhook | None:
        """One webhook whatever its group (for the delivery worker only)."""

    @abc.abstractmethod
    async def update_webhook(self, webhook: Webhook, *, release_parked: bool = False) -> bool:
        """Replace the stored webhook with this one (same id and group); False if gone.

        The failure count is not taken from `webhook`: it belongs to record_attempts, and an
        update that read the webhook earlier must not write back an older count.

        With `release_parked` (reactivation), the count resets to 0 and its parked
        notifications become pending again, due now, in the same transaction.
        """

    @abc.abstractmethod
    async def delete_webhook(self, group_key: UUID, webhook_id: UUID) -> bool:
        """Delete a webhook with its rules and notifications; False if not found."""

    @abc.abstractmethod
    async def query_webhooks(self, group_key: UUID, query: Query) -> Page[Webhook]:
        """Filter, order and page this group's webhooks."""

    @abc.abstractmethod
    async def expire_webhooks(self, now: datetime, message: str) -> int:
        """Make Active webhooks whose expirationDate has passed Inactive; return how many."""

    # -- Rules ------------------------------------------------------------------------------
    @abc.abstractmethod
    async def add_rules(self, rules: Sequence[WebhookRule]) -> None:
        """Insert all or none."""

    @abc.abstractmethod
    async def get_rule(self, group_key: UUID, rule_id: UUID) -> WebhookRule | None:
        """One rule of this group."""

    @abc.abstractmethod
    async def update_rule(self, rule: WebhookRule) -> bool:
        """Replace the stored rule; False if gone."""

    @abc.abstractmethod
    async def delete_rule(self, group_key: UUID, rule_id: UUID) -> bool:
        """Delete a rule; False if not found."""

    @abc.abstractmethod
    async def query_rules(self, group_key: UUID, query: Query) -> Page[WebhookRule]:
        """Filter, order and page this group's rules."""

    @abc.abstractmethod
    async def rules_for_webhooks(
        self, group_key: UUID, webhook_ids: Sequence[UUID]
    ) -> dict[UUID, list[WebhookRule]]:
        """The rules of each of these webhooks (for include=WebhookRules)."""

    @abc.abstractmethod
    async def matching_rules(
        self, group_key: UUID, table_key: str, event_type: str
    ) -> list[tuple[WebhookRule, Webhook]]:
        """Rules (with their webhooks) for this table and event type, by index lookup."""

    # -- Events and notifications --------------------------------------------------------------
    @abc.abstractmethod
    async def add_events(
        self, events: Sequence[Event], notifications: Sequence[Notification]
    ) -> list[int]:
        """Store events and their notifications in one transaction.

        Each notification's `sequence` is assigned here from its webhook's counter, in the order
        given; the value passed in is ignored. Returns the sequence numbers assigned, in the
        order of `notifications`. A notification may come leased already (`lease_owner`,
        `lease_until`): a worker in this process took it, and claims leave it alone.
        """

    @abc.abstractmethod
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
        """Lease up to `limit` pending notifications due by `now` (or whose lease expired).

        The longest-due are leased first (by due time, then webhook, then sequence, so a webhook
        with a deep backlog cannot hold the others back); the batch comes back ordered by webhook
        then sequence. A claimed notification is invisible to other claims
        until its lease ends. Notifications of `exclude_webhooks` and of `exclude_groups` are
        skipped (the caller has enough of theirs queued already).
        """

    @abc.abstractmethod
    async def record_attempts(self, outcomes: Sequence[AttemptOutcome]) -> int:
        """Settle attempt outcomes (gateway.outcomes.settle) against the webhook row as it is in
        the same transaction; return how many held their lease (a lost lease is dropped)."""

    @abc.abstractmethod
    async def release_leases(self, lease_owner: str) -> int:
        """Give back every lease this owner holds (graceful shutdown)."""

    @abc.abstractmethod
    async def get_notification(
        self, group_key: UUID, webhook_id: UUID, notification_id: UUID
    ) -> Notification | None:
        """One history row of this group's webhook."""

    @abc.abstractmethod
    async def requeue_notification(
        self, group_key: UUID, webhook_id: UUID, notification_id: UUID, now: datetime
    ) -> bool:
        """Make a failed or parked notification pending and due now; False if not found."""

    @abc.abstractmethod
    async def query_history(
        self, group_key: UUID, webhook_id: UUID, query: Query
    ) -> Page[Notification]:
        """Filter and page one webhook's history (HISTORY_FIELDS)."""

    @abc.abstractmethod
    async def prune_history(self, succeeded_before: datetime) -> int:
        """Delete successful notifications older than this; return how many."""

    @abc.abstractmethod
    async def delivery_stats(self, now: datetime) -> dict[str, float]:
        """Queue depth by state, and for how many seconds the longest-waiting due notification
        has been due."""
