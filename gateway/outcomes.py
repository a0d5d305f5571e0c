"""What one delivery attempt did, and how it settles the notification and its webhook.

The worker reports an `AttemptOutcome`; the store applies `settle` inside the transaction that
records it, against the webhook row as it is in that transaction. Counting consecutive
failures there, not in the worker, keeps the count right when several sends to one webhook are
in flight at once, or in several worker processes.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from gateway import lifecycle
from gateway.models import NotificationState, Webhook, WebhookStatus, record


class Effect(enum.StrEnum):
    SUCCESS = "success"  # 2xx
    FAILURE = "failure"  # any other answer, or no answer
    GONE = "gone"  # 410: the partner unsubscribed
    NOT_SENT = "not_sent"  # the webhook was not Active (or expired): parked, not attempted


@record
class AttemptOutcome:
    notification_id: UUID
    lease_owner: str
    effect: Effect
    cause: str  # "HTTP 500", "timed out after 10 s", ... for status messages
    retry_at: datetime | None  # when to try again if the webhook stays Active
    response_status_code: str | None = None
    request_message: str | None = None
    response_message: str | None = None

    @property
    def request_sent(self) -> bool:
        """Whether a request went out (parking sends nothing)."""
        return self.effect is not Effect.NOT_SENT


@dataclass(frozen=True, slots=True)
class Settlement:
    """The writes one outcome causes."""

    state: NotificationState
    next_attempt_at: datetime | None
    is_successful: bool
    process_result_message: str
    webhook: lifecycle.Transition | None  # None: leave the webhook row alone
    park_webhook: bool  # park the webhook's other pending notifications


def settle(hook: Webhook, outcome: AttemptOutcome, now: datetime) -> Settlement:
    """Decide the notification's new state and the webhook's lifecycle change."""
    if outcome.effect is Effect.SUCCESS:
        change = lifecycle.after_success(hook) if hook.failure_count else None
        return Settlement(NotificationState.SUCCEEDED, None, True, outcome.cause, change, False)
    if outcome.effect is Effect.NOT_SENT or hook.status_code is not WebhookStatus.ACTIVE:
        # Left Active while this was in flight (or before): keep it for reactivation.
        return Settlement(NotificationState.PARKED, None, False, outcome.cause, None, False)
    if outcome.effect is Effect.GONE:
        return Settlement(
            NotificationState.PARKED, None, False, outcome.cause, lifecycle.after_gone(hook), True
        )
    change = lifecycle.after_failure(hook, outcome.cause)
    if change.status is WebhookStatus.ACTIVE:
        return Settlement(
            NotificationState.PENDING, outcome.retry_at or now, False, outcome.cause, change, False
        )
    return Settlement(NotificationState.PARKED, None, False, outcome.cause, change, True)


def settle_in_order(
    held: Iterable[tuple[AttemptOutcome, Webhook]], now: datetime
) -> list[tuple[AttemptOutcome, Webhook, Settlement]]:
    """Settle a batch of outcomes, each against its webhook as it was read, and as the earlier
    outcomes of the batch left it: the same as settling them one at a time, with one read."""
    current: dict[UUID, Webhook] = {}
    settled = []
    for outcome, read in held:
        hook = current.get(read.webhook_id, read)
        done = settle(hook, outcome, now)
        if (change := done.webhook) is not None:
            current[hook.webhook_id] = dataclasses.replace(
                hook,
                failure_count=change.failure_count,
                status_code=change.status,
                status_message=change.status_message,
            )
        settled.append((outcome, hook, done))
    return settled
