"""The portal's delivery pages: a webhook's history (failures only on request), each entry
with what was sent and answered, as the API's history shows them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway import filters, wire
from gateway.api.common import context
from gateway.portal.web import PortalEndpoint, page, portal_page, portal_session
from gateway.portal.webhooks import owned_webhook
from gateway.store.base import Query
from gateway.wire import WebhookHistoryTableStorageModel

PAGE_SIZE = 50
MOST_PAGES = 10_000
MESSAGES = ("requestMessage", "responseMessage")
FAILURES = filters.parse_filter(
    "isSuccessful eq false", fields=WebhookHistoryTableStorageModel.queryable().keys()
)


@page
async def history(request: Request) -> Response:
    """A webhook's history, newest first, PAGE_SIZE a page (`page`, from 0); `failures=1`
    shows only the entries not delivered."""
    session = portal_session(request)
    hook = await owned_webhook(request, session)
    ctx = context(request)
    failures = request.query_params.get("failures") == "1"
    number = _page_number(request.query_params.get("page", "0"))
    q = Query(FAILURES if failures else None, "timestamp desc", PAGE_SIZE, number)
    found = await ctx.store.query_history(session.group_key, hook.webhook_id, q)
    limit = ctx.settings.history_message_limit
    entries = [wire.history(row, MESSAGES, None, limit) for row in found.records]
    view = wire.webhook(hook, ctx.clock())
    return portal_page(
        request, "history.html", title=f"History of {hook.name}", view=view, entries=entries,
        failures=failures, number=number, total=found.total_count,
        more=(number + 1) * PAGE_SIZE < found.total_count,
    )  # fmt: skip


def _page_number(raw: str) -> int:
    """A page number from the query (anything else is the first page)."""
    return min(int(raw), MOST_PAGES) if raw.isdigit() else 0


PAGES: dict[str, dict[str, PortalEndpoint]] = {
    "/webhooks/{webhookId}/history": {"GET": history},
}
