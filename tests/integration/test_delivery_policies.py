"""A webhook's successPolicy and retryPolicy end to end (issue 19), on SQLite and PostgreSQL:
real deliveries to a loopback receiver answering 201, 400, 404, 429 or 500 under each pair of
policies, then what the history and the webhook's status say; failures that are not retried
counting toward Errored; a hand retry of one; test sends and handshakes; and the API taking,
refusing and filtering the two properties. The classification table: tests/unit."""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.models import NotificationState, RetryScope, SuccessPolicy, WebhookStatus
from gateway.store import postgres, sqlite
from gateway.store.base import Query
from tests.factories import make_webhook
from tests.gateway_server import RunningGateway
from tests.partner import Partner, drain_until, invoice_update, subscribe
from tests.receiver import Answer, Receiver

NOT_RETRIED = "failed for good, not retried (retryPolicy ServerErrorsOnly)"
POLICIES = [
    ("Any2xx", "AllFailures"),
    ("Any2xx", "ServerErrorsOnly"),
    ("Only200", "AllFailures"),
    ("Only200", "ServerErrorsOnly"),
]
STATUSES = [201, 400, 404, 429, 500]


@pytest.fixture
def gateway(gateway_on_each_store: RunningGateway) -> RunningGateway:
    """The gateway of conftest, once on SQLite and once on PostgreSQL (the same tests)."""
    return gateway_on_each_store


async def subscribed(
    gateway: RunningGateway, receiver: Receiver, success: str, retry: str, retry_count: int = 2
) -> Partner:
    """A partner whose webhook was given these policies by a PATCH after its create."""
    partner = await subscribe(gateway, receiver, retry_count=retry_count)
    answer = await partner.patch(successPolicy=success, retryPolicy=retry)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["successPolicy"], answer.json()["retryPolicy"]) == (success, retry)
    return partner


async def shown(gateway: RunningGateway, partner: Partner) -> dict[str, Any]:
    """The webhook as its owner reads it through the API."""
    async with gateway.client(partner.key) as api:
        answer = await api.get(f"/api/v1/Webhooks/{partner.id}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def expected(success: str, retry: str, status: int) -> str:
    """What an answer of `status` comes to, as a partner of these policies reads the README."""
    if status == 201 and success == "Any2xx":
        return "delivered"
    if status in (429, 500) or retry == "AllFailures":
        return "retried"
    return "failed for good"


async def stored_state(gateway: RunningGateway, partner: Partner) -> NotificationState:
    group = (await partner.stored()).group_key
    [row] = (await gateway.ctx.store.query_history(group, partner.id, Query())).records
    return row.state


@pytest.mark.parametrize(("success", "retry"), POLICIES)
@pytest.mark.parametrize("status", STATUSES)
async def test_each_answer_under_each_pair_of_policies(
    gateway: RunningGateway, receiver: Receiver, success: str, retry: str, status: int
) -> None:
    partner = await subscribed(gateway, receiver, success, retry, retry_count=2)
    receiver.plan("/hook", Answer(status=status, body="partner says no"))
    await partner.publish(invoice_update())
    worker = gateway.worker()
    outcome = expected(success, retry, status)
    if outcome == "retried":

        async def errored() -> bool:
            return (await partner.stored()).status_code is WebhookStatus.ERRORED

        await drain_until(worker, errored)
    else:
        await worker.drain()
    [row] = (await partner.history(include="Attempts"))["records"]
    hook = await shown(gateway, partner)
    sent = len(receiver.notifications("/hook"))
    assert row["requestSent"] is True and row["responseStatusCode"] == str(status)
    if outcome == "delivered":
        assert (sent, row["isSuccessful"], row["processResultMessage"]) == (1, True, "HTTP 201")
        assert (hook["statusCode"], (await partner.stored()).failure_count) == ("Active", 0)
    elif outcome == "retried":
        # retryCount 2: the third consecutive failure makes it Errored.
        assert (sent, row["isSuccessful"], row["failureCount"]) == (3, False, 3)
        assert row["processResultMessage"] == f"HTTP {status}"
        assert hook["statusCode"] == "Errored"
        assert hook["statusMessage"] == f"3 consecutive failed deliveries; last: HTTP {status}"
    else:
        assert (sent, row["isSuccessful"], row["failureCount"]) == (1, False, 1)
        assert row["processResultMessage"] == f"HTTP {status}: {NOT_RETRIED}"
        [attempt] = row["attempts"]
        assert (attempt["responseStatusCode"], attempt["isSuccessful"]) == (str(status), False)
        assert attempt["responseMessage"].endswith("partner says no")
        # Counted for the lifecycle, within retryCount: the webhook stays Active.
        assert (hook["statusCode"], (await partner.stored()).failure_count) == ("Active", 1)
        # Failed for good: never claimed again, whatever the retry schedule says.
        assert await stored_state(gateway, partner) is NotificationState.FAILED
        await worker.drain()
        assert len(receiver.notifications("/hook")) == 1


async def test_failures_that_are_not_retried_count_toward_errored(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribed(gateway, receiver, "Any2xx", "ServerErrorsOnly", retry_count=1)
    receiver.plan("/hook", Answer(status=404))
    await partner.publish(invoice_update([{"id": "a"}]), invoice_update([{"id": "b"}]))
    await gateway.worker().drain()
    assert len(receiver.notifications("/hook")) == 2
    hook = await shown(gateway, partner)
    assert hook["statusCode"] == "Errored"
    assert hook["statusMessage"] == "2 consecutive failed deliveries; last: HTTP 404"
    rows = (await partner.history())["records"]
    assert [r["processResultMessage"] for r in rows] == [f"HTTP 404: {NOT_RETRIED}"] * 2
    # Failed for good, not parked: reactivating the webhook sends neither again.
    receiver.plan("/hook", Answer())
    assert (await partner.patch(statusCode="Active")).status_code == 200
    await gateway.worker().drain()
    assert len(receiver.notifications("/hook")) == 2


async def test_a_hand_retry_sends_a_notification_that_failed_for_good(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribed(gateway, receiver, "Any2xx", "ServerErrorsOnly", retry_count=5)
    receiver.plan("/hook", Answer(status=422, body="bad invoice"), Answer(body="fixed"))
    await partner.publish(invoice_update())
    worker = gateway.worker()
    await worker.drain()
    [row] = (await partner.history())["records"]
    assert row["processResultMessage"] == f"HTTP 422: {NOT_RETRIED}"
    async with gateway.client(partner.key) as api:
        path = f"/api/v1/Webhooks/{partner.id}/history/{row['webhookHistoryId']}/retry"
        answer = await api.get(path)
    assert answer.json() == {"webhookHistoryId": row["webhookHistoryId"], "status": "queued"}
    await worker.drain()
    first, second = receiver.notifications("/hook")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == row["webhookHistoryId"]
    [row] = (await partner.history(include="Attempts"))["records"]
    assert (row["isSuccessful"], row["failureCount"], row["processResultMessage"]) == (
        True,
        1,
        "HTTP 200",
    )
    assert [a["responseStatusCode"] for a in row["attempts"]] == ["422", "200"]
    assert (await partner.stored()).failure_count == 0


@pytest.mark.parametrize(("success", "delivered"), [("Any2xx", True), ("Only200", False)])
async def test_a_test_send_is_judged_by_the_success_policy(
    gateway: RunningGateway, receiver: Receiver, success: str, delivered: bool
) -> None:
    partner = await subscribed(gateway, receiver, success, "AllFailures")
    receiver.plan("/hook", Answer(status=201, body="created"))
    async with gateway.client(partner.key) as api:
        result = (await api.post(f"/api/v1/Webhooks/{partner.id}/test")).json()
    assert (result["isSuccessful"], result["responseStatusCode"], result["body"]) == (
        delivered,
        "201",
        "created",
    )


async def test_the_handshake_keeps_its_own_rule_under_only_200(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """The handshake proves control of the callback by the code it echoes: any 2xx, as for
    every webhook; the success policy is about deliveries."""
    key = (await gateway.add_key("acme"))[0]
    body = {
        "name": "n",
        "requestContentType": "Full",
        "callbackHttpMethod": "POST",
        "callbackUrl": receiver.plan("/created", Answer(status=201)),
        "successPolicy": "Only200",
        "retryPolicy": "ServerErrorsOnly",
    }
    async with gateway.client(key) as api:
        answer = await api.post("/api/v1/Webhooks", json=[body])
    assert answer.status_code == 200, answer.text
    [hook] = answer.json()
    assert (hook["statusCode"], hook["successPolicy"], hook["retryPolicy"]) == (
        "Active",
        "Only200",
        "ServerErrorsOnly",
    )


async def test_the_api_takes_the_policies_in_any_case_and_defaults_them(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key = (await gateway.add_key("acme"))[0]
    url = receiver.plan("/hook")
    base = {"name": "n", "requestContentType": "Full", "callbackHttpMethod": "POST"}
    bodies = [
        {**base, "callbackUrl": url},
        {**base, "callbackUrl": url, "successPolicy": "only200", "retryPolicy": "SERVERERRORSONLY"},
    ]
    async with gateway.client(key) as api:
        created = await api.post("/api/v1/Webhooks", json=bodies)
        assert created.status_code == 200, created.text
        plain, strict = created.json()
        assert (plain["successPolicy"], plain["retryPolicy"]) == ("Any2xx", "AllFailures")
        assert (strict["successPolicy"], strict["retryPolicy"]) == ("Only200", "ServerErrorsOnly")
        found = await api.get(
            "/api/v1/Webhooks/query", params={"filter": "retryPolicy eq 'ServerErrorsOnly'"}
        )
    assert [h["webhookId"] for h in found.json()["records"]] == [strict["webhookId"]]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"successPolicy": "Only201"}, "successPolicy"),
        ({"successPolicy": None}, "successPolicy"),
        ({"retryPolicy": "Never"}, "retryPolicy"),
        ({"retryPolicy": None}, "retryPolicy"),
        ({"retryPolicy": 5}, "retryPolicy"),
    ],
)
async def test_a_bad_policy_is_a_400_naming_it_that_changes_nothing(
    gateway: RunningGateway, receiver: Receiver, change: dict[str, Any], field: str
) -> None:
    partner = await subscribed(gateway, receiver, "Only200", "ServerErrorsOnly")
    before = await partner.stored()
    answer = await partner.patch(name="renamed", **change)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert field in answer.json()["errors"]
    assert await partner.stored() == before


# -- Webhooks stored before the policies existed -------------------------------------------------

UNDO = (
    "ALTER TABLE webhooks DROP COLUMN success_policy; ALTER TABLE webhooks DROP COLUMN retry_policy"
)


ANY_2XX, ONLY_200 = SuccessPolicy.ANY_2XX, SuccessPolicy.ONLY_200
ALL_FAILURES, SERVER_ERRORS_ONLY = RetryScope.ALL_FAILURES, RetryScope.SERVER_ERRORS_ONLY


def _version(migrations: Path) -> int:
    [script] = migrations.glob("*_delivery_policies.sql")
    return int(script.name[:4])


async def test_a_sqlite_webhook_from_before_the_policies_reads_with_the_defaults(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    hook = make_webhook(success_policy=ONLY_200, retry_policy=SERVER_ERRORS_ONLY)
    async with sqlite.SqliteStore(path) as store:
        await store.add_webhooks([hook])
    version = _version(sqlite.MIGRATIONS)
    with contextlib.closing(sqlite3.connect(path)) as db:  # as the file was before them
        db.executescript(f"{UNDO}; DELETE FROM schema_migrations WHERE version = {version};")
    async with sqlite.SqliteStore(path) as store:
        assert store.applied_migrations == [version]
        found = await store.get_webhook(hook.group_key, hook.webhook_id)
    assert found == dataclasses.replace(hook, success_policy=ANY_2XX, retry_policy=ALL_FAILURES)


@pytest.mark.postgres
async def test_a_postgres_webhook_from_before_the_policies_reads_with_the_defaults(
    postgres_url: str,
) -> None:
    hook = make_webhook(success_policy=ONLY_200, retry_policy=SERVER_ERRORS_ONLY)
    async with postgres.PostgresStore(postgres_url) as store:
        await store.add_webhooks([hook])
    version = _version(postgres.MIGRATIONS)
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f"{UNDO}; DELETE FROM schema_migrations WHERE version = {version}")
    finally:
        await conn.close()
    async with postgres.PostgresStore(postgres_url) as store:
        assert store.applied_migrations == [version]
        found = await store.get_webhook(hook.group_key, hook.webhook_id)
    assert found == dataclasses.replace(hook, success_policy=ANY_2XX, retry_policy=ALL_FAILURES)
