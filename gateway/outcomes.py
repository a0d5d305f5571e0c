"""What one delivery attempt did, and how it settles the notification and its webhook.

The worker reports an `AttemptOutcome`; the store applies `settle` inside the transaction that
records it, against the webhook row as it is in that transaction. Counting consecutive
failures there, not in the worker, keeps the count right when several sends to one webhook are
in flight at once, or in several worker processes. So does a failure window's count: the store
reads the failed attempts already logged within it in the same transaction (`recent`).

    SUCCESS            a delivery by the webhook's successPolicy: the failure count resets
    FAILURE            any other answer, or none: retried while the webhook stays Active
    PERMANENT_FAILURE  a failure its retryPolicy does not retry: failed for good with its
                       reason, and counted for the lifecycle like any failure
    GONE               410: the partner unsubscribed; the webhook becomes Inactive
    NOT_SENT           the worker saw the webhook not Active: parked (or due again, if the
                       store finds it Active after all); not an attempt, so the last attempt's
                       record stays
    UNDELIVERABLE      the notification cannot be rendered: a permanent failure with its
                       reason, not counted against the webhook

A request that went out (SUCCESS, FAILURE, PERMANENT_FAILURE, GONE) is an attempt: it replaces
the previous attempt's fields on the notification's row, and a failed one is also kept in the
attempt log, so a later success does not erase why earlier attempts failed.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from gateway import lifecycle
from gateway.models import NotificationState, StatusReason, Webhook, WebhookStatus, record


class Effect(enum.StrEnum):
    """What an attempt came to (the table above): retry.classify gives the first four, for a
    request that went out; the sender gives the other two, when none did."""

    SUCCESS = "success"
    FAILURE = "failure"
    PERMANENT_FAILURE = "permanent_failure"
    GONE = "gone"
    NOT_SENT = "not_sent"
    UNDELIVERABLE = "undeliverable"


SENT = frozenset({Effect.SUCCESS, Effect.FAILURE, Effect.PERMANENT_FAILURE, Effect.GONE})
DUE_AGAIN = "due again: the webhook is Active"
NOT_RETRIED = "failed for good, not retried (retryPolicy ServerErrorsOnly)"


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
    elapsed_ms: float | None = None  # how long the receiver took to answer (None: no answer)

    @property
    def request_sent(self) -> bool:
        """Whether a request went out (parking and refusing to render send nothing)."""
        return self.effect in SENT


@record
class Settlement:
    """The writes one outcome causes (one per outcome: a `record`, whose __init__ does not set
    each field through object.__setattr__ as a frozen dataclass's does)."""

    state: NotificationState
    next_attempt_at: datetime | None
    is_successful: bool
    process_result_message: str
    webhook: lifecycle.Transition | None  # None: leave the webhook row alone
    park_webhook: bool  # park the webhook's other pending notifications

    @property
    def logged(self) -> bool:
        """Whether the attempt goes to the attempt log (every failed request that went out)."""
        return self.attempted and not self.is_successful

    attempted: bool = True  # a request went out: the row's attempt fields are replaced


@dataclass(frozen=True, slots=True)
class LifecycleChange:
    """A webhook's status as a settlement changed it (for the worker and the logs)."""

    webhook_id: UUID
    group_key: UUID
    status: WebhookStatus
    status_message: str | None
    reason: StatusReason | None


def failed(outcome: AttemptOutcome) -> bool:
    """Whether the outcome is a failed attempt: a request went out and did not succeed (what
    the attempt log keeps, and a failure window counts)."""
    return outcome.request_sent and outcome.effect is not Effect.SUCCESS


def settle(
    hook: Webhook, outcome: AttemptOutcome, now: datetime, window_failures: int = 0
) -> Settlement:
    """Decide the notification's new state and the webhook's lifecycle change;
    `window_failures` counts the failed attempts within its failure window, this one too."""
    effect = outcome.effect
    if effect is Effect.SUCCESS:  # the common case, whatever the webhook's status
        change = lifecycle.after_success(hook) if hook.failure_count else None
        return Settlement(NotificationState.SUCCEEDED, None, True, outcome.cause, change, False)
    active = lifecycle.is_active(hook, now)
    if effect is Effect.UNDELIVERABLE:
        return Settlement(
            NotificationState.FAILED, None, False, outcome.cause, None, False, attempted=False
        )
    if effect is Effect.NOT_SENT:
        if active:
            # The worker's view was stale: the webhook is Active again, so it goes out now.
            return Settlement(
                NotificationState.PENDING, now, False, DUE_AGAIN, None, False, attempted=False
            )
        return Settlement(
            NotificationState.PARKED, None, False, _parked(hook, now), None, False, attempted=False
        )
    if effect is Effect.PERMANENT_FAILURE:
        return _failed_for_good(hook, outcome.cause, active, window_failures)
    if not active:
        # Left Active while this was in flight (or before): keep it for reactivation.
        return Settlement(NotificationState.PARKED, None, False, outcome.cause, None, False)
    if effect is Effect.GONE:
        return Settlement(
            NotificationState.PARKED, None, False, outcome.cause, lifecycle.after_gone(hook), True
        )
    change = lifecycle.after_failure(hook, outcome.cause, window_failures)
    if change.status is WebhookStatus.ACTIVE:
        return Settlement(
            NotificationState.PENDING, outcome.retry_at or now, False, outcome.cause, change, False
        )
    return Settlement(NotificationState.PARKED, None, False, outcome.cause, change, True)


def _failed_for_good(hook: Webhook, cause: str, active: bool, window_failures: int) -> Settlement:
    """A failure the webhook's retryPolicy does not retry: the notification fails whatever the
    webhook's status (reactivating it would not send it again), and counts as a failure for an
    Active webhook's lifecycle (both rules), as a retried one would."""
    message = f"{cause}: {NOT_RETRIED}"
    change = lifecycle.after_failure(hook, cause, window_failures) if active else None
    leaves = change is not None and change.status is not WebhookStatus.ACTIVE
    return Settlement(NotificationState.FAILED, None, False, message, change, leaves)


def _parked(hook: Webhook, now: datetime) -> str:
    status, message = lifecycle.effective_status(hook, now)
    return lifecycle.parked_message(status, message)


def settle_in_order(
    held: Iterable[tuple[AttemptOutcome, Webhook]],
    now: datetime,
    recent: Mapping[UUID, int] | None = None,
) -> list[tuple[AttemptOutcome, Webhook, Settlement]]:
    """Settle a batch of outcomes, each against its webhook as it was read, and as the earlier
    outcomes of the batch left it: the same as settling them one at a time, with one read.
    `recent` gives the failed attempts already logged within a webhook's failure window; each
    failed outcome of the batch adds one."""
    current: dict[UUID, Webhook] = {}
    window = dict(recent or {})
    settled = []
    # Usually no webhook changes and none has a window: then no id is hashed (uuid.UUID's
    # hash is Python code) for either dict.
    for outcome, read in held:
        hook = current.get(read.webhook_id, read) if current else read
        if window and failed(outcome) and hook.webhook_id in window:
            window[hook.webhook_id] += 1
        done = settle(hook, outcome, now, window.get(hook.webhook_id, 0) if window else 0)
        if (change := done.webhook) is not None:
            current[hook.webhook_id] = dataclasses.replace(
                hook,
                failure_count=change.failure_count,
                status_code=change.status,
                status_message=change.status_message,
                status_reason=change.reason,
            )
        settled.append((outcome, hook, done))
    return settled


def changes_of(
    settled: Iterable[tuple[AttemptOutcome, Webhook, Settlement]],
) -> list[LifecycleChange]:
    """The status changes a settled batch made, in order, one per change of status."""
    changes = []
    for _, hook, done in settled:
        change = done.webhook
        if change is not None and change.status is not hook.status_code:
            changes.append(
                LifecycleChange(
                    hook.webhook_id,
                    hook.group_key,
                    change.status,
                    change.status_message,
                    change.reason,
                )
            )
    return changes


def not_active(
    settled: Iterable[tuple[AttemptOutcome, Webhook, Settlement]], now: datetime
) -> set[UUID]:
    """The webhooks of a settled batch that are not Active once it is written."""
    # Each webhook's last settlement decides; by the id's integer, whose hash is C's.
    last = {hook.webhook_id.int: (hook, done.webhook) for _, hook, done in settled}
    return {
        hook.webhook_id
        for hook, change in last.values()
        if (change.status if change is not None else hook.status_code) is not WebhookStatus.ACTIVE
        or lifecycle.is_expired(hook, now)
    }


@dataclass(frozen=True, slots=True)
class Recorded:
    """What `Store.record_attempts` did: how many outcomes held their lease, the status
    changes it made, which of the webhooks it settled are not Active now (the worker stops
    sending to those at once), and whether a Strict webhook's next notification is due."""

    count: int
    changes: list[LifecycleChange] = dataclasses.field(default_factory=list)
    not_active: set[UUID] = dataclasses.field(default_factory=set)
    notices: list[str] = dataclasses.field(default_factory=list)  # their kinds (gateway.notices)
    # A Strict webhook's next notification became due (gateway.ordering): claim it now.
    queue_due: bool = False
