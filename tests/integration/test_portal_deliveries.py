"""The portal's delivery pages over real HTTP, on both stores: a webhook's history with what
was sent and answered, failures only on request, page by page; a Strict webhook's notifications
queued behind a failed one said so in words."""

from __future__ import annotations

import dataclasses
import html
import re
from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from gateway.delivery import Worker
from gateway.models import DeliveryOrder, NotificationState, utcnow
from gateway.portal.deliveries import PAGE_SIZE
from gateway.store.base import Query
from tests.factories import make_event, make_notification, make_rule, make_webhook
from tests.gateway_server import RunningGateway
from tests.portal import Partner
from tests.receiver import Answer, Receiver


@pytest.fixture
async def gateway(gateway_on_each_store: RunningGateway) -> RunningGateway:
    return gateway_on_each_store


async def test_history_shows_what_was_sent_and_answered_and_filters_failures(
    gateway: RunningGateway,
) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key)
    event = make_event(record.group_key)
    now = utcnow()
    delivered = make_notification(
        hook, event, state=NotificationState.SUCCEEDED, attempts=1, request_sent=True,
        is_successful=True, response_status_code="200", timestamp=now - timedelta(minutes=2),
        request_message="POST /hook sent-body-marker", response_message="200 answered-marker",
    )  # fmt: skip
    failed = make_notification(
        hook, event, state=NotificationState.FAILED, attempts=2, request_sent=True,
        response_status_code="500", process_result_message="callback answered HTTP 500",
        timestamp=now - timedelta(minutes=1),
    )  # fmt: skip
    await gateway.ctx.store.add_webhooks([hook])
    await gateway.ctx.store.add_events([event], [delivered, failed])
    path = f"/portal/webhooks/{hook.webhook_id}/history"
    async with Partner(gateway) as partner:
        await partner.enter(key, readOnly=True)  # reading history changes nothing
        assert 'id="webhook-history-link"' in (await partner.page(path[: -len("/history")])).text
        everything = await partner.page(path)
        failures = await partner.page(f"{path}?failures=1")
    assert everything.status_code == 200
    text = everything.text
    assert text.index(f"history-{failed.notification_id}") < text.index(
        f"history-{delivered.notification_id}"
    )  # newest first
    assert "sent-body-marker" in text and "answered-marker" in text
    assert "callback answered HTTP 500" in text
    assert f"history-{failed.notification_id}" in failures.text
    assert f"history-{delivered.notification_id}" not in failures.text
    assert 'id="history-all"' in failures.text


async def test_history_pages(gateway: RunningGateway) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key)
    event = make_event(record.group_key)
    notes = [make_notification(hook, event, timestamp=utcnow() - timedelta(seconds=i))
             for i in range(PAGE_SIZE + 1)]  # fmt: skip
    await gateway.ctx.store.add_webhooks([hook])
    await gateway.ctx.store.add_events([event], notes)
    path = f"/portal/webhooks/{hook.webhook_id}/history"
    async with Partner(gateway) as partner:
        await partner.enter(key)
        first = await partner.page(path)
        second = await partner.page(f"{path}?page=1")
        nonsense = await partner.page(f"{path}?page=-3")
    assert first.text.count('class="history-row"') == PAGE_SIZE
    assert 'id="history-older"' in first.text and 'id="history-newer"' not in first.text
    assert second.text.count('class="history-row"') == 1 and 'id="history-newer"' in second.text
    assert f"history-{notes[-1].notification_id}" in second.text  # the oldest, last
    assert nonsense.status_code == 200 and nonsense.text.count('class="history-row"') == PAGE_SIZE


async def test_a_test_send_shows_what_the_receiver_answered(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key, callback_url=receiver.plan("/hook"))
    await gateway.ctx.store.add_webhooks([hook])
    path = f"/portal/webhooks/{hook.webhook_id}"
    async with Partner(gateway) as partner:
        await partner.enter(key)
        assert 'id="webhook-test-send"' in (await partner.page(path)).text
        receiver.plan("/hook", Answer(body="thanks-marker"), Answer(status=503, body="down"))
        sent = await partner.submit(f"{path}/test")
        assert sent.status_code == 200, sent.text
        assert "answered HTTP 200" in sent.text and "that is a delivery" in sent.text
        assert 'id="test-result-verdict">Delivered' in sent.text and "thanks-marker" in sent.text
        refused = await partner.submit(f"{path}/test")
        assert "answered HTTP 503" in refused.text and "not a delivery" in refused.text
        # Without the session's CSRF token: refused, and nothing is sent.
        assert (await partner.submit(f"{path}/test", csrf="")).status_code == 403
    first, _ = receiver.notifications("/hook")
    assert first.headers["webhook-id"] and "webhook-signature" in first.headers


async def test_a_test_send_that_cannot_connect_says_so(gateway: RunningGateway) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key, callback_url="http://127.0.0.1:9/hook")
    await gateway.ctx.store.add_webhooks([hook])
    async with Partner(gateway) as partner:
        await partner.enter(key)
        sent = await partner.submit(f"/portal/webhooks/{hook.webhook_id}/test")
    assert sent.status_code == 200
    assert "Test event not delivered: connection refused." in sent.text


async def test_a_read_only_session_cannot_send_a_test(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key, callback_url=receiver.plan("/hook"))
    await gateway.ctx.store.add_webhooks([hook])
    async with Partner(gateway) as partner:
        await partner.enter(key, readOnly=True)
        page = await partner.page(f"/portal/webhooks/{hook.webhook_id}")
        assert 'id="webhook-test-form"' not in page.text
        refused = await partner.submit(f"/portal/webhooks/{hook.webhook_id}/test")
    assert refused.status_code == 403 and "read-only" in refused.text
    assert receiver.seen == []


async def test_an_entry_not_delivered_is_sent_again_while_the_webhook_is_active(
    gateway: RunningGateway,
) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key)
    event = make_event(record.group_key)
    failed, kept = (
        make_notification(hook, event, state=NotificationState.FAILED, attempts=1,
                          request_sent=True, response_status_code="500")
        for _ in range(2)
    )  # fmt: skip
    delivered = make_notification(hook, event, state=NotificationState.SUCCEEDED, attempts=1,
                                  request_sent=True, is_successful=True)  # fmt: skip
    await gateway.ctx.store.add_webhooks([hook])
    await gateway.ctx.store.add_events([event], [failed, kept, delivered])
    path = f"/portal/webhooks/{hook.webhook_id}"

    async def state_of(note_id: UUID) -> NotificationState:
        found = await gateway.ctx.store.query_history(record.group_key, hook.webhook_id, Query())
        return next(n.state for n in found.records if n.notification_id == note_id)

    async with Partner(gateway) as partner:
        await partner.enter(key)
        listing = await partner.page(f"{path}/history")
        assert f'id="history-retry-{failed.notification_id}"' in listing.text
        assert f'id="history-retry-{delivered.notification_id}"' not in listing.text
        queued = await partner.submit(f"{path}/history/{failed.notification_id}/retry")
        assert queued.status_code == 200 and "Queued" in queued.text
        assert await state_of(failed.notification_id) is NotificationState.PENDING
        again = await partner.submit(f"{path}/history/{delivered.notification_id}/retry")
        assert again.status_code == 400 and "it was delivered" in again.text
        await partner.submit(f"{path}/status", {"action": "pause"})
        paused = await partner.submit(f"{path}/history/{kept.notification_id}/retry")
        assert paused.status_code == 409 and "the webhook is Inactive" in paused.text
        assert await state_of(kept.notification_id) is NotificationState.FAILED
        unknown = await partner.submit(f"{path}/history/{uuid4()}/retry")
        assert unknown.status_code == 404 and "no history entry" in unknown.text


async def test_sending_again_answers_with_the_history_as_it_was_shown(
    gateway: RunningGateway,
) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key)
    event = make_event(record.group_key)
    failed = make_notification(hook, event, state=NotificationState.FAILED, attempts=1,
                               request_sent=True, response_status_code="500")  # fmt: skip
    delivered = make_notification(hook, event, state=NotificationState.SUCCEEDED, attempts=1,
                                  request_sent=True, is_successful=True)  # fmt: skip
    await gateway.ctx.store.add_webhooks([hook])
    await gateway.ctx.store.add_events([event], [failed, delivered])
    async with Partner(gateway) as partner:
        await partner.enter(key)
        shown = await partner.page(f"/portal/webhooks/{hook.webhook_id}/history?failures=1")
        found = re.search(r'action="([^"]*/retry[^"]*)"', shown.text)
        assert found is not None, shown.text
        queued = await partner.submit(html.unescape(found.group(1)))
    assert queued.status_code == 200 and "Queued" in queued.text
    # Still failures only: the entry sent again is there (not delivered yet), not the other.
    assert 'id="history-all"' in queued.text
    assert f"history-{failed.notification_id}" in queued.text
    assert f"history-{delivered.notification_id}" not in queued.text


async def test_a_read_only_session_cannot_send_again(gateway: RunningGateway) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key)
    event = make_event(record.group_key)
    failed = make_notification(hook, event, state=NotificationState.FAILED, attempts=1,
                               request_sent=True)  # fmt: skip
    await gateway.ctx.store.add_webhooks([hook])
    await gateway.ctx.store.add_events([event], [failed])
    path = f"/portal/webhooks/{hook.webhook_id}/history"
    async with Partner(gateway) as partner:
        await partner.enter(key, readOnly=True)
        assert "history-retry-" not in (await partner.page(path)).text
        refused = await partner.submit(f"{path}/{failed.notification_id}/retry")
    assert refused.status_code == 403
    found = await gateway.ctx.store.query_history(record.group_key, hook.webhook_id, Query())
    assert [n.state for n in found.records] == [NotificationState.FAILED]


async def test_a_test_event_is_in_history_marked_and_not_sent_again(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key, callback_url=receiver.plan("/hook", Answer(status=500)))
    await gateway.ctx.store.add_webhooks([hook])
    path = f"/portal/webhooks/{hook.webhook_id}"
    async with Partner(gateway) as partner:
        await partner.enter(key)
        assert (await partner.submit(f"{path}/test")).status_code == 200
        [row] = (await gateway.ctx.store.query_history(record.group_key, hook.webhook_id,
                                                       Query())).records  # fmt: skip
        listing = await partner.page(f"{path}/history")
        assert f'id="history-{row.notification_id}"' in listing.text
        assert "Test.U <span" in listing.text and ">test</span>" in listing.text
        assert f'id="history-retry-{row.notification_id}"' not in listing.text
        again = await partner.submit(f"{path}/history/{row.notification_id}/retry")
        assert again.status_code == 400 and "it was a test event" in again.text
    assert len(receiver.notifications("/hook")) == 1


async def test_history_says_in_words_what_waits_behind_a_failed_notification(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, record = await gateway.add_key("acme")
    down = receiver.plan("/down", Answer(status=500, body="down"))
    hook = make_webhook(record.group_key, callback_url=down, delivery_order=DeliveryOrder.STRICT)
    await gateway.ctx.store.add_webhooks([hook])
    await gateway.ctx.store.add_rules([make_rule(hook)])
    async with gateway.client(key) as api:
        body = [{"tableKey": "Invoice", "eventType": "U", "records": [{"id": str(i)}]}
                for i in range(3)]  # fmt: skip
        assert (await api.post("/api/v1/Events", json=body)).status_code == 202
    # The first fails and is retried in an hour: the other two wait behind it.
    later = dataclasses.replace(gateway.ctx.settings, retry_schedule=(3600.0,))
    await Worker(later, gateway.ctx.store, gateway.ctx.outbound).drain()
    assert len(receiver.notifications("/down")) == 1
    found = await gateway.ctx.store.query_history(record.group_key, hook.webhook_id, Query())
    head, *queued = sorted(found.records, key=lambda note: note.sequence)
    assert [n.state for n in queued] == [NotificationState.WAITING] * 2
    path = f"/portal/webhooks/{hook.webhook_id}"
    async with Partner(gateway) as partner:
        await partner.enter(key)
        listing = (await partner.page(f"{path}/history")).text
        page = (await partner.page(path)).text
    rows = {n.notification_id: row_of(listing, n.notification_id) for n in found.records}
    assert "failed" in rows[head.notification_id]
    assert "Waiting behind" not in rows[head.notification_id]
    assert f'id="history-retry-{head.notification_id}"' in listing
    for note in queued:
        assert "Waiting behind an earlier notification" in rows[note.notification_id]
        # A hand retry keeps it in its place in the queue: nothing to send again.
        assert f'id="history-retry-{note.notification_id}"' not in listing
    assert "Strict: one at a time" in page


def row_of(listing: str, note_id: UUID) -> str:
    """One history row's HTML, tags removed."""
    found = re.search(rf'<tr id="history-{note_id}".*?</tr>', listing, re.S)
    assert found, f"no row for {note_id}"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(0))).split())
