"""The small types the store's callers share: an owner's edit (`WebhookEdit`, over `EDITABLE`),
what `add_events` stored (`Added`), what a hand retry found (`Requeue`), a parsed query and its
page (`Query`, `Page`), a webhook's deliveries in one hour (`HourOfDeliveries`), and the
invariants `check_invariants` counts (`INVARIANTS`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from gateway.filters import Node
from gateway.lifecycle import StatusChange
from gateway.models import Notification, Webhook, settable
from gateway.signing import SCHEME_FIELDS

# The fields of a webhook an owner's request may write (`WebhookEdit.values`), and those whose
# value it may rely on (`WebhookEdit.expect`): its Settable ones, those a change of signature
# scheme writes beside it (its key pair), who changed it when, and when a handshake of the
# request verified its callback. Status fields change only through a StatusChange.
EDITABLE = frozenset(
    {name for name, (_, mark) in settable(Webhook).items() if not mark.lifecycle}
    | SCHEME_FIELDS
    | {"modified", "modified_user_id", "verified_at", "reverify_due"}
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


class Requeue(enum.Enum):
    """What a hand retry of one notification found."""

    QUEUED = "queued"
    NOT_FOUND = "not found"
    SUCCEEDED = "succeeded"  # delivered already: nothing to retry
    NOT_ACTIVE = "not active"  # its webhook is not Active: it stays as it is
    TEST = "test"  # a test send: sent once, never queued


@dataclass(frozen=True, slots=True)
class Added:
    """What `add_events` stored: each notification's sequence number, in the order given, and
    for each webhook whether it was Active in that transaction (its notifications are pending)
    or not (they are parked, whatever the caller proposed). A Strict webhook's notifications
    joined its queue instead (gateway.ordering; `queued`), never leased: `due` says whether
    the head of one of those queues became due. A webhook deleted since its rules were read is
    `dropped`: its notifications were not stored (sequence 0, not Active)."""

    sequences: list[int]
    active: dict[UUID, bool]
    queued: frozenset[UUID] = frozenset()
    due: bool = False
    dropped: frozenset[UUID] = frozenset()

    def pending(self, note: Notification) -> bool:
        """Whether this notification was stored pending as given (leased, if it came so)."""
        return self.active[note.webhook_id] and not (self.queued and note.webhook_id in self.queued)

    def stored(self, notes: Sequence[Notification]) -> list[Notification]:
        """Those of these notifications that were stored."""
        return (
            [n for n in notes if n.webhook_id not in self.dropped] if self.dropped else list(notes)
        )


INVARIANTS = {
    "parked_of_active": "parked notifications of an Active webhook (released)",
    "pending_of_inactive": "unleased pending notifications of a webhook not Active (parked)",
    # gateway.ordering's rule for a Strict webhook's queue
    "queue_without_head": "a Strict webhook's waiting notifications with no head and none in "
    "flight (the lowest made the head)",
    "queue_extra_heads": "unleased pending or parked notifications of a Strict webhook that are "
    "not the head of its queue (made to wait)",
    "waiting_of_unordered": "waiting notifications of an Unordered webhook (pending, or parked "
    "if it is not Active)",
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
class HourOfDeliveries:
    """A webhook's attempts in one UTC hour (store.delivery_activity): how many delivered and
    how many failed, and how long the receiver took to answer them (None: no time recorded)."""

    hour: datetime  # its start
    delivered: int
    failed: int
    mean_ms: float | None
    max_ms: float | None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of records, and how many match in all."""

    records: list[T]
    total_count: int
