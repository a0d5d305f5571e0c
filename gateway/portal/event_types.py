"""The portal's event-type catalogue: what the platform publishes for the group, read-only
(partners read it; the platform's `events` keys declare and change it through the API)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.common import context
from gateway.portal.web import PortalEndpoint, page, portal_page, portal_session
from gateway.store.base import Query

MOST_LISTED = 500


@page
async def catalogue(request: Request) -> Response:
    """The group's event types, by table and event type."""
    session = portal_session(request)
    ctx = context(request)
    q = Query(order="tableKey asc, eventType asc", page_size=MOST_LISTED)
    found = await ctx.store.query_event_types(session.group_key, q)
    return portal_page(
        request, "event_types.html", title="Event types", declared=found.records,
        total=found.total_count, enforced=ctx.settings.enforce_event_types,
    )  # fmt: skip


PAGES: dict[str, dict[str, PortalEndpoint]] = {
    "/event-types": {"GET": catalogue},
}
