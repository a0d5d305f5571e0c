"""The portal's webhook pages: the group's webhooks with their status and last delivery."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.common import context
from gateway.portal.web import PortalEndpoint, page, portal_page, portal_session
from gateway.store.base import Query

MOST_LISTED = 500


@page
async def listing(request: Request) -> Response:
    """The group's webhooks: status, status message, callback, method, content type, expiry."""
    session = portal_session(request)
    ctx = context(request)
    await ctx.management.expire_due()  # every reader sees an expired webhook as Inactive
    found = await ctx.store.query_webhooks(session.group_key, Query(page_size=MOST_LISTED))
    return portal_page(request, "webhooks.html", title="Webhooks", hooks=found.records)


PAGES: dict[str, dict[str, PortalEndpoint]] = {
    "/webhooks": {"GET": listing},
}
