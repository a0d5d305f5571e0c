"""The portal's routes: every page by path and method, mounted under /portal."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.portal import charts, deliveries, entry, event_types, rules, webhooks
from gateway.portal.tokens import PortalRefused
from gateway.portal.web import (
    HERE,
    PREFIX,
    PortalEndpoint,
    SecurityHeaders,
    page,
)

# Every portal route under /portal: path -> method -> endpoint.
PAGES: dict[str, dict[str, PortalEndpoint]] = {
    "/": {"GET": entry.enter},
    "/session": {"POST": entry.exchange},
    "/sign-out": {"POST": entry.sign_out},
    **webhooks.PAGES,
    **deliveries.PAGES,
    **charts.PAGES,
    **rules.PAGES,
    **event_types.PAGES,
}


ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def mount() -> Mount:
    """The portal's routes and static files under /portal, with its security headers; any
    other path or method under /portal gets a page too (404 or 405), with the same headers:
    an error Starlette raised would be answered outside them."""
    pages = [
        Route(path, _dispatch(handlers), methods=list(handlers)) for path, handlers in PAGES.items()
    ]

    @page
    async def elsewhere(request: Request) -> Response:
        """No portal page here, or not for this method."""
        allowed = [r for r in pages if r.matches(request.scope)[0] is Match.PARTIAL]
        if allowed:
            raise PortalRefused(405, "This page does not take that request.",
                                "Use the links and forms on the portal's pages.")  # fmt: skip
        raise PortalRefused(404, "There is no such page in the portal.",
                            "Go to the webhooks page and follow its links.")  # fmt: skip

    routes: list[BaseRoute] = [
        *pages,
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        Route("/{rest:path}", elsewhere, methods=ANY_METHOD),
    ]
    return Mount(PREFIX, routes=routes, middleware=[Middleware(SecurityHeaders)])


def _dispatch(handlers: dict[str, PortalEndpoint]) -> PortalEndpoint:
    """One endpoint for all of a path's methods (HEAD served as GET)."""

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return dispatch
