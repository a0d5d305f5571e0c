"""One delivery attempt through the real Outbound to a real receiver on loopback: what the
partner gets (method, body, signed headers), and what the attempt tells history and the retry
schedule (outcome, cause, retry time, request and response as recorded, cut to their limits).
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import types
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from uuid import UUID

import pytest
import standardwebhooks

from gateway import sender as sender_module
from gateway.config import Settings
from gateway.errors import StoreError
from gateway.models import ContentType, HttpMethod, Notification, Webhook, WebhookStatus, utcnow
from gateway.outbound import Outbound
from gateway.outcomes import AttemptOutcome, Effect
from gateway.sender import NOT_ACTIVE, Sender
from gateway.signing import generate_secret
from gateway.store import Store
from gateway.store.sqlite import ThrowawaySqliteStore
from gateway.wire_values import truncate
from tests.factories import make_notification, make_webhook, set_expiration
from tests.integration.conftest import LOOPBACK
from tests.receiver import Answer, Receiver, Seen

OWNER = "worker-1"
SCHEDULE = (5.0, 30.0, 120.0)


class Clock:
    """The gateway's clock, held still; near real time, since verifiers refuse old stamps."""

    def __init__(self) -> None:
        self.now = utcnow().replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


def settings(**overrides: Any) -> Settings:
    base = Settings(
        retry_schedule=SCHEDULE,
        retry_jitter=0.0,
        retry_after_cap=600.0,
        delivery_timeout=2.0,
        history_message_limit=4096,
        max_response_bytes=65_536,
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def stored(store: Store, url: str, **overrides: Any) -> Webhook:
    hook = make_webhook(callback_url=url, **overrides)
    await store.add_webhooks([hook])
    return hook


async def attempt(
    outbound: Outbound, store: Store, clock: Clock, note: Notification, **config: Any
) -> AttemptOutcome:
    return await Sender(settings(**config), outbound, store, clock).attempt(note, OWNER)


def verified(hook: Webhook, seen: Seen, secret: str | None = None) -> Any:
    """The delivery as a Standard Webhooks receiver holding `secret` reads it (raises if the
    signature does not verify)."""
    payload = seen.body if seen.method != "GET" else seen.query.encode()
    verifier = standardwebhooks.Webhook(secret or hook.client_secret)
    return verifier.verify(payload, seen.headers, json_parse=seen.method != "GET")


async def test_a_2xx_is_a_success_recording_what_went_and_what_came_back(
    outbound: Outbound, store: Store, clock: Clock, receiver: Receiver
) -> None:
    hook = await stored(store, receiver.plan("/hook", Answer(status=201, body="thanks")))
    note = make_notification(hook)
    outcome = await attempt(outbound, store, clock, note)
    [seen] = receiver.seen
    assert seen.method == "POST"
    assert verified(hook, seen)["notificationId"] == str(note.notification_id)
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["webhook-id"] == str(note.notification_id)
    assert seen.headers["webhook-timestamp"] == str(int(clock.now.timestamp()))
    assert outcome.elapsed_ms is not None and 0 < outcome.elapsed_ms < 2000  # the answer's time
    assert dataclasses.replace(outcome, elapsed_ms=None) == AttemptOutcome(
        notification_id=note.notification_id,
        lease_owner=OWNER,
        effect=Effect.SUCCESS,
        cause="HTTP 201",
        retry_at=None,
        response_status_code="201",
        request_message=f"POST {hook.callback_url}\n\n{seen.body.decode()}",
        response_message="HTTP 201\n\nthanks",
    )


async def test_a_get_webhook_sends_no_body_and_records_the_url_it_called(
    outbound: Outbound, store: Store, clock: Clock, receiver: Receiver
) -> None:
    hook = await stored(
        store,
        receiver.plan("/hook") + "?tenant=7",
        callback_http_method=HttpMethod.GET,
        request_content_type=ContentType.ID,
    )
    outcome = await attempt(outbound, store, clock, make_notification(hook))
    [seen] = receiver.seen
    assert (seen.method, seen.body) == ("GET", b"")
    verified(hook, seen)
    assert seen.query.startswith("tenant=7&") and seen.params["ids"] == ["42"]
    assert outcome.request_message == f"GET {receiver.url}/hook?{seen.query}\n\n"
    assert outcome.effect is Effect.SUCCESS


@pytest.mark.parametrize(("earlier_attempts", "wait"), [(0, 5), (1, 30), (2, 120), (7, 120)])
async def test_a_failed_answer_is_retried_after_the_schedules_delay_for_that_attempt(
    outbound: Outbound,
    store: Store,
    clock: Clock,
    receiver: Receiver,
    earlier_attempts: int,
    wait: float,
) -> None:
    hook = await stored(store, receiver.plan("/hook", Answer(status=500, body="down")))
    note = make_notification(hook, attempts=earlier_attempts)
    outcome = await attempt(outbound, store, clock, note)
    assert (outcome.effect, outcome.cause) == (Effect.FAILURE, "HTTP 500")
    assert outcome.retry_at == clock.now + timedelta(seconds=wait)
    assert outcome.response_status_code == "500"
    assert outcome.response_message == "HTTP 500\n\ndown"


async def test_jitter_spreads_the_retry_within_its_fraction_of_the_delay(
    outbound: Outbound, store: Store, clock: Clock, receiver: Receiver
) -> None:
    hook = await stored(store, receiver.plan("/hook", Answer(status=503)))
    sender = Sender(settings(retry_jitter=0.5), outbound, store, clock)
    waits = set()
    for _ in range(8):
        outcome = await sender.attempt(make_notification(hook), OWNER)
        assert outcome.retry_at is not None
        waits.add((outcome.retry_at - clock.now).total_seconds())
    assert all(2.5 <= wait <= 7.5 for wait in waits)
    assert len(waits) > 1, "eight retries of a 5 s delay with ±50% jitter all at one time"


def in_seconds(clock: Clock, seconds: int) -> str:
    return format_datetime(clock.now + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [
        (lambda clock: "300", 300),
        (lambda clock: in_seconds(clock, 400), 400),  # an HTTP-date, read against our clock
        (lambda clock: "1", 5),  # never sooner than our own schedule
        (lambda clock: "86400", 600),  # capped by retry_after_cap
    ],
)
async def test_a_failed_answer_with_retry_after_waits_as_asked_within_bounds(
    outbound: Outbound,
    store: Store,
    clock: Clock,
    receiver: Receiver,
    retry_after: Any,
    wait: float,
) -> None:
    answer = Answer(status=429, headers={"Retry-After": retry_after(clock)})
    hook = await stored(store, receiver.plan("/hook", answer))
    outcome = await attempt(outbound, store, clock, make_notification(hook))
    assert (outcome.effect, outcome.cause) == (Effect.FAILURE, "HTTP 429")
    assert outcome.retry_at == clock.now + timedelta(seconds=wait)


async def test_410_means_the_partner_unsubscribed_and_nothing_is_retried(
    outbound: Outbound, store: Store, clock: Clock, receiver: Receiver
) -> None:
    hook = await stored(store, receiver.plan("/hook", Answer(status=410, body="gone")))
    outcome = await attempt(outbound, store, clock, make_notification(hook))
    assert (outcome.effect, outcome.cause, outcome.retry_at) == (Effect.GONE, "HTTP 410", None)
    assert outcome.response_message == "HTTP 410\n\ngone"


async def test_no_answer_within_the_delivery_timeout_is_a_failure_without_a_response(
    outbound: Outbound, store: Store, clock: Clock, receiver: Receiver
) -> None:
    hook = await stored(store, receiver.plan("/hook", Answer(delay=5)))
    note = make_notification(hook)
    outcome = await attempt(outbound, store, clock, note, delivery_timeout=0.3)
    [seen] = receiver.seen
    assert outcome == AttemptOutcome(
        notification_id=note.notification_id,
        lease_owner=OWNER,
        effect=Effect.FAILURE,
        cause="timed out after 0.3 s",
        retry_at=clock.now + timedelta(seconds=5),
        response_status_code=None,
        request_message=f"POST {hook.callback_url}\n\n{seen.body.decode()}",
        response_message=None,
    )


async def test_a_refused_connection_is_a_failure_saying_so(
    outbound: Outbound, store: Store, clock: Clock
) -> None:
    with socket.socket() as probe:  # a loopback port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hook = await stored(store, f"http://127.0.0.1:{port}/hook")
    outcome = await attempt(outbound, store, clock, make_notification(hook))
    assert (outcome.effect, outcome.cause) == (Effect.FAILURE, "connection refused")
    assert outcome.retry_at == clock.now + timedelta(seconds=5)
    assert (outcome.response_status_code, outcome.response_message) == (None, None)


async def test_request_and_response_messages_are_cut_to_the_history_limit(
    outbound: Outbound, store: Store, clock: Clock, receiver: Receiver
) -> None:
    hook = await stored(store, receiver.plan("/hook", Answer(status=500, body="e" * 300)))
    outcome = await attempt(outbound, store, clock, make_notification(hook),
                            history_message_limit=100)  # fmt: skip
    [seen] = receiver.seen
    request = f"POST {hook.callback_url}\n\n{seen.body.decode()}"
    assert len(request) > 100
    assert outcome.request_message == truncate(request, 100)
    assert outcome.response_message == truncate("HTTP 500\n\n" + "e" * 300, 100)
    assert outcome.response_message is not None
    assert outcome.response_message.startswith("HTTP 500\n\neee")
    assert outcome.response_message.endswith("…[truncated 210 characters]")


async def test_only_max_response_bytes_of_the_answer_are_read(
    outbound: Outbound, store: Store, clock: Clock, receiver: Receiver
) -> None:
    hook = await stored(store, receiver.plan("/hook", Answer(body="0123456789" * 10)))
    outcome = await attempt(outbound, store, clock, make_notification(hook),
                            max_response_bytes=25)  # fmt: skip
    assert outcome.response_message == "HTTP 200\n\n0123456789012345678901234"


async def test_an_answer_that_is_not_text_is_recorded_readably(
    outbound: Outbound, store: Store, clock: Clock, receiver: Receiver
) -> None:
    # NUL cannot be stored in PostgreSQL text; bytes that are not UTF-8 are not text at all.
    hook = await stored(store, receiver.plan("/hook", Answer(raw=b"a\x00b\xffc")))
    outcome = await attempt(outbound, store, clock, make_notification(hook))
    assert outcome.response_message == "HTTP 200\n\na\ufffdb\ufffdc"


@pytest.mark.parametrize(
    "change",
    [
        {"status_code": WebhookStatus.INACTIVE},
        {"status_code": WebhookStatus.ERRORED},
        {"expiration_date": datetime(2020, 1, 1, tzinfo=UTC)},
    ],
)
async def test_nothing_is_sent_to_a_webhook_that_is_not_active(
    outbound: Outbound,
    store: Store,
    clock: Clock,
    receiver: Receiver,
    change: dict[str, Any],
) -> None:
    hook = await stored(store, receiver.plan("/hook"), **change)
    note = make_notification(hook)
    outcome = await attempt(outbound, store, clock, note)
    assert outcome == AttemptOutcome(note.notification_id, OWNER, Effect.NOT_SENT, NOT_ACTIVE, None)
    assert receiver.seen == []


async def test_a_webhook_expired_by_the_gateways_clock_gets_nothing(
    outbound: Outbound, store: Store, clock: Clock, receiver: Receiver
) -> None:
    # Expired an hour ago by the gateway's clock, though not yet by the wall clock.
    clock.now += timedelta(days=2)
    hook = await stored(store, receiver.plan("/hook"),
                        expiration_date=clock.now - timedelta(hours=1))  # fmt: skip
    outcome = await attempt(outbound, store, clock, make_notification(hook))
    assert outcome.effect is Effect.NOT_SENT
    assert receiver.seen == []


async def test_a_deleted_webhook_gets_nothing(
    outbound: Outbound, store: Store, clock: Clock
) -> None:
    note = make_notification(make_webhook())  # never stored
    outcome = await attempt(outbound, store, clock, note)
    assert (outcome.effect, outcome.cause) == (Effect.NOT_SENT, NOT_ACTIVE)


@pytest.mark.parametrize(
    ("records", "why"),
    [
        (({"name": "no id"},), "each record needs an 'id' or 'InvoiceId'"),
        (({"id": "1", "n": 2**64},), "Integer exceeds 64-bit range"),
    ],
)
async def test_a_notification_that_cannot_be_rendered_fails_for_good_unsent(
    outbound: Outbound,
    store: Store,
    clock: Clock,
    receiver: Receiver,
    records: tuple[dict[str, Any], ...],
    why: str,
) -> None:
    content = ContentType.ID if "name" in records[0] else ContentType.FULL
    hook = await stored(store, receiver.plan("/hook"), request_content_type=content)
    note = make_notification(hook, records=records)
    outcome = await attempt(outbound, store, clock, note)
    assert (outcome.notification_id, outcome.lease_owner) == (note.notification_id, OWNER)
    assert (outcome.effect, outcome.retry_at) == (Effect.UNDELIVERABLE, None)
    assert outcome.cause.startswith("cannot be rendered: ") and why in outcome.cause
    assert outcome.request_message is None
    assert receiver.seen == []


async def test_during_the_grace_period_both_secrets_sign_and_after_it_only_the_new_one(
    outbound: Outbound, store: Store, clock: Clock, receiver: Receiver
) -> None:
    old = generate_secret()
    hook = await stored(store, receiver.plan("/hook"), previous_secret=old,
                        previous_secret_expires=clock.now + timedelta(seconds=1))  # fmt: skip
    sender = Sender(settings(), outbound, store, clock)
    await sender.attempt(make_notification(hook), OWNER)
    clock.now += timedelta(seconds=1)  # the grace period ends at its expiry, not after it
    await sender.attempt(make_notification(hook), OWNER)
    during, after = receiver.seen
    verified(hook, during, old)
    verified(hook, during)
    assert len(during.headers["webhook-signature"].split()) == 2
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verified(hook, after, old)
    verified(hook, after)


async def test_a_send_is_signed_at_the_gateways_clock_unless_told_otherwise(
    outbound: Outbound, store: Store, clock: Clock, receiver: Receiver
) -> None:
    hook = await stored(store, receiver.plan("/hook"))
    sender = Sender(settings(), outbound, store, clock)
    sent = await sender.send(hook, make_notification(hook))
    at = clock.now - timedelta(seconds=30)
    await sender.send(hook, make_notification(hook), at)
    assert sent.response is not None and sent.error is None
    now_stamp, given_stamp = (s.headers["webhook-timestamp"] for s in receiver.seen)
    assert (now_stamp, given_stamp) == (str(int(clock.now.timestamp())), str(int(at.timestamp())))


async def test_a_test_send_waits_for_its_groups_slot_and_other_groups_do_not(
    store: Store, clock: Clock, receiver: Receiver
) -> None:
    # The API's client caps each group's requests in flight; a send names its webhook's group.
    slow = await stored(store, receiver.plan("/slow", Answer(delay=1)))
    same = await stored(store, receiver.plan("/same"), group_key=slow.group_key)
    other = await stored(store, receiver.plan("/other"))
    async with Outbound(policy=LOOPBACK, per_group=1) as capped:
        patient = Sender(settings(delivery_timeout=5), capped, store, clock)
        hasty = Sender(settings(delivery_timeout=0.3), capped, store, clock)
        answered, busy, free = await asyncio.gather(
            patient.send(slow, make_notification(slow)),
            hasty.send(same, make_notification(same)),
            hasty.send(other, make_notification(other)),
        )
    assert answered.response is not None and answered.response.status == 200
    assert "waiting for one of this group's 1 outbound request slots" in str(busy.error)
    assert free.response is not None and free.response.status == 200
    assert sorted(s.path for s in receiver.seen) == ["/other", "/slow"]


class CountingStore(ThrowawaySqliteStore):
    """Counts the worker's webhook reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get_webhooks_any_group(self, webhook_ids: Collection[UUID]) -> list[Webhook]:
        self.reads += 1
        return await super().get_webhooks_any_group(webhook_ids)


@pytest.fixture
async def counting() -> AsyncIterator[CountingStore]:
    async with CountingStore() as store:
        yield store


class Monotonic:
    """Stands in for the sender's monotonic clock, so reuse of a read needs no waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> Monotonic:
    fake = Monotonic()
    monkeypatch.setattr(sender_module, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


async def test_a_busy_webhook_is_read_once_per_cache_interval(
    outbound: Outbound,
    counting: CountingStore,
    clock: Clock,
    receiver: Receiver,
    monotonic: Monotonic,
) -> None:
    hook = await stored(counting, receiver.plan("/hook"))
    sender = Sender(settings(), outbound, counting, clock)
    for _ in range(3):
        assert (await sender.attempt(make_notification(hook), OWNER)).effect is Effect.SUCCESS
    assert counting.reads == 1
    monotonic.now += sender_module.WEBHOOK_CACHE_SECONDS - 0.01
    await sender.attempt(make_notification(hook), OWNER)
    assert counting.reads == 1
    monotonic.now += 0.01
    await sender.attempt(make_notification(hook), OWNER)
    assert counting.reads == 2
    assert len(receiver.seen) == 5


async def test_a_missing_webhook_is_remembered_as_missing_too(
    outbound: Outbound, counting: CountingStore, clock: Clock, monotonic: Monotonic
) -> None:
    sender = Sender(settings(), outbound, counting, clock)
    note = make_notification(make_webhook())
    for _ in range(2):
        assert (await sender.attempt(note, OWNER)).effect is Effect.NOT_SENT
    assert counting.reads == 1


async def test_senders_that_miss_the_cache_together_share_one_read(
    outbound: Outbound, counting: CountingStore, clock: Clock, receiver: Receiver
) -> None:
    hooks = [await stored(counting, receiver.plan(f"/hook/{i}")) for i in range(30)]
    sender = Sender(settings(), outbound, counting, clock)
    outcomes = await asyncio.gather(
        *(sender.attempt(make_notification(hook), OWNER) for hook in hooks)
    )
    assert [outcome.effect for outcome in outcomes] == [Effect.SUCCESS] * 30
    assert counting.reads == 1
    assert len(receiver.seen) == 30


class HeldStore(CountingStore):
    """Its webhook reads read, then wait for `release` to answer, or fail with `error` if one
    is set by then."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.error: Exception | None = None

    async def get_webhooks_any_group(self, webhook_ids: Collection[UUID]) -> list[Webhook]:
        self.reads += 1
        found = await ThrowawaySqliteStore.get_webhooks_any_group(self, webhook_ids)
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return found


@pytest.fixture
async def held() -> AsyncIterator[HeldStore]:
    async with HeldStore() as store:
        yield store


async def test_a_read_that_fails_fails_every_sender_waiting_for_it_and_is_not_kept(
    outbound: Outbound, held: HeldStore, clock: Clock, receiver: Receiver
) -> None:
    hook = await stored(held, receiver.plan("/hook"))
    sender = Sender(settings(), outbound, held, clock)
    waiting = [asyncio.create_task(sender.attempt(make_notification(hook), OWNER)) for _ in "ab"]
    await asyncio.sleep(0.01)
    held.error = StoreError("the database is gone")
    held.release.set()
    for task in waiting:
        with pytest.raises(StoreError, match="the database is gone"):
            await task
    held.error = None
    assert (await sender.attempt(make_notification(hook), OWNER)).effect is Effect.SUCCESS
    assert held.reads == 2
    assert len(receiver.seen) == 1


async def test_a_sender_cancelled_while_it_waits_leaves_the_others_their_answer(
    outbound: Outbound, held: HeldStore, clock: Clock, receiver: Receiver
) -> None:
    hook = await stored(held, receiver.plan("/hook"))
    sender = Sender(settings(), outbound, held, clock)
    first, second = (
        asyncio.create_task(sender.attempt(make_notification(hook), OWNER)) for _ in "ab"
    )
    await asyncio.sleep(0.01)
    first.cancel()
    held.release.set()
    assert (await second).effect is Effect.SUCCESS
    assert first.cancelled()
    assert held.reads == 1


async def test_a_change_heard_of_during_a_read_is_not_hidden_by_it(
    outbound: Outbound, held: HeldStore, clock: Clock, receiver: Receiver, monotonic: Monotonic
) -> None:
    hook = await stored(held, receiver.plan("/hook"))
    sender = Sender(settings(), outbound, held, clock)
    sending = asyncio.create_task(sender.attempt(make_notification(hook), OWNER))
    await asyncio.sleep(0.01)
    await set_expiration(held, hook, clock.now - timedelta(minutes=1))
    sender.forget(hook.webhook_id)  # heard after the read, before its answer
    held.release.set()
    assert (await sending).effect is Effect.SUCCESS  # asked before the change: what was read
    assert (await sender.attempt(make_notification(hook), OWNER)).effect is Effect.NOT_SENT
    assert held.reads == 2


@pytest.mark.parametrize("forget", ["one", "all"])
async def test_a_change_the_worker_hears_of_applies_to_the_next_send(
    outbound: Outbound,
    store: Store,
    clock: Clock,
    receiver: Receiver,
    monotonic: Monotonic,
    forget: str,
) -> None:
    hook = await stored(store, receiver.plan("/hook"))
    sender = Sender(settings(), outbound, store, clock)
    assert (await sender.attempt(make_notification(hook), OWNER)).effect is Effect.SUCCESS
    await set_expiration(store, hook, clock.now - timedelta(minutes=1))
    if forget == "one":
        sender.forget(make_webhook().webhook_id)  # another webhook's change: still reused
        assert (await sender.attempt(make_notification(hook), OWNER)).effect is Effect.SUCCESS
        sender.forget(hook.webhook_id)
    else:
        sender.forget_all()
    assert (await sender.attempt(make_notification(hook), OWNER)).effect is Effect.NOT_SENT
    assert len(receiver.seen) == (2 if forget == "one" else 1)
