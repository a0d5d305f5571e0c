"""A webhook's delivery history, retrying one entry, and sending a test notification."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response

from gateway import lifecycle, wire
from gateway.api.common import (
    PAGING,
    Context,
    authenticate,
    context,
    filter_param,
    includes,
    json_response,
    operation,
    owned,
    page_query,
    param,
    path_id,
)
from gateway.errors import Conflict, NotFound, ValidationError
from gateway.models import Scope
from gateway.store.base import Requeue
from gateway.wire import (
    HISTORY_INCLUDES,
    FetchResult,
    RetryResult,
    TestResult,
    WebhookHistoryTableStorageModel,
)

FIELDS = WebhookHistoryTableStorageModel.queryable()

TEST_BODY_BYTES = 512


async def _webhook(request: Request) -> tuple[uuid.UUID, uuid.UUID]:
    principal = await authenticate(request, Scope.WEBHOOKS)
    get = context(request).store.get_webhook
    hook = await owned(request, principal, "webhookId", "webhook", get)
    return principal.group_key, hook.webhook_id


def _select(request: Request) -> set[str] | None:
    raw = param(request, "select")
    if raw is None:
        return None
    allowed = set(FIELDS) | set(HISTORY_INCLUDES)
    chosen = {p.strip().lower() for p in raw.split(",") if p.strip()}
    unknown = sorted(chosen - allowed)
    if unknown:
        raise ValidationError.field("select", f"unknown properties: {', '.join(unknown)}")
    return chosen


@operation(
    FetchResult[WebhookHistoryTableStorageModel],
    400,
    404,
    query=("select", "include", *PAGING),
    includes=HISTORY_INCLUDES,
)
async def query(request: Request) -> Response:
    """Filter (Azure-Table literals allowed), select, include and page one webhook's history."""
    group_key, webhook_id = await _webhook(request)
    ctx = context(request)
    q = page_query(request, filter_param(request, FIELDS.keys(), azure=True))
    wanted = includes(request, HISTORY_INCLUDES)
    select = _select(request)
    page = await ctx.store.query_history(group_key, webhook_id, q)
    limit = ctx.settings.history_message_limit
    logged = {}
    if wire.ATTEMPTS in wanted:
        ids = [row.notification_id for row in page.records]
        logged = await ctx.store.attempts(group_key, webhook_id, ids)
    records = [
        wire.history(row, wanted, select, limit, logged.get(row.notification_id, []))
        for row in page.records
    ]
    return json_response(wire.fetch_result(records, page.total_count, q.page_size, q.page_number))


@operation(RetryResult, 400, 404, 409)
async def retry(request: Request) -> Response:
    """Queue one notification that has not been delivered to go out now; refused (409) while
    its webhook is not Active, when it stays parked and its recorded attempt unchanged."""
    group_key, webhook_id = await _webhook(request)
    ctx = context(request)
    history_id = path_id(request, "webhookHistoryId")
    found = await ctx.management.retry(group_key, webhook_id, history_id)
    if found is Requeue.NOT_FOUND:
        raise NotFound(f"no history entry {history_id}")
    if found is Requeue.TEST:
        raise ValidationError.field(
            "webhookHistoryId",
            "is a test send, which is not retried; send another with POST "
            f"/api/v1/Webhooks/{webhook_id}/test",
        )
    if found is Requeue.SUCCEEDED:
        raise ValidationError.field("webhookHistoryId", "was delivered; only failed ones retry")
    if found is Requeue.NOT_ACTIVE:
        raise Conflict(await _not_active(ctx, group_key, webhook_id))
    return json_response(RetryResult(webhook_history_id=history_id, status="queued").wire())


async def _not_active(ctx: Context, group_key: uuid.UUID, webhook_id: uuid.UUID) -> str:
    """Why a hand retry is refused, and what to do about it."""
    hook = await ctx.store.get_webhook(group_key, webhook_id)
    if hook is None:
        raise NotFound(f"no webhook {webhook_id}")
    status, message = lifecycle.effective_status(hook, ctx.clock())
    why = f" ({message})" if message else ""
    return (
        f"webhook {webhook_id} is {status.value}{why}: a hand retry is refused while it is not "
        "Active; reactivate it with PATCH statusCode=Active (and a future expirationDate if it "
        "expired), and its parked notifications go out"
    )


@operation(TestResult, 404)
async def test_send(request: Request) -> Response:
    """Send a signed sample notification now and answer with what the receiver said, delivered
    or not by the webhook's successPolicy; it is kept in history (isTest) under the
    webhookHistoryId answered, and never counts against the webhook's lifecycle."""
    group_key, webhook_id = await _webhook(request)
    ctx = context(request)
    hook = await ctx.store.get_webhook(group_key, webhook_id)
    if hook is None:
        raise NotFound(f"no webhook {webhook_id}")
    row, sent = await ctx.management.test_send(hook)
    response = sent.response
    answer = TestResult(
        webhook_id=webhook_id,
        webhook_history_id=row.notification_id,
        is_successful=row.is_successful,
        response_status_code=row.response_status_code,
        process_result_message=row.process_result_message,
        latency_ms=round(response.elapsed * 1000, 1) if response else None,
        body=response.body[:TEST_BODY_BYTES].decode(errors="replace") if response else None,
    )
    return json_response(answer.wire())
