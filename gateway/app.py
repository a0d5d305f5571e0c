"""The Starlette application: routes, problem+json errors, and the lifespan that opens resources."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from gateway import __version__, docs, metrics, openapi
from gateway.api import (
    authentications,
    event_types,
    events,
    history,
    portal_sessions,
    rules,
    status,
    webhooks,
)
from gateway.api.common import Context, Endpoint, json_response
from gateway.catalogue import Catalogue
from gateway.config import API_MAX_CONNECTIONS, Settings
from gateway.delivery import Worker
from gateway.errors import GatewayError, RateLimited
from gateway.handshake import HandshakeCodes
from gateway.management import Management
from gateway.models import utcnow
from gateway.netguard import AddressPolicy, Resolver
from gateway.outbound import Outbound
from gateway.portal import routes as portal
from gateway.publishing import Publishing
from gateway.ratelimit import RateLimiter
from gateway.store import Store, store_for_url
from gateway.store.base import INVARIANTS
from gateway.wakeup import Wakeup

if TYPE_CHECKING:
    from gateway.supervisor import WorkerPool

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


def _route(path: str, handlers: Mapping[str, Endpoint]) -> Route:
    """One route for a path and all its methods, dispatching by method: Starlette answers a
    method a path does not serve with a 405 whose Allow names the methods of the first route
    that matched the path, so a path split over several routes would list only some."""

    async def dispatch(request: Request) -> Response:
        # Starlette serves HEAD wherever GET is served.
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return Route(path, dispatch, methods=list(handlers))


# The API: each path's handlers by method. The routes and the OpenAPI document are made from it.
API: dict[str, dict[str, Endpoint]] = {
    "/api/v1/Webhooks": {"POST": webhooks.create},
    "/api/v1/Webhooks/query": {"GET": webhooks.query},
    "/api/v1/Webhooks/{webhookId}": {
        "GET": webhooks.retrieve,
        "PATCH": webhooks.update,
        "DELETE": webhooks.delete,
    },
    "/api/v1/Webhooks/{webhookId}/regenerate-client-secret": {"PATCH": webhooks.regenerate_secret},
    "/api/v1/WebhookRules": {"POST": rules.create},
    "/api/v1/WebhookRules/query": {"GET": rules.query},
    "/api/v1/WebhookRules/{webhookRuleId}": {
        "GET": rules.retrieve,
        "PATCH": rules.update,
        "DELETE": rules.delete,
    },
    "/api/v1/Authentications": {"POST": authentications.create},
    "/api/v1/Authentications/query": {"GET": authentications.query},
    "/api/v1/Authentications/{authenticationId}": {
        "GET": authentications.retrieve,
        "PATCH": authentications.update,
        "DELETE": authentications.delete,
    },
    "/api/v1/Webhooks/{webhookId}/history/query": {"GET": history.query},
    "/api/v1/Webhooks/{webhookId}/history/{webhookHistoryId}/retry": {"GET": history.retry},
    "/api/v1/Webhooks/{webhookId}/test": {"POST": history.test_send},
    "/api/v1/EventTypes": {"POST": event_types.create},
    "/api/v1/EventTypes/query": {"GET": event_types.query},
    "/api/v1/EventTypes/{eventTypeId}": {
        "GET": event_types.retrieve,
        "PATCH": event_types.update,
        "DELETE": event_types.delete,
    },
    "/api/v1/Events": {"POST": events.publish},
    "/api/v1/Status": {"GET": status.status},
    "/api/v1/PortalSessions": {"POST": portal_sessions.create, "DELETE": portal_sessions.revoke},
}
# Every tenant route is here, so the isolation tests are generated from it.
API_ROUTES = [_route(path, handlers) for path, handlers in API.items()]


# What / points to: where a newcomer finds the API and the portal.
INDEX_LINKS = {
    "docs": ("/docs", "the API reference, in the browser"),
    "openapi": ("/openapi.json", "the OpenAPI document"),
    "portal": ("/portal", "the partner portal (opened by a link from POST /api/v1/PortalSessions)"),
    "status": ("/api/v1/Status", "who an Api-Key header is (every call needs one)"),
    "health": ("/healthz", "liveness"),
}


async def index(request: Request) -> Response:
    """Where to start: the links to the API reference, the OpenAPI document, the portal and
    the status call; a page for a browser, JSON for anything else."""
    if "text/html" in request.headers.get("accept", ""):
        items = "".join(
            f'<li><a href="{path}">{path}</a>: {html.escape(what)}</li>'
            for path, what in INDEX_LINKS.values()
        )
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>Webhook gateway</title></head><body><h1>Webhook gateway {__version__}</h1>"
            f"<ul>{items}</ul></body></html>"
        )
        return HTMLResponse(page, headers={"content-security-policy": "default-src 'none'"})
    links = {name: path for name, (path, _) in INDEX_LINKS.items()}
    return json_response({"name": "webhook gateway", "version": __version__, "links": links})


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: the database answers."""
    ctx: Context = request.app.state.ctx
    await ctx.store.ping()
    return json_response({"status": "ready"})


async def metrics_text(request: Request) -> Response:
    """Prometheus metrics, with queue figures read from the store at scrape time."""
    ctx: Context = request.app.state.ctx
    metrics.observe_queue(await ctx.store.delivery_stats(ctx.clock()))
    body, content_type = metrics.exposition(ctx.metrics_dir)
    return Response(body, media_type=content_type)


async def openapi_json(request: Request) -> Response:
    """The OpenAPI document describing every endpoint and model."""
    return json_response(openapi.document(__version__, request.app.state.ctx.settings, API))


def problem(request: Request, status: int, title: str, detail: str, **extra: Any) -> Response:
    """An RFC 7807 problem+json response."""
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    response = json_response(body, status)
    response.headers["content-type"] = PROBLEM
    return response


async def on_gateway_error(request: Request, exc: Exception) -> Response:
    """Our own errors carry their status, title and detail."""
    assert isinstance(exc, GatewayError)
    extra: dict[str, Any] = {"errors": exc.errors} if exc.errors else {}
    if exc.status >= 500:
        log.error("request failed: %s", exc.detail, extra={"path": request.url.path})
    response = problem(request, exc.status, exc.title, exc.detail, **extra)
    if isinstance(exc, RateLimited):
        response.headers["retry-after"] = str(exc.retry_after)
    return response


# Where a resource's records are listed: what a GET of its collection path (a 405: the path
# only creates) or of a webhook's history (a 404: no such path) is pointed to.
_HISTORY = re.compile(r"/api/v1/Webhooks/([^/]+)/history/?")


def _listed_at(request: Request, status: int) -> str | None:
    """The path that lists what this request seems to ask for, if it is a GET of a path
    that lists nothing (a collection path, or a webhook's history)."""
    if request.method not in ("GET", "HEAD"):
        return None
    path = request.url.path.rstrip("/")
    if status == 405 and "GET" in API.get(f"{path}/query", {}):
        return f"{path}/query"
    found = _HISTORY.fullmatch(request.url.path)
    if status == 404 and found:
        return f"/api/v1/Webhooks/{found[1]}/history/query"
    return None


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 as problem+json; a GET of a path that lists nothing says which
    path does."""
    assert isinstance(exc, HTTPException)
    detail = str(exc.detail)
    listing = _listed_at(request, exc.status_code)
    if listing is not None:
        detail = (
            f"{request.url.path} does not list anything; list with GET {listing} "
            "(filter, order, pageSize, pageNumber)"
        )
    response = problem(request, exc.status_code, str(exc.detail), detail)
    for key, value in (exc.headers or {}).items():
        response.headers[key] = value
    return response


async def on_unexpected(request: Request, exc: Exception) -> Response:
    """Anything else is a bug: log it, answer 500 problem+json without internals."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(request, 500, "Internal Server Error", "an unexpected error occurred")


async def _housekeeping(ctx: Context) -> None:
    """Periodically make expired webhooks Inactive, warn of those about to expire, re-verify
    the callbacks due, check the lifecycle invariants, prune old successful history, and
    forget the nonces of handshake codes that have expired."""
    while True:
        try:
            await housekeeping_once(ctx)
        except GatewayError:
            log.exception("housekeeping failed; trying again next interval")
        await asyncio.sleep(ctx.settings.expiry_sweep_interval)


async def housekeeping_once(ctx: Context) -> dict[str, int]:
    """One round of housekeeping; what it did, by kind."""
    await ctx.management.expire_due()
    warned = await ctx.management.warn_expiring()
    reverified = await ctx.management.reverify_due()
    # Defence in depth: the transactions keep the invariants; this finds what slipped through.
    broken = await ctx.store.check_invariants(ctx.clock(), repair=True)
    for invariant, count in broken.items():
        if count:
            metrics.INVARIANT_REPAIRS.labels(invariant=invariant).inc(count)
            log.error("lifecycle invariant broken; repaired", extra={
                "invariant": invariant, "count": count, "repair": INVARIANTS[invariant],
            })  # fmt: skip
    retention = timedelta(days=ctx.settings.history_retention_days)
    pruned = await ctx.store.prune_history(ctx.clock() - retention)
    nonces = await ctx.store.prune_handshake_nonces(ctx.clock())
    revocations = await ctx.store.prune_portal_revocations(ctx.clock())
    if pruned or nonces or revocations:
        log.info("history pruned", extra={"pruned": pruned, "nonces_pruned": nonces,
                                          "revocations_pruned": revocations})  # fmt: skip
    return {**broken, "pruned": pruned, "nonces_pruned": nonces,
            "revocations_pruned": revocations, "warned": len(warned), **reverified}  # fmt: skip


def _context(
    settings: Settings, store: Store, outbound: Outbound, worker_pool: WorkerPool | None
) -> Context:
    """The context over these opened resources, with the services the handlers call; the
    wake-up tells serve's worker processes, if any (the worker of this process is attached
    once it runs)."""
    wakeup = Wakeup(*([worker_pool] if worker_pool is not None else []))
    codes = HandshakeCodes(settings.secret_key or "", store)
    return Context(
        settings=settings,
        store=store,
        outbound=outbound,
        limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        wakeup=wakeup,
        publishing=Publishing(store, wakeup),
        management=Management(settings, store, outbound, codes, wakeup, utcnow),
        catalogue=Catalogue(store),
        metrics_dir=worker_pool.metrics_dir if worker_pool is not None else None,
    )


def create_app(
    settings: Settings,
    store: Store | None = None,
    resolver: Resolver | None = None,
    worker_pool: WorkerPool | None = None,
) -> Starlette:
    """The ASGI application for these settings (tests may give a store, and a resolver for
    outbound host names), and the worker processes that serve started, if any: the app tells
    them when new notifications are due, and adds their counters to /metrics."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        policy = AddressPolicy(settings.allowed_callback_networks)
        async with contextlib.AsyncExitStack() as stack:
            chosen = store or store_for_url(
                settings.database_url, pool_size=settings.database_pool_size
            )
            opened = await stack.enter_async_context(chosen)
            # Handshakes and test sends: one pool, a few slots of it per group.
            outbound = await stack.enter_async_context(
                Outbound(
                    policy=policy,
                    resolver=resolver,
                    max_connections=API_MAX_CONNECTIONS,
                    per_group=settings.per_group_handshakes,
                    ca_bundle=settings.ca_bundle,
                )
            )
            ctx = _context(settings, opened, outbound, worker_pool)
            app.state.ctx = ctx
            stop = asyncio.Event()
            background = [asyncio.create_task(_housekeeping(ctx))]
            if settings.run_worker:
                # Its own pool: hanging handshakes must not hold the connections it sends on.
                sending = await stack.enter_async_context(
                    Outbound(policy=policy, resolver=resolver, ca_bundle=settings.ca_bundle)
                )
                worker = Worker(settings, opened, sending)
                ctx.worker = worker
                background.append(asyncio.create_task(worker.run(stop)))
            try:
                yield
            finally:
                stop.set()
                background[0].cancel()
                await asyncio.gather(*background, return_exceptions=True)

    routes = [
        *API_ROUTES,
        Route("/", index, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *docs.ROUTES,
        portal.mount(),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            GatewayError: on_gateway_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
    )
