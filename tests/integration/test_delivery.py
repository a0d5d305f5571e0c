"""Delivery end to end over loopback: events in, signed notifications out, lifecycle and history.

Every delivery is checked with the `standardwebhooks` package, as a partner would check it.
The worker runs in drain mode, so no test sleeps waiting for a poll.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway import matching
from gateway.delivery import Worker
from gateway.models import Due, NotificationState, WebhookStatus, utcnow
from tests.factories import set_expiration
from tests.gateway_server import RunningGateway, gateway_settings, run_gateway
from tests.partner import INVOICES, drain_until, invoice_update, subscribe
from tests.receiver import Answer, Receiver


@pytest.fixture
def gateway(gateway_on_each_store: RunningGateway) -> RunningGateway:
    """The gateway of conftest, once on SQLite and once on PostgreSQL (the same tests)."""
    return gateway_on_each_store


@pytest.mark.parametrize(
    ("method", "content"),
    [
        ("GET", "Id"),
        ("POST", "Full"),
        ("POST", "Id"),
        ("PATCH", "Full"),
        ("PATCH", "Id"),
        ("PUT", "Full"),
        ("PUT", "Id"),
    ],
)
async def test_each_method_and_shape_arrives_signed(
    gateway: RunningGateway, receiver: Receiver, method: str, content: str
) -> None:
    partner = await subscribe(gateway, receiver, method=method, content=content)
    accepted = await partner.publish(invoice_update())
    await gateway.worker().drain()
    [seen] = receiver.notifications("/hook")
    assert seen.method == method
    data = partner.verify(seen)
    assert data["eventId"] == accepted["eventIds"][0]
    assert data["webhookId"] == str(partner.id)
    assert data["tableKey"] == "Invoice" and data["eventType"] == "U"
    assert str(data["sequence"]) == "1"
    if content == "Full":
        assert data["records"] == INVOICES
    elif method == "GET":
        assert data["ids"] == "1,2,3" and seen.body == b""
    else:
        assert data["ids"] == ["1", "2", "3"]


async def test_rule_filters_select_records(gateway: RunningGateway, receiver: Receiver) -> None:
    partner = await subscribe(gateway, receiver, rule_filter="total gt 100 and total lt 800")
    await partner.publish(invoice_update(), invoice_update([{"id": "9", "total": 1}]))
    await gateway.worker().drain()
    [seen] = receiver.notifications("/hook")
    assert partner.verify(seen)["records"] == [INVOICES[1]]


async def test_sequence_numbers_increase_and_webhook_id_is_stable_across_retries(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver, retry_count=5)
    receiver.plan("/hook", Answer(status=500), Answer())
    await partner.publish(invoice_update(), invoice_update())
    worker = gateway.worker()
    await drain_until(worker, lambda: len(receiver.notifications("/hook")) >= 3)
    seen = receiver.notifications("/hook")
    ids = [s.headers["webhook-id"] for s in seen]
    assert len(set(ids)) == 2 and ids[0] in ids[1:], "a retry reuses its webhook-id"
    assert sorted({partner.verify(s)["sequence"] for s in seen}) == [1, 2]


@pytest.mark.parametrize("retry_count", [0, 2, 5])
async def test_webhook_errors_exactly_after_retry_count_failures(
    gateway: RunningGateway, receiver: Receiver, retry_count: int
) -> None:
    partner = await subscribe(gateway, receiver, retry_count=retry_count)
    receiver.plan("/hook", Answer(status=500))
    await partner.publish(invoice_update())
    worker = gateway.worker()

    async def errored() -> bool:
        return (await partner.stored()).status_code is WebhookStatus.ERRORED

    await drain_until(worker, errored)
    assert len(receiver.notifications("/hook")) == retry_count + 1
    hook = await partner.stored()
    assert hook.status_message == (
        f"{retry_count + 1} consecutive failed deliveries; last: HTTP 500"
    )
    [row] = (await partner.history())["records"]
    assert (row["isSuccessful"], row["responseStatusCode"]) == (False, "500")
    # Errored webhooks are sent nothing more.
    await partner.publish(invoice_update())
    await worker.drain()
    assert len(receiver.notifications("/hook")) == retry_count + 1


@pytest.mark.parametrize("retry_count", [2, 5])
async def test_a_receiver_that_recovers_in_time_keeps_it_active(
    gateway: RunningGateway, receiver: Receiver, retry_count: int
) -> None:
    partner = await subscribe(gateway, receiver, retry_count=retry_count)
    receiver.plan("/hook", *[Answer(status=503)] * retry_count, Answer())
    await partner.publish(invoice_update())
    await drain_until(gateway.worker(), lambda: len(receiver.notifications("/hook")) > retry_count)
    hook = await partner.stored()
    assert (hook.status_code, hook.failure_count) == (WebhookStatus.ACTIVE, 0)
    [row] = (await partner.history())["records"]
    assert row["isSuccessful"] is True and row["failureCount"] == retry_count


async def test_gone_makes_the_webhook_inactive(gateway: RunningGateway, receiver: Receiver) -> None:
    partner = await subscribe(gateway, receiver)
    receiver.plan("/hook", Answer(status=410))
    await partner.publish(invoice_update())
    await gateway.worker().drain()
    hook = await partner.stored()
    assert hook.status_code is WebhookStatus.INACTIVE
    assert "410" in hook.status_message


async def test_retry_after_is_honoured(gateway: RunningGateway, receiver: Receiver) -> None:
    partner = await subscribe(gateway, receiver, retry_count=5)
    receiver.plan("/hook", Answer(status=429, headers={"retry-after": "120"}))
    await partner.publish(invoice_update())
    await gateway.worker().drain()
    [row] = (
        await gateway.ctx.store.query_history(UUID(partner.hook["groupKey"]), partner.id, _all())
    ).records
    assert row.state is NotificationState.PENDING
    wait = (row.next_attempt_at - row.timestamp).total_seconds()
    assert 119 <= wait <= 121, "the retry waits as long as Retry-After asked, not 0.01 s"


def _all() -> Any:
    from gateway.store.base import Query

    return Query()


async def test_parked_notifications_survive_errored_and_arrive_after_reactivation(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver, retry_count=0)
    receiver.plan("/hook", Answer(status=500))
    await partner.publish(invoice_update([{"id": "a"}]))
    worker = gateway.worker()
    await worker.drain()
    assert (await partner.stored()).status_code is WebhookStatus.ERRORED
    await partner.publish(invoice_update([{"id": "b"}]), invoice_update([{"id": "c"}]))
    await worker.drain()
    parked = await partner.history(filter="isSuccessful eq false")
    assert parked["totalCount"] == 3
    receiver.plan("/hook", Answer())
    assert (await partner.patch(statusCode="Active")).status_code == 200
    await worker.drain()
    arrived = [partner.verify(s) for s in receiver.notifications("/hook")[1:]]
    # Released notifications are sent side by side, so they may land in any order.
    assert sorted(a["records"][0]["id"] for a in arrived) == ["a", "b", "c"]
    assert (await partner.history(filter="isSuccessful eq true"))["totalCount"] == 3


async def test_an_expired_webhook_receives_nothing_and_keeps_its_notifications(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver)
    hook = await partner.stored()
    past = utcnow() - timedelta(seconds=1)
    await set_expiration(gateway.ctx.store, hook, past)
    await partner.publish(invoice_update())
    await gateway.worker().drain()
    assert receiver.notifications("/hook") == []
    history = await partner.history()
    assert history["totalCount"] == 1 and history["records"][0]["requestSent"] is False


async def test_old_secret_still_verifies_during_the_grace_period(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver)
    old = partner.hook["clientSecret"]
    async with gateway.client(partner.key) as api:
        new = (await api.patch(f"/api/v1/Webhooks/{partner.id}/regenerate-client-secret")).json()
    await partner.publish(invoice_update())
    await gateway.worker().drain()  # a new worker: it reads the webhook as it is now
    [seen] = receiver.notifications("/hook")
    assert len(seen.headers["webhook-signature"].split(" ")) == 2
    partner.verify(seen, secret=old)
    partner.verify(seen, secret=new["clientSecret"])


async def test_history_filters_and_includes_return_what_the_receiver_saw(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver)
    receiver.plan("/hook", Answer(status=500), Answer(body="thanks"))
    await partner.publish(invoice_update())
    await drain_until(gateway.worker(), lambda: len(receiver.notifications("/hook")) >= 2)
    since = (utcnow() - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    page = await partner.history(
        filter=f"isSuccessful eq true and timestamp gt datetime'{since}'",
        include="Records,RequestMessage,ResponseMessage",
    )
    [row] = page["records"]
    assert row["eventType"] == "Invoice.U" and row["responseStatusCode"] == "200"
    assert orjson.loads(row["records"]) == INVOICES
    assert row["responseMessage"].endswith("thanks")
    sent = receiver.notifications("/hook")[-1]
    assert sent.body.decode() in row["requestMessage"]
    assert row["webhookHistoryId"] == sent.headers["webhook-id"]
    selected = await partner.history(select="webhookHistoryId,isSuccessful")
    assert set(selected["records"][0]) == {"webhookHistoryId", "isSuccessful"}


async def test_retry_queues_a_failed_notification_at_once(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver, retry_count=5)
    receiver.plan("/hook", Answer(status=429, headers={"retry-after": "3600"}), Answer())
    await partner.publish(invoice_update())
    worker = gateway.worker()
    await worker.drain()  # one failure; its retry is an hour away
    [row] = (await partner.history())["records"]
    assert (row["isSuccessful"], row["responseStatusCode"]) == (False, "429")
    async with gateway.client(partner.key) as api:
        path = f"/api/v1/Webhooks/{partner.id}/history/{row['webhookHistoryId']}/retry"
        answer = await api.get(path)
    assert answer.json() == {"webhookHistoryId": row["webhookHistoryId"], "status": "queued"}
    await worker.drain()
    assert len(receiver.notifications("/hook")) == 2
    assert (await partner.history())["records"][0]["isSuccessful"] is True


async def test_a_hand_retry_of_a_webhook_that_is_not_active_is_refused_and_changes_nothing(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """Issue 17 §3: it used to answer 200 queued, send nothing, and overwrite the recorded
    attempt with "webhook is not Active"."""
    partner = await subscribe(gateway, receiver, retry_count=0)
    receiver.plan("/hook", Answer(status=500, body="database down"))
    await partner.publish(invoice_update())
    worker = gateway.worker()
    await worker.drain()
    assert (await partner.stored()).status_code is WebhookStatus.ERRORED
    before = await partner.history(include="RequestMessage,ResponseMessage,Attempts")
    [row] = before["records"]
    async with gateway.client(partner.key) as api:
        path = f"/api/v1/Webhooks/{partner.id}/history/{row['webhookHistoryId']}/retry"
        answer = await api.get(path)
    assert answer.status_code == 409
    assert answer.headers["content-type"] == "application/problem+json"
    detail = answer.json()["detail"]
    assert "is Errored (1 consecutive failed deliveries; last: HTTP 500)" in detail
    assert "PATCH statusCode=Active" in detail
    await worker.drain()
    assert len(receiver.notifications("/hook")) == 1
    assert await partner.history(include="RequestMessage,ResponseMessage,Attempts") == before
    assert row["responseMessage"].endswith("database down")


async def test_test_send_reports_what_the_receiver_said(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver)
    receiver.plan("/hook", Answer(status=202, body="accepted by partner"))
    async with gateway.client(partner.key) as api:
        result = (await api.post(f"/api/v1/Webhooks/{partner.id}/test")).json()
    assert (result["isSuccessful"], result["responseStatusCode"]) == (True, "202")
    assert result["processResultMessage"] == "HTTP 202"
    assert result["body"] == "accepted by partner" and result["latencyMs"] >= 0
    [seen] = receiver.notifications("/hook")
    assert partner.verify(seen)["tableKey"] == "Test"


async def test_a_test_send_is_kept_in_history_under_the_id_it_answers(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver)
    receiver.plan("/hook", Answer(status=202, body="accepted by partner"))
    async with gateway.client(partner.key) as api:
        result = (await api.post(f"/api/v1/Webhooks/{partner.id}/test")).json()
    history_id = result["webhookHistoryId"]
    [row] = (await partner.history(include="ResponseMessage"))["records"]
    assert row["webhookHistoryId"] == history_id and row["isTest"] is True
    assert row["eventType"] == "Test.U" and row["failureCount"] == 0
    same = ("isSuccessful", "responseStatusCode", "processResultMessage")
    assert {k: row[k] for k in same} == {k: result[k] for k in same}
    assert row["responseMessage"] == "HTTP 202\n\naccepted by partner"
    tests = await partner.history(filter="isTest eq true")
    assert [r["webhookHistoryId"] for r in tests["records"]] == [history_id]
    assert (await partner.history(filter="isTest eq false"))["totalCount"] == 0
    # The partner's numbered notifications go on from 1: a test send takes no number.
    receiver.plan("/hook")
    await partner.publish(invoice_update())
    await gateway.worker().drain()
    assert partner.verify(receiver.notifications("/hook")[-1])["sequence"] == 1
    [real] = (await partner.history(filter="isTest eq false"))["records"]
    assert real["isTest"] is False and real["isSuccessful"] is True


async def test_failed_test_sends_never_count_against_the_lifecycle(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    # Three failed test sends would trip both rules, retryCount 1 and a window of 2 failures,
    # if they counted; then one real failure trips neither.
    window = {"count": 2, "seconds": 3600}
    partner = await subscribe(gateway, receiver, retry_count=1, failureWindow=window)
    receiver.plan("/hook", Answer(status=500), Answer(status=410), Answer(status=500))
    async with gateway.client(partner.key) as api:
        path = f"/api/v1/Webhooks/{partner.id}/test"
        results = [(await api.post(path)).json() for _ in range(3)]
        assert [r["responseStatusCode"] for r in results] == ["500", "410", "500"]
        assert not any(r["isSuccessful"] for r in results)
        stored = await partner.stored()
        assert (stored.status_code, stored.failure_count) == (WebhookStatus.ACTIVE, 0)
        # A failed test send is not retried by hand: it would then count as a delivery.
        retried = await api.get(
            f"/api/v1/Webhooks/{partner.id}/history/{results[0]['webhookHistoryId']}/retry"
        )
        assert retried.status_code == 400, retried.text
        assert "is a test send" in retried.json()["detail"]
    receiver.plan("/hook", Answer(status=500), Answer())
    await partner.publish(invoice_update())
    await drain_until(gateway.worker(), lambda: len(receiver.notifications("/hook")) >= 5)
    stored = await partner.stored()
    assert stored.status_code is WebhookStatus.ACTIVE, stored.status_message
    [real] = (await partner.history(filter="isTest eq false"))["records"]
    assert (real["isSuccessful"], real["failureCount"]) == (True, 1)
    tests = (await partner.history(filter="isTest eq true", include="Attempts"))["records"]
    assert len(tests) == 3 and all(r["attempts"] == [] for r in tests)


async def test_moving_an_errored_webhook_to_a_callback_that_answers_reactivates_it(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """What a partner does about an Errored webhook is fix its URL: once the new callback
    passes its handshake the webhook is Active again, and what was parked goes there."""
    partner = await subscribe(gateway, receiver, retry_count=0)
    receiver.plan("/hook", Answer(status=500))
    await partner.publish(invoice_update())
    await gateway.worker().drain()
    assert (await partner.stored()).status_code is WebhookStatus.ERRORED
    moved = await partner.patch(callbackUrl=receiver.plan("/fixed"))
    assert moved.status_code == 200, moved.text
    assert (moved.json()["statusCode"], moved.json()["statusMessage"]) == ("Active", None)
    assert (await partner.stored()).failure_count == 0
    await gateway.worker().drain()
    [arrived] = receiver.notifications("/fixed")
    assert partner.verify(arrived)["records"] == INVOICES
    # A pause is the owner's choice: moving a paused webhook leaves it paused.
    assert (await partner.patch(statusCode="Inactive")).status_code == 200
    again = await partner.patch(callbackUrl=receiver.plan("/elsewhere"))
    assert (again.json()["statusCode"], again.json()["statusMessage"]) == (
        "Inactive",
        "paused by owner",
    )


async def test_metrics_count_attempts_and_queue(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    # The counters are the process's and their series exist from import on: compare values.
    before = await _scrape(gateway)
    partner = await subscribe(gateway, receiver)
    receiver.plan("/hook", Answer(status=500), Answer())
    await partner.publish(invoice_update())
    await drain_until(gateway.worker(), lambda: len(receiver.notifications("/hook")) >= 2)
    after = await _scrape(gateway)
    for name, labels, grew in [
        ("gateway_delivery_attempts_total", {"outcome": "success"}, 1),
        ("gateway_delivery_attempts_total", {"outcome": "failure"}, 1),
        ("gateway_handshakes_total", {"outcome": "passed"}, 1),
        ("gateway_handshakes_total", {"outcome": "failed"}, 0),
    ]:
        key = (name, tuple(sorted(labels.items())))
        assert after.get(key, 0.0) - before.get(key, 0.0) == grew, key
    assert after["gateway_notifications", (("state", "succeeded"),)] == 1
    assert after["gateway_notifications", (("state", "pending"),)] == 0
    assert after["gateway_notifications", (("state", "waiting"),)] == 0  # a Strict queue's
    assert after["gateway_pending_overdue_seconds", ()] == 0  # nothing is due any more


async def _scrape(gateway: RunningGateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by name and labels."""
    async with gateway.client() as api:
        text = (await api.get("/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_a_claim_whose_lease_ran_low_is_left_for_a_later_claim(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """Claimed notifications can wait behind a slow webhook's cap. One whose lease could end
    during its send (when another worker may claim it) is not sent, but taken up by a later
    claim once the lease is over, and sent exactly once."""
    partner = await subscribe(gateway, receiver)
    await partner.publish(*[invoice_update() for _ in range(6)])
    receiver.plan("/hook", Answer(delay=0.2))
    # Each send takes 0.2 s; a claim may be sent while 0.6 s of its 1 s lease is left.
    hurried = dataclasses.replace(
        gateway.ctx.settings, delivery_timeout=0.3, lease_seconds=1.0, per_webhook_concurrency=1
    )
    await Worker(hurried, gateway.ctx.store, gateway.ctx.outbound).drain()
    sent = len(receiver.notifications("/hook"))
    assert 1 <= sent < 6
    left = (await partner.history(filter="isSuccessful eq false"))["records"]
    assert len(left) == 6 - sent
    await asyncio.sleep(1.0)  # the length of the lease: until then nobody may claim them
    await gateway.worker().drain()
    ids = [seen.headers["webhook-id"] for seen in receiver.notifications("/hook")]
    assert len(ids) == 6 and len(set(ids)) == 6


async def test_a_slow_webhook_gets_at_most_its_cap_in_flight_and_others_go_on(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """A partner that answers slowly holds no more than `per_webhook_concurrency` requests open,
    and the worker's other partners are delivered meanwhile."""
    slow = await subscribe(gateway, receiver, path="/slow")
    await subscribe(gateway, receiver, path="/fast", key=slow.key)
    receiver.plan("/slow", Answer(delay=0.3))
    capped = dataclasses.replace(gateway.ctx.settings, per_webhook_concurrency=3)
    worker = Worker(capped, gateway.ctx.store, gateway.ctx.outbound)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await slow.publish(*[invoice_update() for _ in range(12)])
        await receiver.wait_for(12, "/fast", timeout=2.0)
        # Twelve to /fast within the time the slow one answers at most six of its own.
        assert len(receiver.notifications("/slow")) <= 6
        await receiver.wait_for(12, "/slow", timeout=5.0)
    finally:
        stop.set()
        await running
    assert receiver.peak_in_flight["/slow"] == 3
    assert receiver.peak_in_flight["/fast"] <= 3


async def test_a_claim_that_found_only_saturated_work_is_not_repeated_until_new_work(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """With every due notification belonging to webhooks at their cap, a claim excluding them
    finds nothing (and reads past all their rows to learn it). The worker asks once, not after
    every batch, until a publish announces new work."""
    partner = await subscribe(gateway, receiver, path="/slow")
    other_key = (await gateway.add_key("other-group"))[0]
    other = await subscribe(gateway, receiver, path="/other", key=other_key)
    receiver.plan("/slow", Answer(delay=0.1))
    await partner.publish(*[invoice_update() for _ in range(20)])
    settings = dataclasses.replace(
        gateway.ctx.settings, per_webhook_concurrency=1, claim_batch_size=4, poll_interval=30.0
    )
    worker = Worker(settings, gateway.ctx.store, gateway.ctx.outbound)
    claims: list[tuple[int, int]] = []  # (webhooks excluded, notifications claimed)
    claim_due = gateway.ctx.store.claim_due

    async def counted(*args: Any, **kwargs: Any) -> list[Due]:
        batch = await claim_due(*args, **kwargs)
        claims.append((len(kwargs.get("exclude_webhooks", ())), len(batch)))
        return batch

    worker.store.claim_due = counted  # type: ignore[method-assign]
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await receiver.wait_for(4, "/slow", timeout=10.0)
        assert [c for c in claims if c == (1, 0)], claims  # the first one has been made
        # New work for another webhook is claimed at once, not at the next poll.
        await other.publish(invoice_update())
        worker.wake()  # what the API does for the worker of its own process
        await receiver.wait_for(1, "/other", timeout=1.5)
        assert len(receiver.notifications("/slow")) < 20
        await receiver.wait_for(20, "/slow", timeout=10.0)
    finally:
        stop.set()
        await running
    fruitless = [claimed for excluded, claimed in claims if excluded and not claimed]
    assert len(fruitless) <= 2, claims  # once, and once more after the publish
    assert sum(claimed for _, claimed in claims) == 21


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def serving(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """A gateway whose own worker runs (as under `gateway serve`), taking 2 at a time, one send
    of a group at a time: a group holds 3 at most there."""
    settings = gateway_settings(
        tmp_path, run_worker=True, claim_batch_size=2, per_group_concurrency=1, poll_interval=30.0
    )
    if request.param == "postgres":
        settings = dataclasses.replace(
            settings, database_url=request.getfixturevalue("postgres_url")
        )
    async with run_gateway(settings) as running:
        yield running


async def test_a_webhook_deleted_while_a_publish_matches_is_left_out_of_it(
    serving: RunningGateway, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Matching reads the rules before the publish's transaction: a webhook deleted in between
    gets nothing (its notifications go with it, as after the publish), and the publish is
    accepted for the others, none handed to the worker for the deleted one."""
    key, _ = await serving.add_key("acme")
    staying = await subscribe(serving, receiver, key=key, path="/staying")
    leaving = await subscribe(serving, receiver, key=key, path="/leaving")
    matches = matching.matches

    async def then_deleted(store: Any, events: Any) -> Any:
        found = await matches(store, events)
        assert await store.delete_webhook(UUID(leaving.hook["groupKey"]), leaving.id)
        return found

    monkeypatch.setattr(matching, "matches", then_deleted)
    accepted = await staying.publish(invoice_update())
    assert accepted["notificationCount"] == 1
    await receiver.wait_for(1, "/staying", timeout=5.0)
    await asyncio.sleep(0.1)  # a send to the deleted webhook would have arrived by now
    assert receiver.notifications("/leaving") == []
    page = await staying.history()
    assert page["totalCount"] == 1


async def test_a_publish_hands_what_its_worker_has_room_for_straight_to_it(
    serving: RunningGateway, receiver: Receiver
) -> None:
    """New notifications go to the worker of the publishing process without a claim, as many
    as it has room for (its group's holding limit); the rest wait in the store for its
    claims. Each is sent once, numbered by the store, and recorded."""
    partner = await subscribe(serving, receiver)
    claimed: list[UUID] = []
    claim_due = serving.ctx.store.claim_due

    async def counted(*args: Any, **kwargs: Any) -> list[Due]:
        batch = await claim_due(*args, **kwargs)
        claimed.extend(n.notification_id for n in batch)
        return batch

    serving.ctx.store.claim_due = counted  # type: ignore[method-assign]
    await partner.publish(*[invoice_update([{"id": str(i)}]) for i in range(5)])
    seen = await receiver.wait_for(5, "/hook", timeout=5.0)
    bodies = [partner.verify(s) for s in seen]
    assert sorted(b["sequence"] for b in bodies) == [1, 2, 3, 4, 5]
    assert len({s.headers["webhook-id"] for s in seen}) == 5
    assert len(claimed) == 2  # three were handed over at once

    async def all_recorded() -> bool:
        page = await partner.history(filter="isSuccessful eq true")
        return bool(page["totalCount"] == 5)

    async with asyncio.timeout(5.0):
        while not await all_recorded():
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # a duplicate send would have arrived by now
    assert len(receiver.notifications("/hook")) == 5
