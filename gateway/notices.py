"""Lifecycle notices: every change of a webhook's lifecycle, published into the webhook's own
group as an event of table `WebhookLifecycle`, type U, with one record

    {"id": <webhookId>, "event": <kind>, "statusCode", "statusMessage", "expirationDate",
     "occurredAt"}

which webhooks receive through ordinary rules (a rule's filter may pick kinds: `event eq
'errored'`), signed, retried and recorded like any notification. The kinds:

    errored             Errored by failed deliveries (retryCount, failureWindow)
    disabled            Inactive by a 410 Gone (unsubscribed) or by its owner (paused)
    expiring            lifecycle_warning_before ahead of expirationDate, once per date
    expired             Inactive because its expirationDate passed (the sweep writes it)
    reactivated         Active again (an owner's PATCH, or an expired one renewed)
    verificationFailed  Errored by a failed re-verification handshake

The store writes a notice's event and notifications in the transaction that makes the change,
so a change is never without its notice, nor a notice without its change.

No loop: a webhook never receives notices about itself. A notice about W goes to the other
webhooks that subscribe; if one of them, S, then fails and leaves Active, that is a change of S
and one notice, parked at W if W is not Active. A webhook leaves Active at most once before an
owner brings it back, so failures alone end every chain within one notice per webhook.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway import lifecycle, matching, metrics
from gateway.ids import new_id
from gateway.models import (
    Event,
    EventType,
    Notification,
    NotificationState,
    StatusReason,
    Webhook,
    WebhookStatus,
)
from gateway.wire_values import timestamp

TABLE_KEY = "WebhookLifecycle"
EVENT_TYPE = EventType.UPDATE


class Kind(enum.StrEnum):
    """What happened to the webhook a notice is about (its record's `event`)."""

    ERRORED = "errored"
    DISABLED = "disabled"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    REACTIVATED = "reactivated"
    VERIFICATION_FAILED = "verificationFailed"


_LEFT_ACTIVE = {
    StatusReason.FAILING: Kind.ERRORED,
    StatusReason.UNVERIFIED: Kind.VERIFICATION_FAILED,
    StatusReason.EXPIRED: Kind.EXPIRED,
    StatusReason.PAUSED: Kind.DISABLED,
    StatusReason.UNSUBSCRIBED: Kind.DISABLED,
}


@dataclass(frozen=True, slots=True)
class Notice:
    """One lifecycle notice: its kind, the webhook as the change left it, and when."""

    kind: Kind
    webhook: Webhook
    occurred_at: datetime

    def record(self) -> dict[str, Any]:
        """The event's one record."""
        hook = self.webhook
        return {
            "id": str(hook.webhook_id),
            "event": self.kind.value,
            "statusCode": hook.status_code.value,
            "statusMessage": hook.status_message,
            "expirationDate": timestamp(hook.expiration_date),
            "occurredAt": timestamp(self.occurred_at),
        }


def kind_of(before: Webhook, after: Webhook, now: datetime) -> Kind | None:
    """The notice a change of status from `before` to `after` gives, if it is a change: of
    status, or of why the webhook is not Active. An Active webhook past its date, renewed
    before the sweep wrote it Inactive, was expired to every reader: it is reactivated."""
    if after.status_code is WebhookStatus.ACTIVE:
        renewed = before.status_code is WebhookStatus.ACTIVE and lifecycle.is_expired(before, now)
        stopped = before.status_code is not WebhookStatus.ACTIVE
        return Kind.REACTIVATED if renewed or stopped else None
    if (before.status_code, before.status_reason) == (after.status_code, after.status_reason):
        return None
    if after.status_reason is not None:
        return _LEFT_ACTIVE[after.status_reason]
    return Kind.ERRORED if after.status_code is WebhookStatus.ERRORED else Kind.DISABLED


def about(before: Webhook, after: Webhook, now: datetime) -> list[Notice]:
    """The notice of this change, if it is one (a list of none or one, to extend others)."""
    kind = kind_of(before, after, now)
    return [] if kind is None else [Notice(kind, after, now)]


def publication(
    notice: Notice, subscribers: Sequence[matching.Subscriber]
) -> tuple[Event, list[Notification]]:
    """The notice as an event of its webhook's group, and a notification (pending: the store
    parks it for a webhook that is not Active) for each subscriber whose rules accept its
    record, but the webhook it is about."""
    hook, now = notice.webhook, notice.occurred_at
    event = Event(new_id(), hook.group_key, TABLE_KEY, EVENT_TYPE, (notice.record(),), now)
    others = [s for s in subscribers if s[0].webhook_id != hook.webhook_id]
    notes = [
        Notification(
            notification_id=new_id(),
            group_key=hook.group_key,
            webhook_id=receiver.webhook_id,
            event_id=event.event_id,
            table_key=TABLE_KEY,
            event_type=EVENT_TYPE,
            records=tuple(records),
            sequence=0,
            triggered_at=now,
            state=NotificationState.PENDING,
            next_attempt_at=now,
            created=now,
            timestamp=now,
        )
        for receiver, records in matching.select(others, event)
    ]
    return event, notes


def count(kinds: Iterable[str]) -> None:
    """Count notices issued, by kind (after their transaction committed)."""
    for kind in kinds:
        metrics.LIFECYCLE_NOTICES.labels(event=str(kind)).inc()
