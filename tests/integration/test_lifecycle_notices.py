"""Lifecycle notices and re-verification (issue 20), over real HTTP to a real receiver, on
SQLite and on PostgreSQL: a webhook of the same group subscribes to `WebhookLifecycle` with an
ordinary rule and receives each change of another webhook, signed, as one record.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from prometheus_client import REGISTRY

from gateway import lifecycle, management
from gateway.api.webhooks import expire_due
from gateway.app import housekeeping_once
from gateway.lifecycle import GONE_MESSAGE, PAUSED_MESSAGE, expired_message
from gateway.models import NotificationState, WebhookStatus, utcnow
from gateway.store.base import Query
from gateway.wire_values import timestamp
from tests.factories import set_expiration
from tests.gateway_server import RunningGateway
from tests.partner import Partner, invoice_update, subscribe
from tests.receiver import Answer, Receiver

HOUR = 3600.0
NOTICES_TOTAL = "gateway_lifecycle_notices_total"


@pytest.fixture
def gateway(gateway_on_each_store: RunningGateway) -> RunningGateway:
    return gateway_on_each_store


async def watch(
    gateway: RunningGateway,
    receiver: Receiver,
    key: str,
    path: str = "/watch",
    rule_filter: str | None = None,
    retry_count: int = 2,
) -> Partner:
    """A webhook of the key's group with one rule: the group's lifecycle notices."""
    body = {"name": "watcher", "requestContentType": "Full", "callbackHttpMethod": "POST",
            "callbackUrl": receiver.plan(path), "retryCount": retry_count}  # fmt: skip
    async with gateway.client(key) as api:
        created = await api.post("/api/v1/Webhooks", json=[body])
        assert created.status_code == 200, created.text
        hook = created.json()[0]
        rule = {"webhookId": hook["webhookId"], "tableKey": "WebhookLifecycle",
                "eventType": "U", "filter": rule_filter}  # fmt: skip
        answer = await api.post("/api/v1/WebhookRules", json=[rule])
        assert answer.status_code == 200, answer.text
    return Partner(gateway, receiver, key, hook, path)


def heard(watcher: Partner) -> list[dict[str, Any]]:
    """The lifecycle records the watcher received, each checked as a partner checks it."""
    records = []
    for seen in watcher.receiver.notifications(watcher.path):
        body = watcher.verify(seen)
        assert body["tableKey"] == "WebhookLifecycle" and body["eventType"] == "U", body
        [record] = body["records"]
        records.append(record)
    return records


def about(subject: Partner, event: str, status: str, message: str | None) -> dict[str, Any]:
    """The fields of a notice that do not depend on the moment (occurredAt is checked apart)."""
    return {"id": str(subject.id), "event": event, "statusCode": status, "statusMessage": message}


def fixed(record: dict[str, Any]) -> dict[str, Any]:
    """A record without its moment, after checking that it has one (UTC, Z)."""
    occurred = datetime.fromisoformat(record["occurredAt"].replace("Z", "+00:00"))
    assert abs((utcnow() - occurred).total_seconds()) < 60
    return {k: v for k, v in record.items() if k not in ("occurredAt", "expirationDate")}


async def states(partner: Partner) -> list[NotificationState]:
    store = partner.gateway.ctx.store
    group = UUID(partner.hook["groupKey"])
    page = await store.query_history(group, partner.id, Query(page_size=500))
    return [row.state for row in page.records]


async def test_each_change_reaches_a_subscribing_webhook_as_one_record(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """errored, reactivated, disabled (paused, then unsubscribed by a 410) and expired, each
    delivered to the watcher, signed, with the subject's status as the change left it."""
    subject = await subscribe(gateway, receiver, retry_count=0)
    watcher = await watch(gateway, receiver, subject.key)
    worker = gateway.worker()
    receiver.plan("/hook", Answer(status=500))
    await subject.publish(invoice_update())
    await worker.drain()
    errored = (await subject.stored()).status_message
    assert errored.startswith("1 consecutive failed deliveries")
    receiver.plan("/hook", Answer())
    assert (await subject.patch(statusCode="Active")).status_code == 200
    await subject.patch(statusCode="Inactive")
    await subject.patch(statusCode="Active")
    await worker.drain()
    receiver.plan("/hook", Answer(status=410))
    await subject.publish(invoice_update())
    await worker.drain()
    receiver.plan("/hook", Answer())
    await subject.patch(statusCode="Active")
    await worker.drain()
    when = utcnow().replace(microsecond=0) - timedelta(seconds=1)
    await set_expiration(gateway.ctx.store, await subject.stored(), when)
    await expire_due(gateway.ctx)
    await worker.drain()
    records = heard(watcher)
    assert [fixed(r) for r in records] == [
        about(subject, "errored", "Errored", errored),
        about(subject, "reactivated", "Active", None),
        about(subject, "disabled", "Inactive", PAUSED_MESSAGE),
        about(subject, "reactivated", "Active", None),
        about(subject, "disabled", "Inactive", GONE_MESSAGE),
        about(subject, "reactivated", "Active", None),
        about(subject, "expired", "Inactive", expired_message(when)),
    ]
    assert records[-1]["expirationDate"] == timestamp(when)
    assert {r["expirationDate"] for r in records[:-1]} == {None}
    assert await states(subject) == [NotificationState.SUCCEEDED] * 2  # the errored one resent


async def test_a_webhook_never_hears_of_itself_and_failures_end_their_chain(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """Two webhooks, each subscribed to the group's notices, both failing: W's failure is a
    notice to S alone; S failing it is one notice to W, parked there (W is Errored); then
    nothing more, however long the worker runs."""
    w = await subscribe(gateway, receiver, retry_count=0)
    rule = {"webhookId": str(w.id), "tableKey": "WebhookLifecycle", "eventType": "U"}
    async with gateway.client(w.key) as api:  # W hears the group's notices too
        assert (await api.post("/api/v1/WebhookRules", json=[rule])).status_code == 200
    s = await watch(gateway, receiver, w.key, path="/s", retry_count=0)
    receiver.plan("/hook", Answer(status=500))
    receiver.plan("/s", Answer(status=500))
    await w.publish(invoice_update())
    worker = gateway.worker()
    for _ in range(3):
        await worker.drain()
    assert (await w.stored()).status_code is WebhookStatus.ERRORED
    assert (await s.stored()).status_code is WebhookStatus.ERRORED
    [to_s] = receiver.notifications("/s")
    assert s.verify(to_s)["records"][0]["id"] == str(w.id)
    assert len(receiver.notifications("/hook")) == 1  # the invoice; the notice about S waits
    store, group = gateway.ctx.store, UUID(w.hook["groupKey"])
    w_rows = sorted(
        (await store.query_history(group, w.id, Query())).records, key=lambda n: n.created
    )
    assert [(n.table_key, n.state) for n in w_rows] == [
        ("Invoice", NotificationState.PARKED),
        ("WebhookLifecycle", NotificationState.PARKED),
    ]
    assert w_rows[1].records[0]["id"] == str(s.id)
    assert await states(s) == [NotificationState.PARKED]


async def test_a_rule_filter_picks_kinds_and_the_platform_cannot_forge_a_notice(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    subject = await subscribe(gateway, receiver)
    watcher = await watch(gateway, receiver, subject.key, rule_filter="event eq 'reactivated'")
    await subject.patch(statusCode="Inactive")
    await subject.patch(statusCode="Active")
    await gateway.worker().drain()
    assert [r["event"] for r in heard(watcher)] == ["reactivated"]
    forged = {"tableKey": "WebhookLifecycle", "eventType": "U", "records": [{"id": "x"}]}
    async with gateway.client(subject.key) as api:
        answer = await api.post("/api/v1/Events", json=[forged])
    assert answer.status_code == 400 and "gateway's own table" in answer.text


async def test_expiring_goes_out_once_per_expiry_date(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """Found by the housekeeping sweep within lifecycle_warning_before (72 hours by default),
    once per date; a new date within it warns again; one further off is not warned."""
    subject = await subscribe(gateway, receiver)
    later = await subscribe(gateway, receiver, key=subject.key, path="/later")
    watcher = await watch(gateway, receiver, subject.key)
    store = gateway.ctx.store
    counted = REGISTRY.get_sample_value(NOTICES_TOTAL, {"event": "expiring"}) or 0.0
    first = utcnow().replace(microsecond=0) + timedelta(hours=48)
    await set_expiration(store, await subject.stored(), first)
    await set_expiration(store, await later.stored(), first + timedelta(hours=48))
    await housekeeping_once(gateway.ctx)
    await housekeeping_once(gateway.ctx)
    await gateway.worker().drain()
    [warned] = heard(watcher)
    assert fixed(warned) == about(subject, "expiring", "Active", None)
    assert warned["expirationDate"] == timestamp(first)
    second = first + timedelta(hours=1)
    await set_expiration(store, await subject.stored(), second)
    await housekeeping_once(gateway.ctx)
    await housekeeping_once(gateway.ctx)
    await gateway.worker().drain()
    assert [r["expirationDate"] for r in heard(watcher)] == [timestamp(first), timestamp(second)]
    assert REGISTRY.get_sample_value(NOTICES_TOTAL, {"event": "expiring"}) == counted + 2


# -- Re-verification ------------------------------------------------------------------------------
def reverifying(gateway: RunningGateway, interval: float = HOUR) -> management.Management:
    """The gateway's management with re-verification on."""
    managing = gateway.ctx.management
    managing.settings = dataclasses.replace(managing.settings, reverify_interval=interval)
    return managing


async def come_due(managing: management.Management, interval: float = HOUR) -> None:
    """Schedule every webhook's re-verification as if the sweep had run two intervals ago, so
    that each is due now (its moment fell within the interval after that)."""
    managing.clock = lambda: utcnow() - timedelta(seconds=2 * interval)
    try:
        assert await managing.reverify_due() == {"reverified": 0, "reverify_failed": 0}
    finally:
        managing.clock = utcnow


async def test_a_failed_reverification_parks_its_notifications_and_notifies(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    subject = await subscribe(gateway, receiver)
    watcher = await watch(gateway, receiver, subject.key)
    managing = reverifying(gateway)
    await come_due(managing)
    await subject.publish(invoice_update())  # pending when its callback fails the handshake
    receiver.plan("/hook", Answer(status=404))
    receiver.plan("/watch", Answer())
    # Not through housekeeping_once: its invariant check would park what this failed to.
    assert await managing.reverify_due() == {"reverified": 1, "reverify_failed": 1}
    hook = await subject.stored()
    message = "re-verification failed: callback answered HTTP 404"
    assert (hook.status_code, hook.status_message) == (WebhookStatus.ERRORED, message)
    assert await states(subject) == [NotificationState.PARKED]
    await gateway.worker().drain()
    assert receiver.notifications("/hook") == []
    [notice] = heard(watcher)
    assert fixed(notice) == about(subject, "verificationFailed", "Errored", message)
    receiver.plan("/hook", Answer())  # the owner brings it back as after any other stop
    assert (await subject.patch(statusCode="Active")).json()["statusCode"] == "Active"
    await gateway.worker().drain()
    assert await states(subject) == [NotificationState.SUCCEEDED]
    assert [r["event"] for r in heard(watcher)] == ["verificationFailed", "reactivated"]


async def test_a_reverification_that_fails_after_a_pause_and_a_reactivation_changes_nothing(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """A pause and a reactivation while a re-verification runs put the status and callback
    back as they were, but the reactivation's own handshake passed, later: the older failure
    must not make the webhook Errored (nor a pass reschedule it)."""
    subject = await subscribe(gateway, receiver)
    managing = reverifying(gateway)
    await come_due(managing)
    [read] = await gateway.ctx.store.due_for_reverification(utcnow(), 10)  # as the sweep read it
    assert (await subject.patch(statusCode="Inactive")).status_code == 200
    assert (await subject.patch(statusCode="Active")).json()["statusCode"] == "Active"
    owners = await subject.stored()
    failed = lifecycle.reverification_failed("callback answered HTTP 404")
    assert await gateway.ctx.store.fail_verification(read, failed, utcnow()) is None
    assert not await gateway.ctx.store.record_verified(read, utcnow(), utcnow())
    assert await subject.stored() == owners


async def test_a_passed_reverification_keeps_it_active_and_records_when(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    subject = await subscribe(gateway, receiver)
    managing = reverifying(gateway)
    await come_due(managing)
    handshakes = len(receiver.seen)
    before = utcnow()
    done = await housekeeping_once(gateway.ctx)  # the sweep that expires webhooks runs it
    assert (done["reverified"], done["reverify_failed"]) == (1, 0)
    assert len(receiver.seen) == handshakes + 1 and receiver.seen[-1].is_handshake
    hook = await subject.stored()
    assert hook.status_code is WebhookStatus.ACTIVE and hook.status_message is None
    assert hook.verified_at is not None and hook.verified_at >= before
    assert hook.reverify_due is not None
    assert timedelta(0) < hook.reverify_due - hook.verified_at <= timedelta(seconds=HOUR)
    assert await managing.reverify_due() == {"reverified": 0, "reverify_failed": 0}  # not again


async def test_reverifications_are_spread_over_the_interval_and_bounded_a_sweep(
    gateway: RunningGateway, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Webhooks created together come due at moments of their own across the interval, and
    one sweep runs at most REVERIFY_BATCH of those due."""
    first = await subscribe(gateway, receiver)
    for number in range(7):
        await subscribe(gateway, receiver, key=first.key, path=f"/h{number}")
    managing = reverifying(gateway)
    start = utcnow()
    await managing.reverify_due()  # schedules every one; none is due yet
    rows = await gateway.ctx.store.due_for_reverification(start + timedelta(hours=2), 100)
    moments = sorted(
        (hook.reverify_due - start).total_seconds() for hook in rows if hook.reverify_due
    )
    assert len(set(moments)) == 8 and 0 < moments[0] and moments[-1] <= HOUR
    assert moments[-1] - moments[0] > HOUR / 10  # not one burst (8 uniform draws: p < 1e-6)
    await come_due(managing)
    monkeypatch.setattr(management, "REVERIFY_BATCH", 3)
    assert (await managing.reverify_due())["reverified"] == 3
    assert (await managing.reverify_due())["reverified"] == 3
    assert (await managing.reverify_due())["reverified"] == 2
