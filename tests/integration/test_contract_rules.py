"""The contract's rules, each checked where a partner or an owner would notice it breaking.

Every test here was written against a deliberate break of the rule it names (issue 23) and seen
to fail on it: through the HTTP API, against a real gateway on SQLite and on PostgreSQL, with
a real receiver on loopback. Reads of a stored row (`store.get_notification`) stand in only
for what the API does not show: when a retry is due, and what history keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
from standardwebhooks.webhooks import WebhookVerificationError

from gateway.delivery import Worker
from gateway.models import Notification
from tests.gateway_server import RunningGateway, gateway_settings, run_gateway
from tests.partner import (
    Partner,
    drain_until,
    invoice_update,
    subscribe,
)
from tests.receiver import Answer, Receiver

Launch = Callable[..., contextlib.AbstractAsyncContextManager[RunningGateway]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def launch(request: pytest.FixtureRequest, tmp_path: Path) -> Launch:
    """Starts a gateway with these setting overrides, on SQLite or on PostgreSQL."""
    database = None
    if request.param == "postgres":
        database = request.getfixturevalue("postgres_url")

    @contextlib.asynccontextmanager
    async def started(**overrides: Any) -> AsyncIterator[RunningGateway]:
        if database is not None:
            overrides["database_url"] = database
        async with run_gateway(gateway_settings(tmp_path, **overrides)) as running:
            yield running

    return started


@pytest.fixture
async def gateway(launch: Launch) -> AsyncIterator[RunningGateway]:
    """A gateway with the test settings of tests.gateway_server."""
    async with launch() as running:
        yield running


def one_at_a_time(gateway: RunningGateway) -> Worker:
    """A worker that claims and sends one notification at a time, so the order of attempts
    is the order of publishing and a failure is settled before the next send is claimed."""
    settings = dataclasses.replace(
        gateway.ctx.settings, claim_batch_size=1, per_webhook_concurrency=1
    )
    return Worker(settings, gateway.ctx.store, gateway.ctx.outbound)


async def stored_row(partner: Partner, history_id: str) -> Notification:
    row = await partner.gateway.ctx.store.get_notification(
        UUID(partner.hook["groupKey"]), partner.id, UUID(history_id)
    )
    assert row is not None
    return row


def handshakes(receiver: Receiver, path: str = "/hook") -> list[str]:
    """The methods of the handshake requests the receiver got at `path`, in order."""
    return [s.method for s in receiver.seen if s.is_handshake and s.path == path]


# -- Signing --------------------------------------------------------------------------------


async def test_the_previous_secret_stops_signing_when_its_grace_period_ends(
    launch: Launch, receiver: Receiver
) -> None:
    async with launch(secret_grace_period=0.0) as gateway:
        partner = await subscribe(gateway, receiver)
        old = partner.hook["clientSecret"]
        async with gateway.client(partner.key) as api:
            answer = await api.patch(f"/api/v1/Webhooks/{partner.id}/regenerate-client-secret")
        new = answer.json()["clientSecret"]
        await partner.publish(invoice_update())
        await gateway.worker().drain()
    [seen] = receiver.notifications("/hook")
    assert len(seen.headers["webhook-signature"].split(" ")) == 1
    partner.verify(seen, secret=new)
    with pytest.raises(WebhookVerificationError):
        partner.verify(seen, secret=old)


# -- Retries --------------------------------------------------------------------------------


async def test_each_retry_waits_its_own_step_of_the_schedule(
    launch: Launch, receiver: Receiver
) -> None:
    """Backoff grows end to end: two short steps let attempts 2 and 3 happen in the test,
    then the third failure must wait the third step (40 s), not the first or the second."""
    async with launch(retry_schedule=(0.01, 0.02, 40.0, 50.0)) as gateway:
        partner = await subscribe(gateway, receiver, retry_count=5)
        receiver.plan("/hook", Answer(status=500))
        await partner.publish(invoice_update())
        worker = gateway.worker()
        await drain_until(worker, lambda: len(receiver.notifications("/hook")) >= 3)
        await worker.drain()  # nothing else is due for 40 s
        assert len(receiver.notifications("/hook")) == 3
        [row] = (await partner.history())["records"]
        assert row["failureCount"] == 3 and row["isSuccessful"] is False
        stored = await stored_row(partner, row["webhookHistoryId"])
    wait = (stored.next_attempt_at - stored.timestamp).total_seconds()
    assert 39.0 <= wait <= 41.0, f"the fourth attempt is due {wait} s after the third"


# -- What goes out ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_notifications_with_a_body_say_it_is_json(
    gateway: RunningGateway, receiver: Receiver, method: str
) -> None:
    partner = await subscribe(gateway, receiver, method=method)
    await partner.publish(invoice_update())
    await gateway.worker().drain()
    [seen] = receiver.notifications("/hook")
    assert seen.headers["content-type"] == "application/json"
    assert orjson.loads(seen.body)["webhookId"] == str(partner.id)


@pytest.mark.parametrize("status", [300, 302, 399])
async def test_a_3xx_answer_is_a_failed_delivery_not_a_success(
    gateway: RunningGateway, receiver: Receiver, status: int
) -> None:
    partner = await subscribe(gateway, receiver, retry_count=0)
    receiver.plan("/hook", Answer(status=status, headers={"location": receiver.url + "/else"}))
    await partner.publish(invoice_update())
    await gateway.worker().drain()
    [row] = (await partner.history())["records"]
    assert (row["isSuccessful"], row["responseStatusCode"]) == (False, str(status))
    async with gateway.client(partner.key) as api:
        hook = (await api.get(f"/api/v1/Webhooks/{partner.id}")).json()
        tested = (await api.post(f"/api/v1/Webhooks/{partner.id}/test")).json()
    assert hook["statusCode"] == "Errored"
    assert hook["statusMessage"].endswith(f"last: HTTP {status}")
    assert (tested["isSuccessful"], tested["responseStatusCode"]) == (False, str(status))
    assert [s.path for s in receiver.seen if not s.is_handshake] == ["/hook", "/hook"]


# -- History --------------------------------------------------------------------------------

LIMIT = 200
MARKER = re.compile(r"…\[truncated (\d+) characters\]")


def cut_at_limit(text: str, full: str) -> None:
    """`text` is `full` cut to LIMIT characters and marked with how many were dropped."""
    head, marker = text[:LIMIT], text[LIMIT:]
    assert head == full[:LIMIT]
    found = MARKER.fullmatch(marker)
    assert found is not None, f"not marked as cut: {marker[:80]!r}"
    assert int(found.group(1)) == len(full) - LIMIT


async def test_history_messages_are_cut_to_the_limit_and_say_so(
    launch: Launch, receiver: Receiver
) -> None:
    async with launch(history_message_limit=LIMIT) as gateway:
        partner = await subscribe(gateway, receiver)
        answer = "thanks " * 100
        receiver.plan("/hook", Answer(body=answer))
        records = [{"id": "1", "note": "n" * 500}]
        await partner.publish(invoice_update(records))
        await gateway.worker().drain()
        [seen] = receiver.notifications("/hook")
        page = await partner.history(include="RequestMessage,ResponseMessage,Records")
        [row] = page["records"]
        stored = await stored_row(partner, row["webhookHistoryId"])
    request = f"POST {partner.hook['callbackUrl']}\n\n{seen.body.decode()}"
    response = f"HTTP 200\n\n{answer}"
    cut_at_limit(row["requestMessage"], request)
    cut_at_limit(row["responseMessage"], response)
    cut_at_limit(row["records"], orjson.dumps(records).decode())
    # What is kept is cut too, not only what is shown.
    assert stored.request_message is not None and stored.response_message is not None
    cut_at_limit(stored.request_message, request)
    cut_at_limit(stored.response_message, response)


async def test_history_messages_within_the_limit_are_kept_whole(
    launch: Launch, receiver: Receiver
) -> None:
    async with launch(history_message_limit=LIMIT) as gateway:
        partner = await subscribe(gateway, receiver)
        receiver.plan("/hook", Answer(body="x" * (LIMIT - len("HTTP 200\n\n"))))
        await partner.publish(invoice_update([{"id": "1"}]))
        await gateway.worker().drain()
        [row] = (await partner.history(include="ResponseMessage"))["records"]
    assert row["responseMessage"] == "HTTP 200\n\n" + "x" * (LIMIT - 10)


async def test_history_is_cut_to_the_limit_in_force_when_it_is_read(
    launch: Launch, receiver: Receiver
) -> None:
    """An operator who lowers history_message_limit sees kept messages cut to the new limit,
    each saying how much of the original is missing."""
    answer = "a long answer " * 100
    async with launch(history_message_limit=5 * LIMIT) as gateway:
        partner = await subscribe(gateway, receiver)
        receiver.plan("/hook", Answer(body=answer))
        await partner.publish(invoice_update([{"id": "1", "note": "n" * 2000}]))
        await gateway.worker().drain()
        [seen] = receiver.notifications("/hook")
    async with launch(history_message_limit=LIMIT) as gateway:
        partner.gateway = gateway
        [row] = (await partner.history(include="RequestMessage,ResponseMessage"))["records"]
    cut_at_limit(
        row["requestMessage"], f"POST {partner.hook['callbackUrl']}\n\n{seen.body.decode()}"
    )
    cut_at_limit(row["responseMessage"], f"HTTP 200\n\n{answer}")


# -- Handshakes on change -----------------------------------------------------------------------


async def test_changing_only_the_method_runs_the_handshake_with_the_new_method(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver)
    assert handshakes(receiver) == ["POST"]
    receiver.plan("/hook", Answer(status=404))
    refused = await partner.patch(callbackHttpMethod="PUT")
    assert refused.status_code == 400, refused.text
    assert "HTTP 404" in refused.json()["detail"]
    assert handshakes(receiver) == ["POST", "PUT"]
    async with gateway.client(partner.key) as api:
        kept = (await api.get(f"/api/v1/Webhooks/{partner.id}")).json()
    assert kept["callbackHttpMethod"] == "POST"

    receiver.plan("/hook", Answer())
    moved = await partner.patch(callbackHttpMethod="PUT")
    assert moved.status_code == 200, moved.text
    assert moved.json()["callbackHttpMethod"] == "PUT"
    assert handshakes(receiver) == ["POST", "PUT", "PUT"]
    await partner.publish(invoice_update())
    await gateway.worker().drain()
    assert [s.method for s in receiver.notifications("/hook")] == ["PUT"]


async def test_a_patch_that_changes_neither_url_nor_method_runs_no_handshake(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver)
    changed = await partner.patch(name="renamed", callbackHttpMethod="POST", retryCount=4)
    assert changed.status_code == 200, changed.text
    assert handshakes(receiver) == ["POST"]


# -- Create and update rules --------------------------------------------------------------------


async def test_a_webhook_created_inactive_stays_inactive_and_receives_nothing(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key = (await gateway.add_key("acme"))[0]
    body = {
        "name": "paused from the start",
        "statusCode": "Inactive",
        "requestContentType": "Full",
        "callbackHttpMethod": "POST",
        "callbackUrl": receiver.plan("/hook"),
    }
    async with gateway.client(key) as api:
        created = await api.post("/api/v1/Webhooks", json=[body])
        assert created.status_code == 200, created.text
        [hook] = created.json()
        assert hook["statusCode"] == "Inactive"
        webhook_id = hook["webhookId"]
        rule = {"webhookId": webhook_id, "tableKey": "Invoice", "eventType": "U"}
        assert (await api.post("/api/v1/WebhookRules", json=[rule])).status_code == 200
        assert (await api.get(f"/api/v1/Webhooks/{webhook_id}")).json()["statusCode"] == "Inactive"
    partner = Partner(gateway, receiver, key, hook, "/hook")
    await partner.publish(invoice_update())
    await gateway.worker().drain()
    assert receiver.notifications("/hook") == []
    [row] = (await partner.history())["records"]
    assert (row["requestSent"], row["isSuccessful"]) == (False, False)
    # Kept, and sent once its owner makes it Active.
    assert (await partner.patch(statusCode="Active")).status_code == 200
    await gateway.worker().drain()
    assert len(receiver.notifications("/hook")) == 1


@pytest.mark.parametrize(
    ("created", "patch", "field"),
    [
        (("POST", "Full"), {"callbackHttpMethod": "GET"}, "requestContentType"),
        (("GET", "Id"), {"requestContentType": "Full"}, "requestContentType"),
        (("POST", "Id"), {"callbackHttpMethod": "GET", "requestContentType": "Full"}, None),
    ],
)
async def test_a_patch_to_get_with_full_content_is_refused_and_changes_nothing(
    gateway: RunningGateway,
    receiver: Receiver,
    created: tuple[str, str],
    patch: dict[str, str],
    field: str | None,
) -> None:
    method, content = created
    partner = await subscribe(gateway, receiver, method=method, content=content)
    refused = await partner.patch(**patch)
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "requestContentType" in refused.json()["errors"]
    assert handshakes(receiver) == [method], "nothing was tried"
    async with partner.gateway.client(partner.key) as api:
        kept = (await api.get(f"/api/v1/Webhooks/{partner.id}")).json()
    assert (kept["callbackHttpMethod"], kept["requestContentType"]) == created


async def test_a_patch_to_get_with_id_content_is_accepted(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver, content="Full")
    moved = await partner.patch(callbackHttpMethod="GET", requestContentType="Id")
    assert moved.status_code == 200, moved.text
    assert handshakes(receiver) == ["POST", "GET"]


async def test_creating_a_get_webhook_with_full_content_is_refused(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key = (await gateway.add_key("acme"))[0]
    body = {
        "name": "n",
        "requestContentType": "Full",
        "callbackHttpMethod": "GET",
        "callbackUrl": receiver.plan("/hook"),
    }
    async with gateway.client(key) as api:
        refused = await api.post("/api/v1/Webhooks", json=[body])
        assert refused.status_code == 400, refused.text
        assert "[0].requestContentType" in refused.json()["errors"]
        assert (await api.get("/api/v1/Webhooks/query")).json()["totalCount"] == 0
    assert receiver.seen == []


# -- Failures, parking and what history says about them -------------------------------------------


async def test_an_ordinary_failure_leaves_the_other_notifications_to_go_out(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """One failed attempt, well within retryCount, must not park (strand) the webhook's other
    notifications: the webhook stays Active, so nothing would ever release them."""
    partner = await subscribe(gateway, receiver, retry_count=5)
    receiver.plan("/hook", Answer(status=500), Answer())
    await partner.publish(*[invoice_update([{"id": str(i)}]) for i in range(3)])
    worker = one_at_a_time(gateway)

    async def delivered() -> bool:
        page = await partner.history(filter="isSuccessful eq true")
        return bool(page["totalCount"] == 3)

    await drain_until(worker, delivered, timeout=10.0)
    ids = [partner.verify(s)["records"][0]["id"] for s in receiver.notifications("/hook")]
    assert ids == ["0", "1", "2", "0"]  # the failed one is retried after the others
    async with gateway.client(partner.key) as api:
        hook = (await api.get(f"/api/v1/Webhooks/{partner.id}")).json()
    assert hook["statusCode"] == "Active"


async def test_a_notification_parked_by_a_pause_is_recorded_as_not_delivered(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver)
    await partner.publish(invoice_update())
    assert (await partner.patch(statusCode="Inactive")).status_code == 200
    await gateway.worker().drain()
    assert receiver.notifications("/hook") == []
    [row] = (await partner.history())["records"]
    assert (row["requestSent"], row["isSuccessful"], row["responseStatusCode"]) == (
        False,
        False,
        None,
    )
    assert row["processResultMessage"], "a parked row says why it was not sent"
    assert (await partner.history(filter="isSuccessful eq true"))["totalCount"] == 0


async def test_the_failure_that_errors_a_webhook_parks_the_rest_as_not_delivered(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver, retry_count=0)
    receiver.plan("/hook", Answer(status=500))
    await partner.publish(*[invoice_update([{"id": str(i)}]) for i in range(3)])
    await one_at_a_time(gateway).drain()
    assert len(receiver.notifications("/hook")) == 1
    rows = (await partner.history())["records"]
    assert len(rows) == 3
    assert all(row["isSuccessful"] is False for row in rows)
    assert sorted(row["requestSent"] for row in rows) == [False, False, True]
    assert (await partner.history(filter="isSuccessful eq true"))["totalCount"] == 0


async def test_history_says_what_the_last_attempt_got(launch: Launch, receiver: Receiver) -> None:
    # The retry comes due a second later: with the usual 10 ms, a slow machine's first drain
    # reached the retry too, and the failure was never seen.
    async with launch(retry_schedule=(1.0,)) as gateway:
        partner = await subscribe(gateway, receiver, retry_count=5)
        receiver.plan("/hook", Answer(status=500), Answer(status=204))
        await partner.publish(invoice_update())
        worker = gateway.worker()
        await worker.drain()
        [failed] = (await partner.history())["records"]
        assert (failed["isSuccessful"], failed["responseStatusCode"]) == (False, "500")
        assert "HTTP 500" in failed["processResultMessage"]
        await drain_until(worker, lambda: len(receiver.notifications("/hook")) >= 2)
        [delivered] = (await partner.history())["records"]
        assert (delivered["isSuccessful"], delivered["responseStatusCode"]) == (True, "204")
        assert "204" in delivered["processResultMessage"]


async def test_gone_unsubscribes_and_keeps_the_rest_until_reactivation(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver, retry_count=5)
    receiver.plan("/hook", Answer(status=410))
    await partner.publish(*[invoice_update([{"id": str(i)}]) for i in range(3)])
    await one_at_a_time(gateway).drain()
    assert len(receiver.notifications("/hook")) == 1
    async with gateway.client(partner.key) as api:
        hook = (await api.get(f"/api/v1/Webhooks/{partner.id}")).json()
    assert hook["statusCode"] == "Inactive" and "410" in hook["statusMessage"]
    rows = (await partner.history())["records"]
    assert [row["isSuccessful"] for row in rows] == [False, False, False]
    assert sorted(row["requestSent"] for row in rows) == [False, False, True]
    [gone] = [row for row in rows if row["requestSent"]]
    assert gone["responseStatusCode"] == "410" and "410" in gone["processResultMessage"]

    receiver.plan("/hook", Answer())
    assert (await partner.patch(statusCode="Active")).status_code == 200
    await gateway.worker().drain()
    ids = [partner.verify(s)["records"][0]["id"] for s in receiver.notifications("/hook")[1:]]
    assert sorted(ids) == ["0", "1", "2"]
    assert (await partner.history(filter="isSuccessful eq true"))["totalCount"] == 3


async def test_failures_in_flight_together_each_count(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """Two notifications fail at the same time: that is two consecutive failures, so with
    retryCount 1 the webhook is Errored after exactly those two requests."""
    partner = await subscribe(gateway, receiver, retry_count=1)
    receiver.plan("/hook", Answer(status=500))
    await partner.publish(invoice_update([{"id": "a"}]), invoice_update([{"id": "b"}]))
    await gateway.worker().drain()
    assert len(receiver.notifications("/hook")) == 2
    async with gateway.client(partner.key) as api:
        hook = (await api.get(f"/api/v1/Webhooks/{partner.id}")).json()
    assert hook["statusCode"] == "Errored"
    assert hook["statusMessage"] == "2 consecutive failed deliveries; last: HTTP 500"


async def test_notifications_waiting_when_the_webhook_expires_are_kept_as_not_delivered(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """Expiry is read, not written: nothing parks these when the date passes, so the worker
    finds them pending and must keep them, recorded as not sent, until a renewal."""
    partner = await subscribe(gateway, receiver)
    soon = datetime.now(UTC) + timedelta(seconds=1)
    assert (await partner.patch(expirationDate=soon.isoformat())).status_code == 200
    await partner.publish(invoice_update())
    async with asyncio.timeout(5):
        while datetime.now(UTC) <= soon:
            await asyncio.sleep(0.05)
    await gateway.worker().drain()
    assert receiver.notifications("/hook") == []
    [row] = (await partner.history())["records"]
    assert (row["requestSent"], row["isSuccessful"]) == (False, False)
    assert row["processResultMessage"], "a parked row says why it was not sent"

    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    renewed = await partner.patch(statusCode="Active", expirationDate=later)
    assert renewed.status_code == 200, renewed.text
    await gateway.worker().drain()
    assert len(receiver.notifications("/hook")) == 1
