"""The worker's delivery decisions on a memory:// store and the mock transport: what each
answer (2xx, 410, any other, none) does to the notification, its attempt log and its webhook,
and what is sent after it. End to end over loopback on both SQL stores:
tests/integration/test_delivery.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from gateway.config import Settings
from gateway.delivery import Worker
from gateway.errors import OutboundConnectionError, OutboundError, OutboundTimeout
from gateway.models import Notification, NotificationState, Webhook, WebhookStatus, utcnow
from gateway.store import Store
from gateway.transport import MockTransport, OutboundRequest, OutboundResponse, respond
from tests.factories import make_event, make_notification, make_webhook

SETTINGS = dataclasses.replace(
    Settings(), retry_schedule=(5.0, 30.0), retry_jitter=0.0, poll_interval=30.0
)


class Clock:
    """The worker's clock, moved by hand so retries come due without waiting; a second ahead
    of the wall clock, so notifications made now are due at once."""

    def __init__(self) -> None:
        self.now = utcnow() + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now


class Partner:
    """Answers each request with the next of `answers` (the last one again once they run
    out); an OutboundError among them stands for no answer."""

    def __init__(self, *answers: OutboundResponse | OutboundError) -> None:
        self.answers = list(answers)
        self.transport = MockTransport(self.answer)

    def answer(self, request: OutboundRequest) -> OutboundResponse:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, OutboundError):
            raise answer
        return answer

    @property
    def sent(self) -> list[str]:
        """The notification ids of the requests, in order (the `webhook-id` header)."""
        return [request.headers["webhook-id"] for request in self.transport.requests]


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def subscribed(store: Store, **overrides: Any) -> Webhook:
    hook = make_webhook(**overrides)
    await store.add_webhooks([hook])
    return hook


async def published(store: Store, hook: Webhook, count: int = 1) -> list[Notification]:
    """`count` notifications of one event to this webhook, pending and due now."""
    event = make_event(hook.group_key)
    notes = [make_notification(hook, event) for _ in range(count)]
    await store.add_events([event], notes)
    return notes


async def drained(store: Store, partner: Partner, clock: Clock, **config: Any) -> Callable[[], Any]:
    worker = Worker(dataclasses.replace(SETTINGS, **config), store, partner.transport, clock=clock)
    await worker.drain()
    return worker.drain


async def row(store: Store, note: Notification) -> Notification:
    found = await store.get_notification(note.group_key, note.webhook_id, note.notification_id)
    assert found is not None
    return found


async def webhook(store: Store, hook: Webhook) -> Webhook:
    found = await store.get_webhook(hook.group_key, hook.webhook_id)
    assert found is not None
    return found


async def test_a_2xx_settles_the_notification_as_delivered(store: Store, clock: Clock) -> None:
    hook = await subscribed(store)
    [note] = await published(store, hook)
    partner = Partner(respond(204, b"thanks"))
    await drained(store, partner, clock)
    assert partner.sent == [str(note.notification_id)]
    done = await row(store, note)
    assert (done.state, done.is_successful, done.attempts) == (NotificationState.SUCCEEDED, True, 1)
    assert (done.response_status_code, done.response_message) == ("204", "HTTP 204\n\nthanks")
    assert done.request_message is not None and done.request_message.startswith("POST ")


@pytest.mark.parametrize(
    ("answer", "cause", "status_code"),
    [
        (respond(500, b"down"), "HTTP 500", "500"),
        (respond(404), "HTTP 404", "404"),
        (OutboundTimeout("timed out after 10 s"), "timed out after 10 s", None),
        (OutboundConnectionError("connection refused"), "connection refused", None),
    ],
)
async def test_a_failure_is_logged_counted_and_retried_on_the_schedule(
    store: Store,
    clock: Clock,
    answer: OutboundResponse | OutboundError,
    cause: str,
    status_code: str | None,
) -> None:
    hook = await subscribed(store)
    [note] = await published(store, hook)
    await drained(store, Partner(answer), clock)
    failed = await row(store, note)
    assert (failed.state, failed.attempts) == (NotificationState.PENDING, 1)
    assert failed.next_attempt_at == clock.now + timedelta(seconds=5)
    assert (failed.process_result_message, failed.response_status_code) == (cause, status_code)
    assert (await webhook(store, hook)).failure_count == 1
    [logged] = (await store.attempts(hook.group_key, hook.webhook_id, [note.notification_id]))[
        note.notification_id
    ]
    assert (logged.attempt, logged.process_result_message) == (1, cause)


async def test_a_retry_that_succeeds_resets_the_count_and_keeps_why_the_first_failed(
    store: Store, clock: Clock
) -> None:
    hook = await subscribed(store)
    [note] = await published(store, hook)
    partner = Partner(respond(503), respond(200))
    drain = await drained(store, partner, clock)
    clock.now += timedelta(seconds=4)
    await drain()
    assert len(partner.sent) == 1  # not due yet
    clock.now += timedelta(seconds=1)
    await drain()
    assert partner.sent == [str(note.notification_id)] * 2  # the same webhook-id
    done = await row(store, note)
    assert (done.state, done.attempts) == (NotificationState.SUCCEEDED, 2)
    assert (await webhook(store, hook)).failure_count == 0
    logs = await store.attempts(hook.group_key, hook.webhook_id, [note.notification_id])
    assert [a.process_result_message for a in logs[note.notification_id]] == ["HTTP 503"]


async def test_more_consecutive_failures_than_retry_count_make_the_webhook_errored(
    store: Store, clock: Clock
) -> None:
    hook = await subscribed(store, retry_count=1)
    notes = await published(store, hook, 3)
    partner = Partner(respond(500))
    await drained(store, partner, clock, per_webhook_concurrency=1)
    errored = await webhook(store, hook)
    assert errored.status_code is WebhookStatus.ERRORED
    assert errored.status_message == "2 consecutive failed deliveries; last: HTTP 500"
    assert partner.sent == [str(note.notification_id) for note in notes[:2]]  # then no more
    states = [(await row(store, note)).state for note in notes]
    assert states == [NotificationState.PARKED] * 3


async def test_410_makes_the_webhook_inactive_and_parks_the_rest_unsent(
    store: Store, clock: Clock
) -> None:
    hook = await subscribed(store)
    notes = await published(store, hook, 3)
    partner = Partner(respond(410, b"bye"))
    await drained(store, partner, clock, per_webhook_concurrency=1)
    assert partner.sent == [str(notes[0].notification_id)]
    assert (await webhook(store, hook)).status_code is WebhookStatus.INACTIVE
    states = [(await row(store, note)).state for note in notes]
    assert states == [NotificationState.PARKED] * 3
    assert (await row(store, notes[0])).response_status_code == "410"
    assert (await row(store, notes[1])).response_status_code is None  # never sent


def attempts_counted(outcome: str) -> float:
    labels = {"outcome": outcome}
    return REGISTRY.get_sample_value("gateway_delivery_attempts_total", labels) or 0.0


async def test_attempts_are_counted_by_how_they_went(store: Store, clock: Clock) -> None:
    kinds = ("success", "failure", "gone")
    before = {kind: attempts_counted(kind) for kind in kinds}
    answers = {"success": respond(200), "failure": respond(500), "gone": respond(410)}
    for answer in answers.values():
        hook = await subscribed(store)
        await published(store, hook)
        await drained(store, Partner(answer), clock)
    assert {kind: attempts_counted(kind) - before[kind] for kind in kinds} == dict.fromkeys(
        kinds, 1.0
    )
