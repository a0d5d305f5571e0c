"""Lifecycle transitions: when a webhook turns Errored or Inactive, and how owners bring it back."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway import lifecycle
from gateway.errors import ValidationError
from gateway.models import FailureWindow, StatusReason, Webhook, WebhookStatus
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


# (status, reason, expired?, requested, renews?) -> (handshake?, change); `moves` is False here.
P, A = lifecycle.PAUSE, lifecycle.ACTIVATE
PAUSED, EXPIRED = StatusReason.PAUSED, StatusReason.EXPIRED
FAILING, GONE = StatusReason.FAILING, StatusReason.UNSUBSCRIBED
PLANS = [
    # Active and current: a request for Active changes nothing, Inactive pauses.
    (ACTIVE, None, False, ACTIVE, False, (False, None)),
    (ACTIVE, None, False, INACTIVE, False, (False, P)),
    (ACTIVE, None, False, None, True, (False, None)),  # a new date alone changes nothing
    # Active past its date (the sweep has not run yet): reads as expired.
    (ACTIVE, None, True, ACTIVE, True, (True, A)),
    (ACTIVE, None, True, None, True, (True, A)),  # renewing is reactivating
    (ACTIVE, None, True, INACTIVE, False, (False, P)),
    (ACTIVE, None, True, None, False, (False, None)),
    # Swept: Inactive because it expired.
    (INACTIVE, EXPIRED, True, None, True, (True, A)),
    (INACTIVE, EXPIRED, True, ACTIVE, True, (True, A)),
    (INACTIVE, EXPIRED, True, INACTIVE, True, (False, P)),
    # Paused, unsubscribed, Errored: only a request for Active reactivates; a date does not.
    (INACTIVE, PAUSED, False, ACTIVE, False, (True, A)),
    (INACTIVE, PAUSED, False, None, True, (False, None)),
    (INACTIVE, PAUSED, True, None, True, (False, None)),
    (INACTIVE, GONE, False, ACTIVE, False, (True, A)),
    (INACTIVE, GONE, False, None, True, (False, None)),
    (ERRORED, FAILING, False, ACTIVE, False, (True, A)),
    (ERRORED, FAILING, False, INACTIVE, False, (False, P)),
    (ERRORED, FAILING, True, None, True, (False, None)),
    (ERRORED, FAILING, True, ACTIVE, True, (True, A)),
]


@pytest.mark.parametrize(("current", "reason", "expired", "requested", "renews", "expected"), PLANS)
def test_plan_patch(
    current: WebhookStatus,
    reason: StatusReason | None,
    expired: bool,
    requested: WebhookStatus | None,
    renews: bool,
    expected: tuple[bool, lifecycle.StatusChange | None],
) -> None:
    hook = make_webhook(
        status_code=current, status_reason=reason, expiration_date=PAST if expired else FUTURE,
        status_message=None if current is ACTIVE else "some reason",
    )  # fmt: skip
    after = FUTURE if renews else hook.expiration_date
    plan = lifecycle.plan_patch(
        hook, requested, now=NOW, expiration=after, renews=renews, moves=False
    )
    assert (plan.handshake, plan.change) == expected


# (status, reason, expired after the PATCH?, requested) -> the change a new callback makes.
MOVES = [
    (ERRORED, FAILING, False, None, A),  # the callback that failed is replaced: Active again
    (INACTIVE, GONE, False, None, A),  # as is one that answered 410
    (ERRORED, StatusReason.UNVERIFIED, False, None, A),  # or failed its re-verification
    (ERRORED, FAILING, False, INACTIVE, P),  # asked to pause: paused
    (ERRORED, FAILING, True, None, None),  # past its date: a reactivation would read expired
    (INACTIVE, PAUSED, False, None, None),  # the owner's pause stays
    (INACTIVE, EXPIRED, True, None, None),  # and an expiry, until renewed
    (ACTIVE, None, False, None, None),
]


@pytest.mark.parametrize(("current", "reason", "expired", "requested", "expected"), MOVES)
def test_a_verified_new_callback_ends_a_stop_the_old_callback_caused(
    current: WebhookStatus,
    reason: StatusReason | None,
    expired: bool,
    requested: WebhookStatus | None,
    expected: lifecycle.StatusChange | None,
) -> None:
    hook = make_webhook(
        status_code=current, status_reason=reason, expiration_date=PAST if expired else FUTURE,
        status_message=None if current is ACTIVE else "some reason",
    )  # fmt: skip
    plan = lifecycle.plan_patch(
        hook, requested, now=NOW, expiration=hook.expiration_date, renews=False, moves=True
    )
    assert plan == lifecycle.PatchPlan(True, expected)


@pytest.mark.parametrize("requested", [None, ACTIVE, INACTIVE])
def test_a_new_callback_always_needs_the_handshake(requested: WebhookStatus | None) -> None:
    plan = lifecycle.plan_patch(
        make_webhook(), requested, now=NOW, expiration=None, renews=False, moves=True
    )
    assert plan.handshake


@pytest.mark.parametrize("current", list(WebhookStatus))
@pytest.mark.parametrize("expired", [False, True])
def test_nobody_may_request_errored(current: WebhookStatus, expired: bool) -> None:
    hook = make_webhook(status_code=current, expiration_date=PAST if expired else None)
    with pytest.raises(ValidationError) as caught:
        lifecycle.plan_patch(hook, ERRORED, now=NOW, expiration=None, renews=False, moves=False)
    assert caught.value.errors == {
        "statusCode": ["Errored is set by the gateway, not by a request"]
    }


@pytest.mark.parametrize("current", list(WebhookStatus))
def test_reactivating_an_expired_webhook_needs_a_future_date(current: WebhookStatus) -> None:
    hook = make_webhook(status_code=current, expiration_date=PAST)
    for expiration in (PAST, NOW):
        with pytest.raises(ValidationError) as caught:
            lifecycle.plan_patch(
                hook, ACTIVE, now=NOW, expiration=expiration, renews=False, moves=False
            )
        assert caught.value.errors == {
            "expirationDate": ["has passed; give a future expirationDate to reactivate"]
        }


@pytest.mark.parametrize("current", list(WebhookStatus))
def test_pausing_works_even_when_expired(current: WebhookStatus) -> None:
    hook = make_webhook(status_code=current, expiration_date=PAST)
    plan = lifecycle.plan_patch(hook, INACTIVE, now=NOW, expiration=PAST, renews=False, moves=False)
    assert plan == lifecycle.PatchPlan(False, lifecycle.PAUSE)


def test_the_changes_say_what_they_do_to_notifications() -> None:
    assert lifecycle.PAUSE == lifecycle.StatusChange(
        INACTIVE, "paused by owner", StatusReason.PAUSED, lifecycle.Move.PARK
    )
    assert lifecycle.ACTIVATE == lifecycle.StatusChange(
        ACTIVE, None, None, lifecycle.Move.RELEASE, reset_failures=True
    )


def test_expiry_is_the_change_readers_already_see() -> None:
    expiry = datetime(2026, 1, 31, tzinfo=UTC)
    hook = make_webhook(expiration_date=expiry)
    assert lifecycle.expiry(hook, expiry - timedelta(microseconds=1)) is None
    change = lifecycle.expiry(hook, expiry)
    assert change == lifecycle.StatusChange(
        INACTIVE, "expired on 2026-01-31T00:00:00Z", StatusReason.EXPIRED, lifecycle.Move.PARK
    )
    assert lifecycle.effective_status(hook, expiry) == (change.status, change.status_message)
    for status in (INACTIVE, ERRORED):
        assert lifecycle.expiry(make_webhook(status_code=status, expiration_date=PAST), NOW) is None


def test_a_parked_notification_says_why() -> None:
    assert lifecycle.parked_message(ERRORED, "3 consecutive failed deliveries; last: HTTP 500") == (
        "parked: webhook is Errored (3 consecutive failed deliveries; last: HTTP 500)"
    )
    assert lifecycle.parked_message(INACTIVE, None) == "parked: webhook is Inactive"


def test_the_failure_that_errors_says_failing_and_a_tolerated_one_keeps_the_reason() -> None:
    errored = lifecycle.after_failure(make_webhook(retry_count=0), "HTTP 500")
    assert (errored.status, errored.reason) == (ERRORED, StatusReason.FAILING)
    hook = make_webhook(
        status_code=INACTIVE, status_message="paused by owner", status_reason=StatusReason.PAUSED
    )
    kept = lifecycle.after_failure(hook, "HTTP 500")
    assert kept == lifecycle.Transition(
        1, INACTIVE, "paused by owner", StatusReason.PAUSED, park=False
    )


@pytest.mark.parametrize(
    ("status", "message", "reason"),
    [
        (ACTIVE, None, None),
        (INACTIVE, "paused by owner", StatusReason.PAUSED),
        (ERRORED, "4 consecutive failed deliveries; last: HTTP 500", StatusReason.FAILING),
    ],
)
def test_a_success_resets_the_count_and_nothing_else(
    status: WebhookStatus, message: str | None, reason: StatusReason | None
) -> None:
    # A request in flight when the webhook left Active must not undo why it left.
    hook = make_webhook(
        status_code=status, status_message=message, status_reason=reason, failure_count=4
    )
    assert lifecycle.after_success(hook) == lifecycle.Transition(0, status, message, reason, False)


def test_410_keeps_the_failure_count_and_says_unsubscribed() -> None:
    t = lifecycle.after_gone(make_webhook(failure_count=2))
    assert t == lifecycle.Transition(
        2, INACTIVE, "callback answered 410 Gone (unsubscribed)", StatusReason.UNSUBSCRIBED, True
    )


def test_410_on_a_webhook_already_not_active_parks_nothing_more() -> None:
    # Its notifications were parked when it left Active; only the reason changes.
    hook = make_webhook(status_code=ERRORED, status_message="x", failure_count=5)
    t = lifecycle.after_gone(hook)
    assert (t.status, t.reason, t.park) == (INACTIVE, StatusReason.UNSUBSCRIBED, False)


@pytest.mark.parametrize("status", list(WebhookStatus))
def test_only_an_active_webhook_before_its_expiration_receives(status: WebhookStatus) -> None:
    expiration = datetime(2026, 1, 31, tzinfo=UTC)
    just_before = expiration - timedelta(microseconds=1)
    cases = [(None, NOW), (expiration, just_before), (expiration, expiration), (PAST, NOW)]
    expected = [status is ACTIVE, status is ACTIVE, False, False]
    hooks = [(make_webhook(status_code=status, expiration_date=e), now) for e, now in cases]
    assert [lifecycle.is_active(hook, now) for hook, now in hooks] == expected
    assert [lifecycle.receives(status, e, now) for e, now in cases] == expected


def test_shown_status_reads_the_columns_as_effective_status_reads_the_webhook() -> None:
    expiration = datetime(2026, 1, 31, tzinfo=UTC)
    assert lifecycle.shown_status(ACTIVE, None, expiration, expiration) == (
        INACTIVE, "expired on 2026-01-31T00:00:00Z"
    )  # fmt: skip
    assert lifecycle.shown_status(ACTIVE, None, expiration, expiration - timedelta(seconds=1)) == (
        ACTIVE, None
    )  # fmt: skip
    assert lifecycle.shown_status(ACTIVE, None, None, NOW) == (ACTIVE, None)
    assert lifecycle.shown_status(INACTIVE, "paused by owner", PAST, NOW) == (
        INACTIVE, "paused by owner"
    )  # fmt: skip


def test_the_expired_message_is_in_utc_whatever_the_servers_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # POSIX zone string (no tz database needed): local time is UTC+05:30.
    monkeypatch.setenv("TZ", "IST-05:30")
    time.tzset()
    try:
        expiration = datetime(2026, 1, 31, tzinfo=UTC)
        assert lifecycle.expired_message(expiration) == "expired on 2026-01-31T00:00:00Z"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_parked_notification_quotes_the_longest_status_message_whole() -> None:
    message = lifecycle.shorten("99 consecutive failed deliveries; last: " + "x" * 200)
    assert len(message) == lifecycle.MESSAGE_LIMIT
    assert lifecycle.parked_message(ERRORED, message) == f"parked: webhook is Errored ({message})"


@pytest.mark.parametrize(("length", "kept"), [(170, True), (171, False), (300, False)])
def test_a_parked_notifications_message_is_at_most_200_characters(length: int, kept: bool) -> None:
    # "parked: webhook is Inactive (" and ")" take 30 characters around the status message.
    message = "m" * length
    whole = f"parked: webhook is Inactive ({message})"
    shown = lifecycle.parked_message(INACTIVE, message)
    assert shown == (whole if kept else whole[:199] + "…")


def test_a_failure_window_errs_at_its_count_and_says_so() -> None:
    hook = make_webhook(retry_count=5, failure_window=FailureWindow(count=3, seconds=60))
    assert lifecycle.after_failure(hook, "HTTP 500", window_failures=2).status is ACTIVE
    tripped = lifecycle.after_failure(hook, "HTTP 503", window_failures=3)
    assert (tripped.status, tripped.reason, tripped.park) == (ERRORED, StatusReason.FAILING, True)
    assert tripped.status_message == (
        "3 failed attempts within 60 s (failureWindow); last: HTTP 503"
    )
    # Without a window the count means nothing; with both rules due, retryCount's is named.
    assert lifecycle.after_failure(make_webhook(retry_count=5), "x", 99).status is ACTIVE
    both = dataclasses.replace(hook, failure_count=5)
    assert lifecycle.after_failure(both, "HTTP 500", 3).status_message == (
        "6 consecutive failed deliveries; last: HTTP 500"
    )
    # Only an Active webhook turns Errored.
    paused = dataclasses.replace(hook, status_code=INACTIVE)
    assert lifecycle.after_failure(paused, "HTTP 500", 3).status is INACTIVE
