"""store.delivery_activity on both stores: a webhook's attempts by UTC hour (delivered from
its rows, failed from the attempt log) with the receiver's answer times, which settling an
attempt records (elapsed_ms); both dialects give the same answer, the one written here."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from gateway.store import Store
from gateway.store.base import HourOfDeliveries
from tests.factories import T0
from tests.integration import test_store_contract as contract
from tests.integration.test_store_contract import LEASE, add_hook, failure, outcome, publish

store = contract.store  # the contract's fixture: each test runs on SQLite and PostgreSQL

HOUR = timedelta(hours=1)


async def test_attempts_are_counted_by_hour_with_their_answer_times(store: Store) -> None:
    hook = await add_hook(store)
    other = await add_hook(store)  # another group's webhook: none of its attempts count
    ok_a, ok_b, flaky, lost = await publish(store, hook, 4)
    (theirs,) = await publish(store, other, 1)
    await store.claim_due(T0, 10, "w", T0 + LEASE)
    timeout = dataclasses.replace(failure(lost, "w", "timed out"), response_status_code=None)
    await store.record_attempts([
        dataclasses.replace(outcome(ok_a, "w"), elapsed_ms=10.0),
        dataclasses.replace(outcome(ok_b, "w"), elapsed_ms=30.5),
        dataclasses.replace(failure(flaky, "w", "HTTP 503"), elapsed_ms=50.0),
        timeout,  # no answer: counted, with no time
        dataclasses.replace(outcome(theirs, "w"), elapsed_ms=999.0),
    ], T0 + timedelta(minutes=5))  # fmt: skip
    await store.claim_due(T0 + LEASE, 10, "w", T0 + 2 * LEASE)
    await store.record_attempts(
        [dataclasses.replace(outcome(flaky, "w"), elapsed_ms=20.0)], T0 + 2 * HOUR
    )

    found = await store.delivery_activity(hook.group_key, hook.webhook_id, T0 - HOUR)
    assert found == [
        # The second attempt of `flaky` replaced its first on its row: the first is in the log.
        HourOfDeliveries(T0, delivered=2, failed=2, mean_ms=30.2, max_ms=50.0),
        HourOfDeliveries(T0 + 2 * HOUR, delivered=1, failed=0, mean_ms=20.0, max_ms=20.0),
    ]
    assert await store.delivery_activity(hook.group_key, hook.webhook_id, T0 + HOUR) == [
        HourOfDeliveries(T0 + 2 * HOUR, delivered=1, failed=0, mean_ms=20.0, max_ms=20.0)
    ]
    # Another group naming this webhook sees nothing of it.
    assert await store.delivery_activity(other.group_key, hook.webhook_id, T0 - HOUR) == []


async def test_a_failed_attempt_keeps_its_answer_time_in_the_log(store: Store) -> None:
    hook = await add_hook(store)
    (flaky,) = await publish(store, hook, 1)
    await store.claim_due(T0, 10, "w", T0 + LEASE)
    await store.record_attempts([dataclasses.replace(failure(flaky, "w"), elapsed_ms=7.25)], T0)
    assert await store.delivery_activity(hook.group_key, hook.webhook_id, T0) == [
        HourOfDeliveries(T0, delivered=0, failed=1, mean_ms=7.2, max_ms=7.2)
    ]


async def test_test_sends_are_not_counted(store: Store) -> None:
    """A test send is kept in history, but it is not a delivery: the picture leaves it out."""
    hook = await add_hook(store)
    event = contract.make_event(hook.group_key, table_key="Test")
    tested = contract.make_notification(
        hook, event, state=contract.SUCCEEDED, attempts=1, request_sent=True, is_successful=True,
        timestamp=T0, is_test=True,
    )  # fmt: skip
    assert await store.record_test_send(event, tested)
    assert await store.delivery_activity(hook.group_key, hook.webhook_id, T0 - HOUR) == []
