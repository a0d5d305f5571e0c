"""The store interface: every persistent operation the gateway needs, async, backend-neutral.

Implementations: `sqlite.SqliteStore` (embedded default; memory:// is the same store on a
throwaway database, `sqlite.ThrowawaySqliteStore`) and `postgres.PostgresStore` (scale-out). One
contract suite (tests/integration/test_store_contract.py) runs against both.

Every read or write of a tenant's data takes the caller's `group_key`: a record of another group
is simply not found, so existence never leaks across groups.

Filters reach the store already parsed (`gateway.filters.Node`); each store compiles them over
the fields the wire models let a query name (`queries.listed`), never by pasting user text
into SQL.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, Self, TypeVar
from uuid import UUID

from gateway.errors import Conflict
from gateway.filters import Node
from gateway.lifecycle import StatusChange
from gateway.models import ApiKey, Attempt, Event, Notification, Webhook, WebhookRule, settable
from gateway.outcomes import AttemptOutcome, Recorded

# The fields of a webhook an owner's request may write (`WebhookEdit.values`), and those whose
# value it may rely on (`WebhookEdit.expect`): its Settable ones and who changed it when. Status
# fields change only through a StatusChange.
EDITABLE = frozenset(
    {name for name, (_, mark) in settable(Webhook).items() if not mark.lifecycle}
    | {"modified", "modified_user_id"}
)


@dataclass(frozen=True, slots=True)
class WebhookEdit:
    """One owner request's writes to one webhook, applied in one transaction: only the fields
    in `values` change; only while the fields in `expect` still have the values the request
    decided on (else `Conflict`); and the status change, if any, with the parking or release
    of the webhook's notifications that it implies."""

    values: Mapping[str, Any]
    expect: Mapping[str, Any] = field(default_factory=dict)
    status: StatusChange | None = None

    def __post_init__(self) -> None:
        unknown = (set(self.values) | set(self.expect)) - EDITABLE
        if unknown:
            raise ValueError(f"not editable: {', '.join(sorted(unknown))}")


def conflict(webhook_id: UUID, fields: Sequence[str]) -> Conflict:
    """The answer to an edit whose expectations no longer hold."""
    return Conflict(
        f"webhook {webhook_id} changed while this request was handled "
        f"({', '.join(fields)}); send the request again"
    )


class Requeue(enum.Enum):
    """What a hand retry of one notification found."""

    QUEUED = "queued"
    NOT_FOUND = "not found"
    SUCCEEDED = "succeeded"  # delivered already: nothing to retry
    NOT_ACTIVE = "not active"  # its webhook is not Active: it stays as it is


@dataclass(frozen=True, slots=True)
class Added:
    """What `add_events` stored: each notification's sequence number, in the order given, and
    for each webhook whether it was Active in that transaction (its notifications are pending)
    or not (they are parked, whatever the caller proposed)."""

    sequences: list[int]
    active: dict[UUID, bool]

    def pending(self, note: Notification) -> bool:
        """Whether this notification was stored pending."""
        return self.active[note.webhook_id]


INVARIANTS = {
    "parked_of_active": "parked notifications of an Active webhook (released)",
    "pending_of_inactive": "unleased pending notifications of a webhook not Active (parked)",
}


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

    async def watch_webhook_changes(  # noqa: B027
        self, callback: Callable[[UUID | None], None]
    ) -> None:
        """Call `callback` with a webhook's id when another process changes its status or
        secret (None: any may have changed), until `close()`. By default there is nothing to
        watch: the API of the same process tells its worker directly, and `serve` its worker
        processes."""

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
    async def edit_webhook(
        self, group_key: UUID, webhook_id: UUID, edit: WebhookEdit, now: datetime
    ) -> Webhook | None:
        """Apply an owner's edit in one transaction (see WebhookEdit); the webhook as it is
        after it, None if there is no such webhook, `Conflict` if an expectation failed.

        A status change to Active releases the parked notifications (due `now`, their leases
        cleared) and, with `reset_failures`, zeroes the failure count; a change away from
        Active parks the pending ones (their leases kept, so that sends in flight are
        recorded)."""

    @abc.abstractmethod
    async def regenerate_secret(
        self,
        group_key: UUID,
        webhook_id: UUID,
        secret: str,
        previous_until: datetime,
        now: datetime,
        user_id: UUID,
    ) -> Webhook | None:
        """Make `secret` the client secret and the current one the previous secret, signing
        until `previous_until`, in one statement (two at once chain, neither is lost); the
        webhook after it, or None."""

    @abc.abstractmethod
    async def delete_webhook(self, group_key: UUID, webhook_id: UUID) -> bool:
        """Delete a webhook with its rules and notifications; False if not found."""

    @abc.abstractmethod
    async def query_webhooks(self, group_key: UUID, query: Query) -> Page[Webhook]:
        """Filter, order and page this group's webhooks."""

    @abc.abstractmethod
    async def expire_webhooks(self, now: datetime) -> list[Webhook]:
        """Make Active webhooks whose expirationDate has passed Inactive (`lifecycle.expiry`:
        the status and message readers already see) and park their pending notifications, in
        one transaction; return them as they are now."""

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
    ) -> Added:
        """Store events and their notifications in one transaction.

        Each notification's `sequence` is assigned here from its webhook's counter, in the order
        given; the value passed in is ignored. Whether it waits pending or parked is decided
        here too, from its webhook as this transaction sees it: pending if the webhook is
        Active (and not expired), else parked with the reason, and then not leased. (A row in
        a finished state, seeded by tests or imports, is stored as it is.) A pending
        notification may come leased already (`lease_owner`, `lease_until`): a worker in this
        process took it, and claims leave it alone.
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
    async def record_attempts(self, outcomes: Sequence[AttemptOutcome]) -> Recorded:
        """Settle attempt outcomes (gateway.outcomes.settle) against the webhook row as it is in
        the same transaction, log the failed attempts, change the webhooks' lifecycles and park
        what that implies; say how many held their lease (a lost lease is dropped), the status
        changes made, and which of the webhooks are not Active now."""

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
    ) -> Requeue:
        """Make a notification that has not succeeded pending and due now, in one statement
        guarded by its webhook being Active (and not expired); what was found. Nothing of its
        recorded attempt changes."""

    @abc.abstractmethod
    async def attempts(
        self, group_key: UUID, webhook_id: UUID, notification_ids: Sequence[UUID]
    ) -> dict[UUID, list[Attempt]]:
        """The logged failed attempts of these notifications of this group's webhook, in order
        (every id is a key)."""

    @abc.abstractmethod
    async def query_history(
        self, group_key: UUID, webhook_id: UUID, query: Query
    ) -> Page[Notification]:
        """Filter, order and page one webhook's history."""

    @abc.abstractmethod
    async def prune_history(self, succeeded_before: datetime) -> int:
        """Delete successful notifications older than this; return how many."""

    @abc.abstractmethod
    async def check_invariants(self, now: datetime, *, repair: bool) -> dict[str, int]:
        """Count the notifications that break an invariant of `lifecycle` (INVARIANTS names
        them) and, with `repair`, set them right in the same transaction; by invariant."""

    @abc.abstractmethod
    async def delivery_stats(self, now: datetime) -> dict[str, float]:
        """Queue depth by state, and for how many seconds the longest-waiting due notification
        has been due."""

    # -- Handshake codes ----------------------------------------------------------------------
    @abc.abstractmethod
    async def take_handshake_nonce(self, nonce: str, expires: datetime) -> bool:
        """Mark the nonce of an accepted handshake code used: True the first time, False ever
        after, in every process sharing the store (atomically: of two takes at once, one
        wins). Kept at least until `expires`, when its code can no longer pass anyway."""

    @abc.abstractmethod
    async def prune_handshake_nonces(self, now: datetime) -> int:
        """Forget the nonces that expired by `now` (housekeeping); return how many."""
