"""How one delivery attempt settles its notification and its webhook (contract §5, §6).

Every rule of `settle` pinned field by field: the notification's state, when it is due again,
whether history shows it delivered, its processResultMessage, the webhook's change, and whether
the webhook's other pending notifications are parked. Then a batch: each outcome settled against
the webhook as the earlier ones left it, the status changes it reports, and the webhooks the
worker must stop sending to.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from gateway import lifecycle
from gateway.models import NotificationState, StatusReason, Webhook, WebhookStatus
from gateway.outcomes import (
    DUE_AGAIN,
    AttemptOutcome,
    Effect,
    LifecycleChange,
    Recorded,
    Settlement,
    changes_of,
    not_active,
    settle,
    settle_in_order,
)
from tests.factories import make_webhook

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(seconds=30)
ACTIVE, INACTIVE, ERRORED = WebhookStatus.ACTIVE, WebhookStatus.INACTIVE, WebhookStatus.ERRORED
PENDING, PARKED = NotificationState.PENDING, NotificationState.PARKED
SUCCEEDED, FAILED = NotificationState.SUCCEEDED, NotificationState.FAILED
GONE_MESSAGE = "callback answered 410 Gone (unsubscribed)"


def outcome(
    effect: Effect, cause: str = "HTTP 500", retry_at: datetime | None = LATER
) -> AttemptOutcome:
    return AttemptOutcome(uuid4(), "worker-1", effect, cause, retry_at)


def paused(**overrides: object) -> Webhook:
    fields: dict[str, object] = {
        "status_code": INACTIVE,
        "status_message": "paused by owner",
        "status_reason": StatusReason.PAUSED,
    }
    return make_webhook(**{**fields, **overrides})


# --- one outcome ---------------------------------------------------------------------------


def test_a_success_is_recorded_delivered_and_leaves_a_clean_webhook_alone() -> None:
    done = settle(make_webhook(), outcome(Effect.SUCCESS, "HTTP 204"), NOW)
    assert done == Settlement(SUCCEEDED, None, True, "HTTP 204", None, False)
    assert (done.attempted, done.logged) == (True, False)


def test_a_success_after_failures_resets_the_count() -> None:
    hook = make_webhook(retry_count=3, failure_count=2)
    done = settle(hook, outcome(Effect.SUCCESS, "HTTP 200"), NOW)
    assert done == Settlement(
        SUCCEEDED, None, True, "HTTP 200", lifecycle.Transition(0, ACTIVE, None, None, False), False
    )


def test_a_success_in_flight_when_the_webhook_was_paused_is_still_a_delivery() -> None:
    # The request reached the partner: history says so, and the pause stays as it was.
    hook = paused(failure_count=1)
    done = settle(hook, outcome(Effect.SUCCESS, "HTTP 200"), NOW)
    assert (done.state, done.is_successful, done.park_webhook) == (SUCCEEDED, True, False)
    assert done.webhook == lifecycle.Transition(
        0, INACTIVE, "paused by owner", StatusReason.PAUSED, park=False
    )


def test_a_failure_within_retry_count_is_retried_when_the_policy_says() -> None:
    hook = make_webhook(retry_count=2, failure_count=1)
    done = settle(hook, outcome(Effect.FAILURE, "HTTP 503", LATER), NOW)
    assert done == Settlement(
        PENDING, LATER, False, "HTTP 503", lifecycle.Transition(2, ACTIVE, None, None, False), False
    )
    # A failed request goes to the attempt log, so a later success does not hide it.
    assert (done.attempted, done.logged) == (True, True)


def test_a_failure_without_a_retry_time_is_due_at_once() -> None:
    done = settle(make_webhook(retry_count=1), outcome(Effect.FAILURE, retry_at=None), NOW)
    assert (done.state, done.next_attempt_at) == (PENDING, NOW)


def test_the_failure_past_retry_count_errors_the_webhook_and_parks_the_rest() -> None:
    hook = make_webhook(retry_count=1, failure_count=1)
    done = settle(hook, outcome(Effect.FAILURE, "HTTP 500", LATER), NOW)
    errored = lifecycle.Transition(
        2, ERRORED, "2 consecutive failed deliveries; last: HTTP 500", StatusReason.FAILING, True
    )
    assert done == Settlement(PARKED, None, False, "HTTP 500", errored, True)
    assert (done.attempted, done.logged) == (True, True)


def test_gone_unsubscribes_the_webhook_and_parks_the_rest() -> None:
    hook = make_webhook(failure_count=2)
    done = settle(hook, outcome(Effect.GONE, "HTTP 410"), NOW)
    unsubscribed = lifecycle.Transition(
        2, INACTIVE, GONE_MESSAGE, StatusReason.UNSUBSCRIBED, park=True
    )
    assert done == Settlement(PARKED, None, False, "HTTP 410", unsubscribed, True)
    assert (done.attempted, done.logged) == (True, True)


@pytest.mark.parametrize("effect", [Effect.FAILURE, Effect.GONE])
def test_a_failed_request_in_flight_when_the_webhook_left_active_is_kept_for_later(
    effect: Effect,
) -> None:
    # No retry while it is not Active, no second change of status, nothing else to park.
    hook = paused(retry_count=0)
    done = settle(hook, outcome(effect, "HTTP 500"), NOW)
    assert done == Settlement(PARKED, None, False, "HTTP 500", None, False)
    assert (done.attempted, done.logged) == (True, True)


def test_a_failure_on_a_webhook_past_its_expiration_is_kept_for_a_renewal() -> None:
    hook = make_webhook(retry_count=0, expiration_date=NOW)
    done = settle(hook, outcome(Effect.FAILURE), NOW)
    assert done == Settlement(PARKED, None, False, "HTTP 500", None, False)


def test_a_failure_just_before_the_expiration_counts_as_usual() -> None:
    hook = make_webhook(retry_count=3, expiration_date=NOW + timedelta(microseconds=1))
    done = settle(hook, outcome(Effect.FAILURE), NOW)
    assert (done.state, done.next_attempt_at, done.webhook) == (
        PENDING, LATER, lifecycle.Transition(1, ACTIVE, None, None, False)
    )  # fmt: skip


def test_not_sent_to_a_webhook_not_active_parks_it_saying_why() -> None:
    hook = make_webhook(
        status_code=ERRORED,
        status_message="4 consecutive failed deliveries; last: HTTP 500",
        status_reason=StatusReason.FAILING,
        failure_count=4,
    )
    done = settle(hook, outcome(Effect.NOT_SENT, "not sent"), NOW)
    why = "parked: webhook is Errored (4 consecutive failed deliveries; last: HTTP 500)"
    assert done == Settlement(PARKED, None, False, why, None, False, attempted=False)
    # Nothing went out: the last attempt's record stays, and no attempt is logged.
    assert done.logged is False


def test_not_sent_to_an_expired_webhook_says_it_expired_before_the_sweep_runs() -> None:
    expiration = datetime(2029, 12, 31, tzinfo=UTC)
    done = settle(make_webhook(expiration_date=expiration), outcome(Effect.NOT_SENT), NOW)
    assert done.state is PARKED
    assert done.process_result_message == (
        "parked: webhook is Inactive (expired on 2029-12-31T00:00:00Z)"
    )


def test_not_sent_to_a_webhook_active_again_makes_it_due_now() -> None:
    done = settle(make_webhook(failure_count=1), outcome(Effect.NOT_SENT, "not sent"), NOW)
    assert done == Settlement(PENDING, NOW, False, DUE_AGAIN, None, False, attempted=False)
    assert DUE_AGAIN == "due again: the webhook is Active"
    assert done.logged is False


@pytest.mark.parametrize(
    "hook", [make_webhook(failure_count=2), paused()], ids=["active", "paused"]
)
def test_a_notification_that_cannot_be_rendered_fails_for_good_without_counting(
    hook: Webhook,
) -> None:
    done = settle(hook, outcome(Effect.UNDELIVERABLE, "cannot render: bad record"), NOW)
    assert done == Settlement(
        FAILED, None, False, "cannot render: bad record", None, False, attempted=False
    )
    assert done.logged is False


@pytest.mark.parametrize(
    ("effect", "sent"),
    [
        (Effect.SUCCESS, True),
        (Effect.FAILURE, True),
        (Effect.GONE, True),
        (Effect.NOT_SENT, False),
        (Effect.UNDELIVERABLE, False),
    ],
)
def test_an_outcome_says_whether_a_request_went_out_as_its_settlement_counts_it(
    effect: Effect, sent: bool
) -> None:
    # history's requestSent and attempt count follow the settlement; the outcome agrees.
    attempt = outcome(effect)
    assert attempt.request_sent is sent
    assert settle(make_webhook(), attempt, NOW).attempted is sent


# --- a batch -------------------------------------------------------------------------------


def test_failures_settled_together_each_count_against_the_webhook() -> None:
    hook = make_webhook(retry_count=1)
    batch = [(outcome(Effect.FAILURE, f"HTTP 50{i}"), hook) for i in range(3)]
    settled = settle_in_order(batch, NOW)
    assert [done.state for _, _, done in settled] == [PENDING, PARKED, PARKED]
    first, second, third = (done.webhook for _, _, done in settled)
    assert first == lifecycle.Transition(1, ACTIVE, None, None, False)
    assert second == lifecycle.Transition(
        2, ERRORED, "2 consecutive failed deliveries; last: HTTP 501", StatusReason.FAILING, True
    )
    # The third found it Errored: kept for reactivation, no second status change.
    assert third is None
    # Each is settled against the webhook as the ones before it left it.
    once = dataclasses.replace(hook, failure_count=1)
    errored = dataclasses.replace(
        once,
        failure_count=2,
        status_code=ERRORED,
        status_message="2 consecutive failed deliveries; last: HTTP 501",
        status_reason=StatusReason.FAILING,
    )
    assert [seen for _, seen, _ in settled] == [hook, once, errored]
    assert [o for o, _, _ in settled] == [o for o, _ in batch]


def test_a_batch_keeps_each_webhook_apart() -> None:
    one, two = make_webhook(retry_count=1), make_webhook(retry_count=1)
    settled = settle_in_order(
        [(outcome(Effect.FAILURE), one), (outcome(Effect.FAILURE), two),
         (outcome(Effect.FAILURE), one)],
        NOW,
    )  # fmt: skip
    changes = [done.webhook for _, _, done in settled]
    assert [c.failure_count if c else None for c in changes] == [1, 1, 2]
    assert [c.status if c else None for c in changes] == [ACTIVE, ACTIVE, ERRORED]


def test_a_success_after_gone_in_one_batch_keeps_the_webhook_unsubscribed() -> None:
    # The success's reset is written over the row the 410 left: status, message and reason.
    hook = make_webhook(failure_count=1)
    settled = settle_in_order(
        [(outcome(Effect.GONE, "HTTP 410"), hook), (outcome(Effect.SUCCESS, "HTTP 200"), hook)],
        NOW,
    )
    assert settled[1][2].webhook == lifecycle.Transition(
        0, INACTIVE, GONE_MESSAGE, StatusReason.UNSUBSCRIBED, park=False
    )


def test_not_sent_after_the_failure_that_errored_says_errored() -> None:
    hook = make_webhook(retry_count=0)
    settled = settle_in_order(
        [(outcome(Effect.FAILURE, "HTTP 500"), hook), (outcome(Effect.NOT_SENT), hook)], NOW
    )
    assert settled[1][2].process_result_message == (
        "parked: webhook is Errored (1 consecutive failed deliveries; last: HTTP 500)"
    )


def test_an_outcome_that_changes_nothing_leaves_the_next_one_the_webhook_as_read() -> None:
    hook = make_webhook(retry_count=0)
    settled = settle_in_order(
        [(outcome(Effect.SUCCESS), hook), (outcome(Effect.FAILURE), hook)], NOW
    )
    assert settled[0][2].webhook is None
    assert settled[1][1] is hook
    assert settled[1][2].webhook is not None and settled[1][2].webhook.status is ERRORED


def test_the_changes_of_a_batch_are_its_changes_of_status_in_order() -> None:
    flaky, gone = make_webhook(retry_count=0), make_webhook()
    recovering = make_webhook(retry_count=3, failure_count=2)
    settled = settle_in_order(
        [
            (outcome(Effect.SUCCESS), recovering),  # count reset: no change of status
            (outcome(Effect.GONE, "HTTP 410"), gone),
            (outcome(Effect.FAILURE, "HTTP 502"), flaky),
            (outcome(Effect.FAILURE, "HTTP 503"), flaky),  # already Errored: no second change
        ],
        NOW,
    )
    assert changes_of(settled) == [
        LifecycleChange(
            gone.webhook_id, gone.group_key, INACTIVE, GONE_MESSAGE, StatusReason.UNSUBSCRIBED
        ),
        LifecycleChange(
            flaky.webhook_id,
            flaky.group_key,
            ERRORED,
            "1 consecutive failed deliveries; last: HTTP 502",
            StatusReason.FAILING,
        ),
    ]


def test_a_batch_without_changes_of_status_reports_none() -> None:
    hook = make_webhook(retry_count=3)
    settled = settle_in_order(
        [(outcome(Effect.FAILURE), hook), (outcome(Effect.SUCCESS), hook)], NOW
    )
    assert [done.webhook is None for _, _, done in settled] == [False, False]
    assert changes_of(settled) == []


def test_the_webhooks_to_stop_sending_to_are_those_not_active_once_the_batch_is_written() -> None:
    errored, gone, fine = make_webhook(retry_count=0), make_webhook(), make_webhook(retry_count=5)
    already = paused()
    expired = make_webhook(expiration_date=NOW)
    not_yet = make_webhook(expiration_date=NOW + timedelta(microseconds=1))
    settled = settle_in_order(
        [
            (outcome(Effect.FAILURE), errored),
            (outcome(Effect.GONE), gone),
            (outcome(Effect.FAILURE), fine),
            (outcome(Effect.SUCCESS), already),
            (outcome(Effect.SUCCESS), expired),
            (outcome(Effect.SUCCESS), not_yet),
        ],
        NOW,
    )
    assert not_active(settled, NOW) == {
        errored.webhook_id, gone.webhook_id, already.webhook_id, expired.webhook_id
    }  # fmt: skip


def test_a_webhook_is_judged_by_its_last_outcome_in_the_batch() -> None:
    hook = make_webhook(retry_count=1)
    settled = settle_in_order(
        [(outcome(Effect.FAILURE), hook), (outcome(Effect.FAILURE), hook)], NOW
    )
    assert not_active(settled[:1], NOW) == set()
    assert not_active(settled, NOW) == {hook.webhook_id}


def test_a_store_that_settled_nothing_reports_nothing() -> None:
    assert Recorded(0) == Recorded(0, [], set())
