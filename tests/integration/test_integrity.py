"""Nothing accepted is stranded (issue 17): each way it used to break, reproduced over real HTTP
against a real receiver, on SQLite and on PostgreSQL.

The invariants of gateway.lifecycle are checked after each scenario with the store's own check
(`check_invariants`, counting only): no parked notification of an Active webhook, no unleased
pending notification of a webhook that is not Active.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest

from gateway.api.webhooks import expire_due
from gateway.delivery import Worker
from gateway.models import EventType, NotificationState, WebhookStatus, utcnow
from gateway.store.base import INVARIANTS, Query
from gateway.store.postgres import PostgresStore
from tests.factories import make_event, make_notification, set_expiration
from tests.gateway_server import RunningGateway, gateway_settings, run_gateway
from tests.partner import (
    Partner,
    drain_until,
    invoice_update,
    subscribe,
)
from tests.receiver import Answer, Receiver

NO_VIOLATIONS = dict.fromkeys(INVARIANTS, 0)


@pytest.fixture
def gateway(gateway_on_each_store: RunningGateway) -> RunningGateway:
    return gateway_on_each_store


@contextlib.asynccontextmanager
async def delivering(gateway: RunningGateway, **changes: Any) -> AsyncIterator[Worker]:
    """A worker running in the background (as under `gateway serve`) until the block ends."""
    settings = dataclasses.replace(gateway.ctx.settings, poll_interval=0.02, **changes)
    worker = Worker(settings, gateway.ctx.store, gateway.ctx.outbound)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def repeating(action: Callable[[], Awaitable[Any]], loops: int) -> AsyncIterator[list[Any]]:
    """`loops` tasks doing `action` again and again until the block ends; their results."""
    results: list[Any] = []
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            results.append(await action())
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(loop()) for _ in range(loops)]
    try:
        yield results
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def status_of(partner: Partner) -> WebhookStatus:
    hook = await partner.stored()
    return hook.status_code  # type: ignore[no-any-return]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.01)


def group_of(partner: Partner) -> UUID:
    return UUID(partner.hook["groupKey"])


async def states(partner: Partner) -> list[NotificationState]:
    store = partner.gateway.ctx.store
    page = await store.query_history(group_of(partner), partner.id, Query(page_size=500))
    return [row.state for row in page.records]


async def invariants(gateway: RunningGateway) -> dict[str, int]:
    return await gateway.ctx.store.check_invariants(utcnow(), repair=False)


# -- §1: a PATCH raced the worker and wrote back an old status ---------------------------------
@pytest.mark.parametrize("attempt", range(4))
async def test_patching_the_name_while_the_worker_errors_the_webhook_strands_nothing(
    gateway: RunningGateway, receiver: Receiver, attempt: int
) -> None:
    """retryCount 0, a callback answering 500, four loops PATCHing the name while an event is
    published: the webhook used to end Active with its notification parked for good (6 of 14
    runs on SQLite, 9 of 12 on PostgreSQL). Now it ends Errored with its notification parked,
    and reactivating it delivers that notification."""
    partner = await subscribe(gateway, receiver, retry_count=0)
    receiver.plan("/hook", Answer(status=500))
    async with delivering(gateway), repeating(lambda: partner.patch(name=f"n{uuid4()}"), 4) as done:
        await partner.publish(invoice_update())
        await eventually(lambda: _errored(partner))
        await asyncio.sleep(0.05)  # the PATCHes go on after the settlement
    assert done and all(answer.status_code == 200 for answer in done)
    assert await status_of(partner) is WebhookStatus.ERRORED
    assert await states(partner) == [NotificationState.PARKED]
    assert await invariants(gateway) == NO_VIOLATIONS
    receiver.plan("/hook", Answer())
    assert (await partner.patch(statusCode="Active")).json()["statusCode"] == "Active"
    await gateway.worker().drain()
    assert await states(partner) == [NotificationState.SUCCEEDED]


async def _errored(partner: Partner) -> bool:
    return await status_of(partner) is WebhookStatus.ERRORED


async def test_a_pause_during_deliveries_is_never_lost(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """The pause answered 200 Inactive used to be undone by a settlement or a PATCH that
    wrote back the status it had read."""
    partner = await subscribe(gateway, receiver, retry_count=5)
    receiver.plan("/hook", Answer(status=503), Answer(delay=0.01))
    async with delivering(gateway), repeating(lambda: partner.patch(name=f"n{uuid4()}"), 2):
        await partner.publish(*[invoice_update([{"id": str(i)}]) for i in range(40)])
        await asyncio.sleep(0.05)
        paused = await partner.patch(statusCode="Inactive")
        assert paused.json()["statusCode"] == "Inactive"
        await asyncio.sleep(0.2)  # settlements and renames after the pause
    hook = await partner.stored()
    assert (hook.status_code, hook.status_message) == (WebhookStatus.INACTIVE, "paused by owner")
    assert await invariants(gateway) == NO_VIOLATIONS
    assert NotificationState.PENDING not in await states(partner)
    receiver.plan("/hook", Answer())
    await partner.patch(statusCode="Active")
    await gateway.worker().drain()
    assert set(await states(partner)) == {NotificationState.SUCCEEDED}


async def test_regenerations_at_once_both_answer_secrets_that_sign(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver)
    path = f"/api/v1/Webhooks/{partner.id}/regenerate-client-secret"
    async with gateway.client(partner.key) as api:
        answers = await asyncio.gather(*(api.patch(path) for _ in range(2)))
    secrets = [answer.json()["clientSecret"] for answer in answers]
    assert len(set(secrets)) == 2
    await partner.publish(invoice_update())
    await gateway.worker().drain()
    [seen] = receiver.notifications("/hook")
    for secret in secrets:  # within the grace period, both sign
        partner.verify(seen, secret=secret)


# -- §2: renewing an expired webhook by its expirationDate ------------------------------------
@pytest.mark.parametrize("swept", [False, True], ids=["before the sweep", "after the sweep"])
async def test_renewing_an_expired_webhook_reactivates_it_and_delivers_what_waited(
    gateway: RunningGateway, receiver: Receiver, swept: bool
) -> None:
    partner = await subscribe(gateway, receiver)
    await set_expiration(gateway.ctx.store, await partner.stored(), utcnow() - timedelta(seconds=1))
    await partner.publish(invoice_update())
    if swept:
        [expired] = await expire_due(gateway.ctx)
        assert expired.status_code is WebhookStatus.INACTIVE
    await gateway.worker().drain()
    assert receiver.notifications("/hook") == []
    handshakes = len(receiver.seen) - len(receiver.notifications())
    future = (utcnow() + timedelta(days=30)).isoformat()
    renewed = await partner.patch(expirationDate=future)
    assert renewed.status_code == 200, renewed.text
    assert (renewed.json()["statusCode"], renewed.json()["statusMessage"]) == ("Active", None)
    assert len(receiver.seen) - len(receiver.notifications()) == handshakes + 1
    await gateway.worker().drain()
    [seen] = receiver.notifications("/hook")
    assert partner.verify(seen)["records"] == invoice_update()["records"]
    assert await invariants(gateway) == NO_VIOLATIONS


async def test_renewing_with_a_failing_callback_changes_nothing(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver)
    await set_expiration(gateway.ctx.store, await partner.stored(), utcnow() - timedelta(seconds=1))
    await expire_due(gateway.ctx)
    await partner.publish(invoice_update())
    before = await partner.stored()
    receiver.plan("/hook", Answer(status=404))
    answer = await partner.patch(expirationDate=(utcnow() + timedelta(days=1)).isoformat())
    assert answer.status_code == 400 and "HTTP 404" in answer.json()["detail"]
    assert await partner.stored() == before
    assert await states(partner) == [NotificationState.PARKED]


async def test_a_new_date_does_not_resume_a_paused_webhook(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver)
    await partner.patch(statusCode="Inactive")
    await set_expiration(gateway.ctx.store, await partner.stored(), utcnow() - timedelta(seconds=1))
    answer = await partner.patch(expirationDate=(utcnow() + timedelta(days=1)).isoformat())
    assert (answer.json()["statusCode"], answer.json()["statusMessage"]) == (
        "Inactive", "paused by owner",
    )  # fmt: skip


async def test_expiry_reads_and_sweeps_with_one_message(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver)
    when = utcnow().replace(microsecond=0) - timedelta(seconds=1)
    await set_expiration(gateway.ctx.store, await partner.stored(), when)
    expected = f"expired on {when.replace(tzinfo=None).isoformat()}Z"
    async with gateway.client(partner.key) as api:
        read = (await api.get(f"/api/v1/Webhooks/{partner.id}")).json()
        queried = (
            await api.get("/api/v1/Webhooks/query", params={"filter": "statusCode eq Inactive"})
        ).json()
        await expire_due(gateway.ctx)
        swept = (await api.get(f"/api/v1/Webhooks/{partner.id}")).json()
    assert read["statusMessage"] == queried["records"][0]["statusMessage"] == expected
    assert swept["statusMessage"] == expected


# -- §4: an Errored webhook kept receiving --------------------------------------------------------
async def test_an_errored_webhook_receives_nothing_beyond_the_requests_in_flight(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """retryCount 0, 1,000 notifications, an endpoint answering 500: 512 requests reached it,
    because claimed notifications went out while a one-second cache of the webhook still said
    Active. The send that makes it Errored is followed by none."""
    partner = await subscribe(gateway, receiver, retry_count=0)
    receiver.plan("/hook", Answer(status=500))
    await partner.publish(*[invoice_update([{"id": str(i)}]) for i in range(1000)])
    cap = gateway.ctx.settings.per_webhook_concurrency
    await gateway.worker().drain()
    assert await status_of(partner) is WebhookStatus.ERRORED
    assert 1 <= len(receiver.notifications("/hook")) <= cap
    assert set(await states(partner)) == {NotificationState.PARKED}
    assert await invariants(gateway) == NO_VIOLATIONS


async def test_a_pause_reaches_the_worker_of_the_same_process_at_once(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """The API tells the worker of its own process: once the sends in flight are answered, it
    sends nothing more of a paused webhook, where its copy of the webhook (cached for a second)
    and the notifications it held would have let the next ones go before any settlement."""
    partner = await subscribe(gateway, receiver)
    receiver.plan("/hook", Answer(delay=0.5))
    cap = 2
    async with delivering(gateway, per_webhook_concurrency=cap) as worker:
        gateway.ctx.worker = worker
        try:
            await partner.publish(*[invoice_update([{"id": str(i)}]) for i in range(20)])
            worker.wake()
            await receiver.wait_for(cap, "/hook")  # in flight: answered in half a second
            await partner.patch(statusCode="Inactive")
            at_pause = len(receiver.notifications("/hook"))
            await asyncio.sleep(0.8)  # the sends in flight are answered, then nothing more
        finally:
            gateway.ctx.worker = None
    assert at_pause == cap
    assert len(receiver.notifications("/hook")) == at_pause
    assert await invariants(gateway) == NO_VIOLATIONS


# -- §5: accepted but undeliverable --------------------------------------------------------
async def test_a_notification_that_cannot_be_rendered_fails_for_good(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """Stored before the door refused such records (or missed by it): it used to stay pending
    with 0 attempts forever, logging an ERROR at every lease."""
    partner = await subscribe(gateway, receiver, retry_count=0)
    # 253 levels: the store's encoding takes it, the envelope around it is too deep to render.
    deep: dict[str, Any] = {"id": "1"}
    for _ in range(252):
        deep = {"id": "1", "child": deep}
    group = group_of(partner)
    event = make_event(group, table_key="Invoice", event_type=EventType.UPDATE, records=(deep,))
    hook = await partner.stored()
    note = make_notification(hook, event)
    await gateway.ctx.store.add_events([event], [note])
    await partner.publish(invoice_update())  # a good one, after it
    await gateway.worker().drain()
    row = await gateway.ctx.store.get_notification(group, partner.id, note.notification_id)
    assert row is not None and row.state is NotificationState.FAILED
    assert row.process_result_message is not None
    assert row.process_result_message.startswith("cannot be rendered")
    assert (row.attempts, row.request_sent) == (0, False)
    assert await status_of(partner) is WebhookStatus.ACTIVE  # not the partner's failure
    assert len(receiver.notifications("/hook")) == 1
    assert await gateway.ctx.store.claim_due(utcnow() + timedelta(hours=1), 10, "w", utcnow()) == []


# -- History keeps every attempt -----------------------------------------------------------
async def test_history_keeps_why_earlier_attempts_failed(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver, retry_count=5)
    receiver.plan("/hook", Answer(status=500, body="try later"), Answer(status=503), Answer())
    await partner.publish(invoice_update())
    await drain_until(gateway.worker(), lambda: len(receiver.notifications("/hook")) >= 3)
    [row] = (await partner.history(include="Attempts"))["records"]
    attempts = row["attempts"]
    assert [(a["attempt"], a["isSuccessful"], a["responseStatusCode"]) for a in attempts] == [
        (1, False, "500"), (2, False, "503"), (3, True, "200"),
    ]  # fmt: skip
    assert attempts[0]["responseMessage"].endswith("try later")
    assert row["failureCount"] == 2 and row["isSuccessful"] is True


async def test_an_answer_with_nul_is_recorded_alike_on_both_stores(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """PostgreSQL text cannot hold NUL: recording such an answer failed there, leaving the
    notification unrecorded, while SQLite kept it. Both keep the answer with U+FFFD now."""
    partner = await subscribe(gateway, receiver)
    receiver.plan("/hook", Answer(body="ok\x00done"))
    await partner.publish(invoice_update())
    await gateway.worker().drain()
    [row] = (await partner.history(include="ResponseMessage"))["records"]
    assert row["isSuccessful"] is True
    assert row["responseMessage"] == "HTTP 200\n\nok\ufffddone"


# -- Everything at once ---------------------------------------------------------------------
async def test_owners_workers_and_publishers_at_once_strand_nothing(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """Bounded chaos: PATCHes, pauses, resumes, regenerations and publishes interleaved with
    failing and recovering deliveries, for a fixed number of steps. At the end, after every
    webhook is resumed, every accepted notification is delivered; before that, every one is
    delivered or visibly parked, and the invariants hold throughout."""
    rng = random.Random(1723)
    key = (await gateway.add_key("acme"))[0]
    partners = [
        await subscribe(gateway, receiver, retry_count=rng.randint(0, 2), path=f"/p{i}", key=key)
        for i in range(3)
    ]
    for partner in partners:
        receiver.plan(
            partner.path, *[Answer(status=rng.choice([200, 200, 500])) for _ in range(60)]
        )
    accepted: dict[str, str] = {}  # event id -> partner path

    async def act(partner: Partner, step: int) -> None:
        choice = rng.random()
        if choice < 0.45:
            ids = (await partner.publish(invoice_update([{"id": f"{step}"}])))["eventIds"]
            accepted.update((event_id, partner.path) for event_id in ids)
        elif choice < 0.6:
            await partner.patch(name=f"renamed {step}", retryCount=rng.randint(0, 3))
        elif choice < 0.7:
            await partner.patch(statusCode="Inactive")
        elif choice < 0.85:
            await partner.patch(statusCode="Active")
        else:
            async with gateway.client(partner.key) as api:
                await api.patch(f"/api/v1/Webhooks/{partner.id}/regenerate-client-secret")

    async with delivering(gateway):
        for step in range(60):
            await asyncio.gather(*(act(partner, step) for partner in partners))
            await asyncio.sleep(rng.random() * 0.01)
        await asyncio.sleep(0.1)
    assert await invariants(gateway) == NO_VIOLATIONS
    for partner in partners:
        for state in await states(partner):
            assert state in (NotificationState.SUCCEEDED, NotificationState.PARKED,
                             NotificationState.PENDING)  # fmt: skip
    for partner in partners:
        receiver.plan(partner.path, Answer())
        resumed = await partner.patch(statusCode="Active")
        assert resumed.status_code == 200, resumed.text

    async def all_delivered() -> bool:
        found = [await states(partner) for partner in partners]
        return all(set(f) <= {NotificationState.SUCCEEDED} for f in found)

    await drain_until(gateway.worker(), all_delivered)
    delivered = {
        orjson.loads(seen.body)["eventId"]
        for partner in partners
        for seen in receiver.notifications(partner.path)
    }
    assert set(accepted) <= delivered
    assert await invariants(gateway) == NO_VIOLATIONS


@pytest.mark.postgres
async def test_a_pause_reaches_a_worker_of_another_process_through_postgres(
    tmp_path: Path, receiver: Receiver, postgres_url: str
) -> None:
    """A worker with a store of its own (as in another process or machine) learns of the pause
    from PostgreSQL's NOTIFY: once its sends in flight are answered, it sends nothing more."""
    settings = gateway_settings(tmp_path, database_url=postgres_url)
    async with run_gateway(settings) as gateway, PostgresStore(postgres_url) as other:
        partner = await subscribe(gateway, receiver)
        receiver.plan("/hook", Answer(delay=0.5))
        cap = 2
        worker_settings = dataclasses.replace(settings, per_webhook_concurrency=cap)
        worker = Worker(worker_settings, other, gateway.ctx.outbound)
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        try:
            await partner.publish(*[invoice_update([{"id": str(i)}]) for i in range(20)])
            await receiver.wait_for(cap, "/hook")  # in flight: answered in half a second
            await partner.patch(statusCode="Inactive")
            at_pause = len(receiver.notifications("/hook"))
            await asyncio.sleep(0.8)  # the sends in flight are answered, then nothing more
        finally:
            stop.set()
            await running
    assert at_pause == cap
    assert len(receiver.notifications("/hook")) == at_pause
