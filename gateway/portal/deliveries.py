"""The portal's delivery pages: a webhook's history (failures only on request), each entry
with what was sent and answered, as the API's history shows them (one that waits behind an
earlier notification of a Strict webhook said so in words), and one not delivered sent again;
and a test send, whose answer the webhook's page shows."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway import filters, lifecycle, wire
from gateway.api.common import context, path_id
from gateway.api.history import TEST_BODY_BYTES
from gateway.models import Webhook
from gateway.portal.flash import done
from gateway.portal.tokens import PortalRefused
from gateway.portal.web import PortalEndpoint, changing_form, page, portal_page, portal_session
from gateway.portal.webhooks import history_entry, owned_webhook, page_of
from gateway.retry import succeeded
from gateway.store.base import Query, Requeue
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
    return await _history_page(request, await owned_webhook(request, session))


async def _history_page(
    request: Request, hook: Webhook, *, status: int = 200, notice: tuple[str, str] | None = None
) -> Response:
    ctx = context(request)
    failures = request.query_params.get("failures") == "1"
    number = _page_number(request.query_params.get("page", "0"))
    q = Query(FAILURES if failures else None, "timestamp desc", PAGE_SIZE, number)
    found = await ctx.store.query_history(hook.group_key, hook.webhook_id, q)
    limit = ctx.settings.history_message_limit
    entries = [history_entry(row, MESSAGES, limit) for row in found.records]
    view = wire.webhook(hook, ctx.clock())
    return portal_page(
        request, "history.html", status=status, title=f"History of {hook.name}", view=view,
        entries=entries, failures=failures, number=number, total=found.total_count,
        more=(number + 1) * PAGE_SIZE < found.total_count, notice=notice,
    )  # fmt: skip


@page
async def resend(request: Request) -> Response:
    """Send one entry that was not delivered again now (ctx.management.retry, as the API's
    retry): refused while the webhook is not Active, and for one that was delivered. A queued
    one redirects to the history as it was shown (failures only, the same page): the form's
    URL carries both."""
    session, _ = await changing_form(request)
    hook = await owned_webhook(request, session)
    ctx = context(request)
    history_id = path_id(request, "webhookHistoryId")
    found = await ctx.management.retry(session.group_key, hook.webhook_id, history_id)
    if found is Requeue.NOT_FOUND:
        raise PortalRefused(404, f"This webhook has no history entry {history_id}.",
                            "Go back to the webhook's history.")  # fmt: skip
    if found is Requeue.QUEUED:
        notice = ("ok", "Queued: it goes out again now; reload this page to see how it went.")
        path = f"{page_of(hook)}/history"
        return done(request, session, path, notice, query=request.url.query)
    if found is Requeue.SUCCEEDED:
        words = "Not sent again: it was delivered; only entries not delivered are sent again."
        return await _history_page(request, hook, status=400, notice=("bad", words))
    if found is Requeue.TEST:
        words = "Not sent again: it was a test event; send another test event instead."
        return await _history_page(request, hook, status=400, notice=("bad", words))
    status, message = lifecycle.effective_status(hook, ctx.clock())
    why = f" ({message})" if message else ""
    words = (f"Not sent again: the webhook is {status.value}{why}. Resume or reactivate it "
             "first; what was kept for it then goes out by itself.")  # fmt: skip
    return await _history_page(request, hook, status=409, notice=("bad", words))


@page
async def test_send(request: Request) -> Response:
    """Send a signed sample notification to the webhook now (ctx.management.test_send, as the
    API's test); the webhook's page, redirected to, shows what the receiver answered."""
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
    return done(request, session, page_of(hook), notice, tested=tested)


def _page_number(raw: str) -> int:
    """A page number from the query (anything else is the first page)."""
    return min(int(raw), MOST_PAGES) if raw.isdigit() else 0


PAGES: dict[str, dict[str, PortalEndpoint]] = {
    "/webhooks/{webhookId}/history": {"GET": history},
    "/webhooks/{webhookId}/history/{webhookHistoryId}/retry": {"POST": resend},
    "/webhooks/{webhookId}/test": {"POST": test_send},
}
