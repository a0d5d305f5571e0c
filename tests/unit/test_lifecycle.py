"""Lifecycle transitions: when a webhook turns Errored or Inactive, and how owners bring it back."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway import lifecycle
from gateway.errors import ValidationError
from gateway.models import Webhook, WebhookStatus
from tests.factories import make_webhook

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
PAST = NOW - timedelta(days=1)
FUTURE = NOW + timedelta(days=30)
ACTIVE, INACTIVE, ERRORED = WebhookStatus.ACTIVE, WebhookStatus.INACTIVE, WebhookStatus.ERRORED


def fail_in_a_row(hook: Webhook, times: int, cause: str = "HTTP 500") -> list[Webhook]:
    """Apply `times` consecutive failures; the webhook after each one."""
    states = []
    for _ in range(times):
        t = lifecycle.after_failure(hook, cause)
        hook = dataclasses.replace(
            hook, failure_count=t.failure_count, status_code=t.status,
            status_message=t.status_message,
        )  # fmt: skip
        states.append(hook)
    return states


@pytest.mark.parametrize("retry_count", [0, 2, 5])
def test_errored_exactly_when_failures_exceed_retry_count(retry_count: int) -> None:
    hook = make_webhook(retry_count=retry_count)
    states = fail_in_a_row(hook, retry_count + 1)
    assert [s.status_code for s in states] == [ACTIVE] * retry_count + [ERRORED]
    assert [s.failure_count for s in states] == list(range(1, retry_count + 2))
    assert states[-1].status_message == (
        f"{retry_count + 1} consecutive failed deliveries; last: HTTP 500"
    )


@pytest.mark.parametrize("retry_count", [0, 2, 5])
def test_the_failure_that_errors_parks_the_rest(retry_count: int) -> None:
    hook = make_webhook(retry_count=retry_count, failure_count=retry_count)
    assert lifecycle.after_failure(hook, "HTTP 500").park


@pytest.mark.parametrize(
    ("retry_count", "failures_before"), [(1, 0), (2, 0), (2, 1), (5, 0), (5, 4)]
)
def test_a_failure_within_retry_count_parks_nothing(retry_count: int, failures_before: int) -> None:
    # Down to the last failure tolerated: the webhook stays Active, so nothing may be parked.
    hook = make_webhook(retry_count=retry_count, failure_count=failures_before)
    t = lifecycle.after_failure(hook, "HTTP 500")
    assert (t.status, t.park) == (ACTIVE, False)


@pytest.mark.parametrize("retry_count", [0, 2, 5])
def test_a_success_resets_the_count(retry_count: int) -> None:
    hook = make_webhook(retry_count=retry_count, failure_count=retry_count)
    t = lifecycle.after_success(hook)
    assert (t.failure_count, t.status, t.status_message, t.park) == (0, ACTIVE, None, False)
    # Without the reset the next failure would error it; after it, the full run is needed again.
    fresh = dataclasses.replace(hook, failure_count=t.failure_count)
    statuses = [s.status_code for s in fail_in_a_row(fresh, retry_count + 1)]
    assert statuses == [ACTIVE] * retry_count + [ERRORED]


def test_errored_message_keeps_the_cause_but_fits_in_100_chars() -> None:
    t = lifecycle.after_failure(make_webhook(retry_count=0), "timed out after 10 s")
    assert t.status_message == "1 consecutive failed deliveries; last: timed out after 10 s"
    long = lifecycle.after_failure(make_webhook(retry_count=0), "could not connect: " + "x" * 200)
    assert long.status_message is not None
    assert len(long.status_message) == 100 and long.status_message.endswith("…")


@pytest.mark.parametrize("status", [INACTIVE, ERRORED])
def test_failure_in_flight_never_changes_a_webhook_that_is_not_active(
    status: WebhookStatus,
) -> None:
    hook = make_webhook(status_code=status, status_message="paused by owner", retry_count=0)
    t = lifecycle.after_failure(hook, "HTTP 500")
    assert (t.status, t.status_message, t.park) == (status, "paused by owner", False)


def test_410_makes_it_inactive_as_unsubscribed() -> None:
    t = lifecycle.after_gone(make_webhook(failure_count=1))
    assert t.status is INACTIVE
    assert t.status_message == "callback answered 410 Gone (unsubscribed)"
    assert t.park


def test_expired_active_webhook_reads_as_inactive() -> None:
    expiry = datetime(2026, 1, 31, tzinfo=UTC)
    hook = make_webhook(expiration_date=expiry)
    assert lifecycle.is_expired(hook, expiry)
    assert lifecycle.effective_status(hook, expiry) == (INACTIVE, "expired on 2026-01-31T00:00:00Z")
    before = expiry - timedelta(seconds=1)
    assert not lifecycle.is_expired(hook, before)
    assert lifecycle.effective_status(hook, before) == (ACTIVE, None)


def test_effective_status_keeps_other_states_and_messages() -> None:
    hook = make_webhook(status_code=ERRORED, status_message="why", expiration_date=PAST)
    assert lifecycle.effective_status(hook, NOW) == (ERRORED, "why")
    assert lifecycle.effective_status(make_webhook(), NOW) == (ACTIVE, None)


def test_expired_message_is_utc_whole_seconds() -> None:
    moment = datetime(2026, 1, 31, 2, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert lifecycle.expired_message(moment) == "expired on 2026-01-31T00:00:00Z"


# (from status, expired?) x requested -> (status, message, needs_handshake, release_parked)
REACTIVATE = (ACTIVE, None, True, True)
PAUSE = (INACTIVE, "paused by owner", False, False)
UNCHANGED = (ACTIVE, None, False, False)
PLANS = [
    (ACTIVE, False, ACTIVE, UNCHANGED),
    (ACTIVE, False, INACTIVE, PAUSE),
    (ACTIVE, True, ACTIVE, REACTIVATE),  # with a future expirationDate (below)
    (ACTIVE, True, INACTIVE, PAUSE),
    (INACTIVE, False, ACTIVE, REACTIVATE),
    (INACTIVE, False, INACTIVE, PAUSE),
    (INACTIVE, True, ACTIVE, REACTIVATE),
    (INACTIVE, True, INACTIVE, PAUSE),
    (ERRORED, False, ACTIVE, REACTIVATE),
    (ERRORED, False, INACTIVE, PAUSE),
    (ERRORED, True, ACTIVE, REACTIVATE),
    (ERRORED, True, INACTIVE, PAUSE),
]


@pytest.mark.parametrize(("current", "expired", "requested", "expected"), PLANS)
def test_plan_status_change(
    current: WebhookStatus, expired: bool, requested: WebhookStatus, expected: tuple[object, ...]
) -> None:
    hook = make_webhook(
        status_code=current, status_message=None if current is ACTIVE else "some reason",
        expiration_date=PAST if expired else FUTURE,
    )  # fmt: skip
    # An expired webhook can only come back with a new, future expiration date.
    plan = lifecycle.plan_status_change(
        hook, requested, now=NOW, new_expiration=FUTURE if expired else None
    )
    assert (plan.status, plan.status_message, plan.needs_handshake, plan.release_parked) == expected


@pytest.mark.parametrize("current", list(WebhookStatus))
@pytest.mark.parametrize("expired", [False, True])
def test_nobody_may_request_errored(current: WebhookStatus, expired: bool) -> None:
    hook = make_webhook(status_code=current, expiration_date=PAST if expired else None)
    with pytest.raises(ValidationError) as caught:
        lifecycle.plan_status_change(hook, ERRORED, now=NOW, new_expiration=None)
    assert caught.value.errors == {
        "statusCode": ["Errored is set by the gateway, not by a request"]
    }


@pytest.mark.parametrize("current", list(WebhookStatus))
def test_reactivating_an_expired_webhook_needs_a_future_date(current: WebhookStatus) -> None:
    hook = make_webhook(status_code=current, expiration_date=PAST)
    for new_expiration in (None, PAST, NOW):
        with pytest.raises(ValidationError) as caught:
            lifecycle.plan_status_change(hook, ACTIVE, now=NOW, new_expiration=new_expiration)
        assert caught.value.errors == {
            "expirationDate": ["has passed; give a future expirationDate to reactivate"]
        }


def test_a_past_new_expiration_cannot_come_with_a_request_for_active() -> None:
    with pytest.raises(ValidationError):
        lifecycle.plan_status_change(
            make_webhook(status_code=INACTIVE), ACTIVE, now=NOW, new_expiration=PAST
        )


@pytest.mark.parametrize("current", list(WebhookStatus))
def test_pausing_works_even_when_expired(current: WebhookStatus) -> None:
    hook = make_webhook(status_code=current, expiration_date=PAST)
    plan = lifecycle.plan_status_change(hook, INACTIVE, now=NOW, new_expiration=None)
    assert plan.status is INACTIVE and not plan.needs_handshake
