"""The portal's delivery pages: a webhook's history (failures only on request), each entry
with what was sent and answered, as the API's history shows them; and a test send, whose
answer the webhook's page shows."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway import filters, wire
from gateway.api.common import context
from gateway.api.history import TEST_BODY_BYTES
from gateway.portal.web import PortalEndpoint, changing_form, page, portal_page, portal_session
from gateway.portal.webhooks import owned_webhook, webhook_page
from gateway.retry import succeeded
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


@page
async def test_send(request: Request) -> Response:
    """Send a signed sample notification to the webhook now (ctx.management.test_send, as the
    API's test), and show what the receiver answered."""
    session, _ = await changing_form(request)
    hook = await owned_webhook(request, session)
    _, sent = await context(request).management.test_send(hook)
    response = sent.response
    delivered = response is not None and succeeded(response.status, hook.success_policy)
    if response is not None:
        verdict = "a delivery" if delivered else "not a delivery"
        words = (f"Test event sent: your receiver answered HTTP {response.status} in "
                 f"{response.elapsed * 1000:.0f} ms; by this webhook's success policy that is "
                 f"{verdict}.")  # fmt: skip
    else:
        words = f"Test event not delivered: {sent.error}."
    body = response.body[:TEST_BODY_BYTES].decode(errors="replace") if response else None
    tested = {"delivered": delivered, "body": body}
    notice = ("ok" if delivered else "bad", words)
    return await webhook_page(request, hook, notice=notice, tested=tested)


def _page_number(raw: str) -> int:
    """A page number from the query (anything else is the first page)."""
    return min(int(raw), MOST_PAGES) if raw.isdigit() else 0


PAGES: dict[str, dict[str, PortalEndpoint]] = {
    "/webhooks/{webhookId}/history": {"GET": history},
    "/webhooks/{webhookId}/test": {"POST": test_send},
}
