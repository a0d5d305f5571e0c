"""A webhook's successPolicy and retryPolicy (issue 19): the whole table of what each answer or
error comes to under each pair of policies, how a failure that is not retried settles the
notification and its webhook, and the sender choosing by the webhook's own policies.
End to end over loopback on both stores: tests/integration/test_delivery_policies.py."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from gateway import lifecycle
from gateway.config import Settings
from gateway.errors import AddressNotAllowed, OutboundConnectionError, OutboundTimeout
from gateway.models import (
    NotificationState,
    RetryScope,
    StatusReason,
    SuccessPolicy,
    WebhookStatus,
    utcnow,
)
from gateway.outcomes import AttemptOutcome, Effect, Settlement, settle, settle_in_order
from gateway.retry import classify, succeeded
from gateway.sender import Sender
from gateway.store import Store
from gateway.transport import MockTransport, respond
from tests.factories import make_notification, make_webhook
from tests.unit.test_worker_delivery import (
    Clock,
    Partner,
    attempts_counted,
    drained,
    published,
    subscribed,
)

ANY, ONLY = SuccessPolicy.ANY_2XX, SuccessPolicy.ONLY_200
ALL, SERVER = RetryScope.ALL_FAILURES, RetryScope.SERVER_ERRORS_ONLY
S, F, P, G = Effect.SUCCESS, Effect.FAILURE, Effect.PERMANENT_FAILURE, Effect.GONE
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(seconds=30)
NOT_RETRIED = "failed for good, not retried (retryPolicy ServerErrorsOnly)"

# status: its effect under (Any2xx, AllFailures), (Any2xx, ServerErrorsOnly),
# (Only200, AllFailures), (Only200, ServerErrorsOnly).
TABLE = {
    100: (F, P, F, P),
    199: (F, P, F, P),
    200: (S, S, S, S),
    201: (S, S, F, P),
    202: (S, S, F, P),
    204: (S, S, F, P),
    299: (S, S, F, P),
    300: (F, P, F, P),
    301: (F, P, F, P),
    304: (F, P, F, P),
    400: (F, P, F, P),
    401: (F, P, F, P),
    403: (F, P, F, P),
    404: (F, P, F, P),
    408: (F, P, F, P),
    409: (F, P, F, P),
    410: (G, G, G, G),
    422: (F, P, F, P),
    428: (F, P, F, P),
    429: (F, F, F, F),
    430: (F, P, F, P),
    499: (F, P, F, P),
    500: (F, F, F, F),
    502: (F, F, F, F),
    503: (F, F, F, F),
    504: (F, F, F, F),
    599: (F, F, F, F),
}
POLICIES = [(ANY, ALL), (ANY, SERVER), (ONLY, ALL), (ONLY, SERVER)]
ROWS = [
    pytest.param(status, success, retry, effects[i], id=f"{status}-{success}-{retry}")
    for status, effects in TABLE.items()
    for i, (success, retry) in enumerate(POLICIES)
]


@pytest.mark.parametrize(("status", "success", "retry", "effect"), ROWS)
def test_each_status_under_each_pair_of_policies(
    status: int, success: SuccessPolicy, retry: RetryScope, effect: Effect
) -> None:
    assert classify(status, None, success, retry) is effect


def test_the_defaults_are_any_2xx_and_every_failure_retried() -> None:
    for status, effects in TABLE.items():
        assert classify(status, None) is effects[0], status
    hook = make_webhook()
    assert (hook.success_policy, hook.retry_policy) == (ANY, ALL)


@pytest.mark.parametrize("success", [ANY, ONLY])
@pytest.mark.parametrize("retry", [ALL, SERVER])
@pytest.mark.parametrize(
    "error",
    [
        OutboundTimeout("timed out after 10 s"),
        OutboundConnectionError("connection refused"),
        AddressNotAllowed("callback address 10.0.0.5 is not allowed (private network)"),
    ],
)
def test_no_answer_is_retried_under_every_policy(
    error: Exception, success: SuccessPolicy, retry: RetryScope
) -> None:
    assert classify(None, error, success, retry) is F
    # An error decides even beside a status that would have been a success.
    assert classify(200, error, success, retry) is F


@pytest.mark.parametrize(
    ("status", "policy", "delivered"),
    [(200, ANY, True), (204, ANY, True), (300, ANY, False), (199, ANY, False),
     (200, ONLY, True), (201, ONLY, False), (204, ONLY, False), (500, ONLY, False)],
)  # fmt: skip
def test_succeeded_is_the_success_policy_alone(
    status: int, policy: SuccessPolicy, delivered: bool
) -> None:
    assert succeeded(status, policy) is delivered


# -- How a failure that is not retried settles --------------------------------------------------


def outcome(effect: Effect, cause: str = "HTTP 404") -> AttemptOutcome:
    return AttemptOutcome(uuid4(), "worker-1", effect, cause, None)


def test_a_permanent_failure_fails_the_notification_and_counts_against_the_webhook() -> None:
    hook = make_webhook(retry_count=3, failure_count=1)
    done = settle(hook, outcome(P), NOW)
    change = lifecycle.Transition(2, WebhookStatus.ACTIVE, None, None, park=False)
    message = f"HTTP 404: {NOT_RETRIED}"
    assert done == Settlement(NotificationState.FAILED, None, False, message, change, False)
    # A request went out: its fields replace the row's, and the attempt log keeps it.
    assert (done.attempted, done.logged) == (True, True)


def test_a_permanent_failure_past_retry_count_makes_the_webhook_errored() -> None:
    hook = make_webhook(retry_count=1, failure_count=1)
    done = settle(hook, outcome(P, "HTTP 400"), NOW)
    assert done.state is NotificationState.FAILED and done.next_attempt_at is None
    assert done.webhook == lifecycle.Transition(
        2,
        WebhookStatus.ERRORED,
        "2 consecutive failed deliveries; last: HTTP 400",
        StatusReason.FAILING,
        park=True,
    )
    assert done.park_webhook  # its other pending notifications wait for a reactivation


def test_a_permanent_failure_in_flight_when_the_webhook_was_paused_fails_for_good() -> None:
    # Reactivating the webhook would not send it again, so it is not parked; the pause stays.
    hook = make_webhook(
        status_code=WebhookStatus.INACTIVE,
        status_message="paused by owner",
        status_reason=StatusReason.PAUSED,
        failure_count=1,
    )
    done = settle(hook, outcome(P), NOW)
    assert done == Settlement(
        NotificationState.FAILED, None, False, f"HTTP 404: {NOT_RETRIED}", None, False
    )


def test_permanent_and_retried_failures_count_alike_in_a_batch() -> None:
    hook = make_webhook(retry_count=1)
    batch = [(outcome(P), hook), (outcome(F, "HTTP 500"), hook)]
    settled = settle_in_order(batch, NOW)
    [(_, _, first), (_, _, second)] = settled
    assert first.webhook is not None and first.webhook.failure_count == 1
    assert second.webhook is not None and second.webhook.status is WebhookStatus.ERRORED
    assert second.webhook.status_message == "2 consecutive failed deliveries; last: HTTP 500"


# -- The sender classifies by the webhook's own policies ----------------------------------------

SETTINGS = dataclasses.replace(Settings(), retry_schedule=(5.0,), retry_jitter=0.0)


async def sent_to(store: Store, status: int, **policies: Any) -> AttemptOutcome:
    hook = make_webhook(callback_url="https://partner.example/hook", **policies)
    await store.add_webhooks([hook])
    now = utcnow().replace(microsecond=0)
    transport = MockTransport(lambda request: respond(status, b"no"))
    sender = Sender(SETTINGS, transport, store, lambda: now)
    found = await sender.attempt(make_notification(hook), "worker-1")
    assert len(transport.requests) == 1
    return found


async def test_the_sender_does_not_schedule_a_failure_its_webhook_does_not_retry(
    store: Store,
) -> None:
    found = await sent_to(store, 404, retry_policy=SERVER)
    assert (found.effect, found.cause, found.retry_at) == (P, "HTTP 404", None)
    assert (found.response_status_code, found.response_message) == ("404", "HTTP 404\n\nno")
    retried = await sent_to(store, 503, retry_policy=SERVER)
    assert retried.effect is F and retried.retry_at is not None


async def test_the_sender_judges_success_by_its_webhooks_policy(store: Store) -> None:
    assert (await sent_to(store, 201)).effect is S
    found = await sent_to(store, 201, success_policy=ONLY)
    assert (found.effect, found.cause) == (F, "HTTP 201")
    assert found.retry_at is not None
    assert (await sent_to(store, 201, success_policy=ONLY, retry_policy=SERVER)).effect is P


# -- The worker ---------------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_the_worker_stops_at_the_failure_not_retried_that_errs_the_webhook(
    store: Store, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """As after a retried failure: the next send waits until the failure is recorded, and the
    one that makes the webhook Errored is the last sent; it stays failed, the rest park."""
    caplog.set_level(logging.INFO, logger="gateway.delivery")
    hook = await subscribed(store, retry_count=1, retry_policy=SERVER)
    notes = await published(store, hook, 3)
    before = attempts_counted("permanent_failure")
    partner = Partner(respond(404))
    drain = await drained(store, partner, clock, per_webhook_concurrency=1)
    assert partner.sent == [str(note.notification_id) for note in notes[:2]]
    assert attempts_counted("permanent_failure") - before == 2
    logged = [r for r in caplog.records if r.getMessage() == "delivery failed"]
    fields = [(r.__dict__["status_code"], r.__dict__["retried"]) for r in logged]
    assert fields == [("404", False)] * 2
    errored = await store.get_webhook(hook.group_key, hook.webhook_id)
    assert errored is not None and errored.status_code is WebhookStatus.ERRORED
    states = []
    for note in notes:
        found = await store.get_notification(hook.group_key, hook.webhook_id, note.notification_id)
        assert found is not None
        states.append(found.state)
    assert states == [NotificationState.FAILED, NotificationState.FAILED, NotificationState.PARKED]
    clock.now += timedelta(hours=1)  # long past any retry schedule
    await drain()
    assert len(partner.sent) == 2
