"""A webhook's delivery history, retrying one entry, and sending a test notification."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response

from gateway import wire
from gateway.api.common import (
    authenticate,
    context,
    filter_param,
    includes,
    json_response,
    page_query,
    param,
    path_id,
)
from gateway.errors import NotFound, ValidationError
from gateway.models import EventType, Notification, NotificationState, Scope
from gateway.store.base import HISTORY_FIELDS
from gateway.wire import HISTORY_INCLUDES

SAMPLE_RECORD = {"id": "test-record", "note": "a test notification from the webhook gateway"}
TEST_BODY_BYTES = 512


async def _webhook(request: Request) -> tuple[uuid.UUID, uuid.UUID]:
    principal = await authenticate(request, Scope.WEBHOOKS)
    webhook_id = path_id(request, "webhookId")
    if await context(request).store.get_webhook(principal.group_key, webhook_id) is None:
        raise NotFound(f"no webhook {webhook_id}")
    return principal.group_key, webhook_id


def _select(request: Request) -> set[str] | None:
    raw = param(request, "select")
    if raw is None:
        return None
    allowed = set(HISTORY_FIELDS) | set(HISTORY_INCLUDES)
    chosen = {p.strip().lower() for p in raw.split(",") if p.strip()}
    unknown = sorted(chosen - allowed)
    if unknown:
        raise ValidationError.field("select", f"unknown properties: {', '.join(unknown)}")
    return chosen


async def query(request: Request) -> Response:
    """Filter (Azure-Table literals allowed), select, include and page one webhook's history."""
    group_key, webhook_id = await _webhook(request)
    ctx = context(request)
    q = page_query(request, filter_param(request, HISTORY_FIELDS.keys(), azure=True))
    wanted = includes(request, HISTORY_INCLUDES)
    select = _select(request)
    page = await ctx.store.query_history(group_key, webhook_id, q)
    limit = ctx.settings.history_message_limit
    records = [wire.history(row, wanted, select, limit) for row in page.records]
    return json_response(wire.fetch_result(records, page.total_count, q.page_size, q.page_number))


async def retry(request: Request) -> Response:
    """Queue one failed (or parked) notification to go out now."""
    group_key, webhook_id = await _webhook(request)
    ctx = context(request)
    history_id = path_id(request, "webhookHistoryId")
    row = await ctx.store.get_notification(group_key, webhook_id, history_id)
    if row is None:
        raise NotFound(f"no history entry {history_id}")
    if row.state is NotificationState.SUCCEEDED:
        raise ValidationError.field("webhookHistoryId", "was delivered; only failed ones retry")
    await ctx.store.requeue_notification(group_key, webhook_id, history_id, ctx.clock())
    ctx.wake_workers()
    return json_response({"webhookHistoryId": str(history_id), "status": "queued"})


async def test_send(request: Request) -> Response:
    """Send a signed sample notification now and answer with what the receiver said."""
    group_key, webhook_id = await _webhook(request)
    ctx = context(request)
    hook = await ctx.store.get_webhook(group_key, webhook_id)
    if hook is None:
        raise NotFound(f"no webhook {webhook_id}")
    now = ctx.clock()
    sample = Notification(
        notification_id=uuid.uuid4(),
        group_key=group_key,
        webhook_id=webhook_id,
        event_id=uuid.uuid4(),
        table_key="Test",
        event_type=EventType.UPDATE,
        records=(SAMPLE_RECORD,),
        sequence=0,
        triggered_at=now,
        state=NotificationState.PENDING,
        next_attempt_at=now,
        created=now,
    )
    sent = await ctx.sender.send(hook, sample)
    response = sent.response
    return json_response(
        {
            "webhookId": str(webhook_id),
            "webhookHistoryId": str(sample.notification_id),
            "delivered": bool(response and 200 <= response.status < 300),
            "statusCode": response.status if response else None,
            "latencyMs": round(response.elapsed * 1000, 1) if response else None,
            "body": response.body[:TEST_BODY_BYTES].decode(errors="replace") if response else None,
            "error": str(sent.error) if sent.error else None,
        }
    )
