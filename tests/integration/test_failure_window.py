"""A webhook's failure window (`failureWindow`) on each store: it becomes Errored when `count`
failed attempts fall within `seconds`, decided in the transaction that records them, against
the attempt log as that transaction sees it; several settling at once count each one once; a
reactivation starts the window afresh. Times are given to the store (`record_attempts`' `now`),
so no test waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from uuid import UUID

import pytest

from gateway import lifecycle
from gateway.models import FailureWindow, NotificationState, Webhook, WebhookStatus
from gateway.outcomes import AttemptOutcome, Effect
from gateway.store import Store
from gateway.store.base import WebhookEdit
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.factories import T0, make_event, make_notification, make_webhook

SECOND = timedelta(seconds=1)
WINDOW = FailureWindow(count=3, seconds=60)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        opened: Store = SqliteStore(request.getfixturevalue("tmp_path") / "window.db")
    else:
        opened = PostgresStore(request.getfixturevalue("postgres_url"))
    async with opened:
        yield opened


async def windowed(store: Store, window: FailureWindow | None = WINDOW) -> Webhook:
    """An Active webhook whose consecutive rule tolerates more than these tests fail."""
    hook = make_webhook(retry_count=5, failure_window=window)
    await store.add_webhooks([hook])
    return hook


async def publish(store: Store, hook: Webhook, count: int) -> list[UUID]:
    event = make_event(hook.group_key, created=T0)
    notes = [make_notification(hook, event, next_attempt_at=T0) for _ in range(count)]
    await store.add_events([event], notes)
    return [note.notification_id for note in notes]


def failure(notification_id: UUID, owner: str, at: datetime) -> AttemptOutcome:
    return AttemptOutcome(notification_id, owner, Effect.FAILURE, "HTTP 500", at, "500")


def success(notification_id: UUID, owner: str) -> AttemptOutcome:
    return AttemptOutcome(notification_id, owner, Effect.SUCCESS, "HTTP 200", None, "200")


async def fail_at(store: Store, hook: Webhook, at: datetime, count: int = 1) -> Webhook:
    """`count` notifications claimed and failed in one batch recorded at `at`; the webhook
    after it."""
    ids = await publish(store, hook, count)
    owner = f"w{at.timestamp()}"
    await store.claim_due(at, count, owner, at + timedelta(minutes=5))
    await store.record_attempts([failure(i, owner, at + timedelta(days=1)) for i in ids], at)
    return await stored(store, hook)


async def stored(store: Store, hook: Webhook) -> Webhook:
    found = await store.get_webhook(hook.group_key, hook.webhook_id)
    assert found is not None
    return found


async def test_count_failures_within_the_window_make_it_errored(store: Store) -> None:
    hook = await windowed(store)
    assert (await fail_at(store, hook, T0)).status_code is WebhookStatus.ACTIVE
    assert (await fail_at(store, hook, T0 + 30 * SECOND)).status_code is WebhookStatus.ACTIVE
    errored = await fail_at(store, hook, T0 + 59 * SECOND)
    assert errored.status_code is WebhookStatus.ERRORED
    assert errored.status_message == (
        "3 failed attempts within 60 s (failureWindow); last: HTTP 500"
    )
    assert errored.failure_count == 3  # the consecutive rule (retryCount 5) did not trip


async def test_failures_spread_wider_than_the_window_do_not(store: Store) -> None:
    hook = await windowed(store)
    for minute in range(6):  # two a minute, at its start and its end: never 3 within 60 s
        await fail_at(store, hook, T0 + minute * 61 * SECOND)
        after = await fail_at(store, hook, T0 + (minute * 61 + 59) * SECOND)
        assert after.status_code is WebhookStatus.ACTIVE, minute
        # A success resets the consecutive count, not the window.
        [ok] = await publish(store, hook, 1)
        at = T0 + (minute * 61 + 60) * SECOND
        await store.claim_due(at, 1, "ok", at + SECOND)
        await store.record_attempts([success(ok, "ok")], at)
    # The window counts failures with successes between them: a third within 60 s trips it.
    last = T0 + (5 * 61 + 60) * SECOND  # one before it within 60 s: two
    assert (await fail_at(store, hook, last)).status_code is WebhookStatus.ACTIVE
    assert (await fail_at(store, hook, last + SECOND)).status_code is WebhookStatus.ERRORED


async def test_without_a_window_only_the_consecutive_rule_counts(store: Store) -> None:
    hook = await windowed(store, None)
    after = await fail_at(store, hook, T0, count=5)
    assert (after.status_code, after.failure_count) == (WebhookStatus.ACTIVE, 5)
    errored = await fail_at(store, hook, T0 + SECOND)
    assert errored.status_message == "6 consecutive failed deliveries; last: HTTP 500"


async def test_one_batch_trips_it_at_the_count_and_parks_the_rest(store: Store) -> None:
    hook = await windowed(store)
    ids = await publish(store, hook, 4)
    await store.claim_due(T0, 4, "w", T0 + timedelta(minutes=5))
    recorded = await store.record_attempts([failure(i, "w", T0 + SECOND) for i in ids], T0)
    [change] = recorded.changes
    assert change.status is WebhookStatus.ERRORED and "3 failed attempts" in str(
        change.status_message
    )
    assert recorded.not_active == {hook.webhook_id}
    notes = [await store.get_notification(hook.group_key, hook.webhook_id, i) for i in ids]
    assert {note.state for note in notes if note} == {NotificationState.PARKED}


@pytest.mark.parametrize(("count", "errored"), [(5, True), (6, False)])
async def test_batches_settling_at_once_count_every_failure_once(
    store: Store, count: int, errored: bool
) -> None:
    """Three workers record five failures between them at the same moment, so a window of 5
    trips and one of 6 does not, however their transactions interleave (retryCount 5 lets
    five consecutive ones pass)."""
    hook = await windowed(store, FailureWindow(count, 60))
    ids = await publish(store, hook, 5)
    batches, taken = [], 0
    for owner, size in (("a", 2), ("b", 2), ("c", 1)):
        # Each claim takes the longest due, in sequence order: the next `size` ids.
        claimed = await store.claim_due(T0, size, owner, T0 + timedelta(minutes=5))
        assert [note.notification_id for note in claimed] == ids[taken : taken + size]
        batches.append([failure(i, owner, T0 + SECOND) for i in ids[taken : taken + size]])
        taken += size
    recorded = await asyncio.gather(*(store.record_attempts(b, T0) for b in batches))
    assert sum(r.count for r in recorded) == 5
    after = await stored(store, hook)
    assert after.failure_count == 5
    if errored:
        assert after.status_code is WebhookStatus.ERRORED
        assert after.status_message == (
            "5 failed attempts within 60 s (failureWindow); last: HTTP 500"
        )
    else:
        assert after.status_code is WebhookStatus.ACTIVE


async def test_a_reactivation_starts_the_window_afresh(store: Store) -> None:
    hook = await windowed(store)
    await fail_at(store, hook, T0, count=3)
    assert (await stored(store, hook)).status_code is WebhookStatus.ERRORED
    edit = WebhookEdit({}, status=lifecycle.ACTIVATE)
    reactivated = await store.edit_webhook(hook.group_key, hook.webhook_id, edit, T0 + SECOND)
    assert reactivated is not None and reactivated.window_start == T0 + SECOND
    # The three before it are within 60 s still, but no longer count.
    assert (await fail_at(store, hook, T0 + 2 * SECOND)).status_code is WebhookStatus.ACTIVE
    assert (await fail_at(store, hook, T0 + 3 * SECOND)).status_code is WebhookStatus.ACTIVE
    assert (await fail_at(store, hook, T0 + 4 * SECOND)).status_code is WebhookStatus.ERRORED


async def test_failures_not_retried_count_too(store: Store) -> None:
    """retryPolicy ServerErrorsOnly fails a 4xx for good: a failed attempt all the same."""
    hook = await windowed(store, FailureWindow(2, 60))
    ids = await publish(store, hook, 2)
    await store.claim_due(T0, 2, "w", T0 + timedelta(minutes=5))
    for n, notification_id in enumerate(ids):
        final = AttemptOutcome(notification_id, "w", Effect.PERMANENT_FAILURE, "HTTP 404", None)
        await store.record_attempts([final], T0 + n * SECOND)
    after = await stored(store, hook)
    assert after.status_code is WebhookStatus.ERRORED
    assert after.status_message == "2 failed attempts within 60 s (failureWindow); last: HTTP 404"
