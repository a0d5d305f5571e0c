"""The Starlette application: routes, problem+json errors, and the lifespan that opens resources."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import __version__, metrics, openapi
from gateway.api import events, history, rules, status, webhooks
from gateway.api.common import Context, json_response
from gateway.config import API_MAX_CONNECTIONS, Settings
from gateway.delivery import Worker
from gateway.errors import GatewayError, RateLimited
from gateway.handshake import HandshakeCodes
from gateway.models import utcnow
from gateway.netguard import AddressPolicy, Resolver
from gateway.outbound import Outbound
from gateway.ratelimit import RateLimiter
from gateway.sender import Sender
from gateway.store import store_for_url
from gateway.store.base import Store

if TYPE_CHECKING:
    from gateway.worker_main import WorkerPool

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"

# The API's routes. Every tenant route is here, so the isolation tests are generated from it.
API_ROUTES = [
    Route("/api/v1/Webhooks", webhooks.create, methods=["POST"]),
    Route("/api/v1/Webhooks/query", webhooks.query, methods=["GET"]),
    Route("/api/v1/Webhooks/{webhookId}", webhooks.retrieve, methods=["GET"]),
    Route("/api/v1/Webhooks/{webhookId}", webhooks.update, methods=["PATCH"]),
    Route("/api/v1/Webhooks/{webhookId}", webhooks.delete, methods=["DELETE"]),
    Route(
        "/api/v1/Webhooks/{webhookId}/regenerate-client-secret",
        webhooks.regenerate_secret,
        methods=["PATCH"],
    ),
    Route("/api/v1/WebhookRules", rules.create, methods=["POST"]),
    Route("/api/v1/WebhookRules/query", rules.query, methods=["GET"]),
    Route("/api/v1/WebhookRules/{webhookRuleId}", rules.retrieve, methods=["GET"]),
    Route("/api/v1/WebhookRules/{webhookRuleId}", rules.update, methods=["PATCH"]),
    Route("/api/v1/WebhookRules/{webhookRuleId}", rules.delete, methods=["DELETE"]),
    Route("/api/v1/Webhooks/{webhookId}/history/query", history.query, methods=["GET"]),
    Route(
        "/api/v1/Webhooks/{webhookId}/history/{webhookHistoryId}/retry",
        history.retry,
        methods=["GET"],
    ),
    Route("/api/v1/Webhooks/{webhookId}/test", history.test_send, methods=["POST"]),
    Route("/api/v1/Events", events.publish, methods=["POST"]),
    Route("/api/v1/Status", status.status, methods=["GET"]),
]


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
    pool = ctx.worker_pool
    body, content_type = metrics.exposition(pool.metrics_dir if pool else None)
    return Response(body, media_type=content_type)


async def openapi_json(request: Request) -> Response:
    """The OpenAPI document describing every endpoint and model."""
    return json_response(openapi.document(__version__))


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


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 as problem+json."""
    assert isinstance(exc, HTTPException)
    response = problem(request, exc.status_code, str(exc.detail), str(exc.detail))
    for key, value in (exc.headers or {}).items():
        response.headers[key] = value
    return response


async def on_unexpected(request: Request, exc: Exception) -> Response:
    """Anything else is a bug: log it, answer 500 problem+json without internals."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(request, 500, "Internal Server Error", "an unexpected error occurred")


async def _housekeeping(ctx: Context) -> None:
    """Periodically make expired webhooks Inactive and prune old successful history."""
    retention = timedelta(days=ctx.settings.history_retention_days)
    while True:
        try:
            now = ctx.clock()
            expired = await ctx.store.expire_webhooks(now, "expired")
            pruned = await ctx.store.prune_history(now - retention)
            if expired or pruned:
                log.info("housekeeping", extra={"expired": expired, "pruned": pruned})
        except GatewayError:
            log.exception("housekeeping failed; trying again next interval")
        await asyncio.sleep(ctx.settings.expiry_sweep_interval)


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
            opened = await stack.enter_async_context(store or store_for_url(settings.database_url))
            # Handshakes and test sends: one pool, a few slots of it per group.
            outbound = await stack.enter_async_context(
                Outbound(
                    policy=policy,
                    resolver=resolver,
                    max_connections=API_MAX_CONNECTIONS,
                    per_group=settings.per_group_handshakes,
                )
            )
            ctx = Context(
                settings=settings,
                store=opened,
                outbound=outbound,
                codes=HandshakeCodes(settings.secret_key or ""),
                limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
                sender=Sender(settings, outbound, opened, utcnow),
                worker_pool=worker_pool,
            )
            app.state.ctx = ctx
            stop = asyncio.Event()
            background = [asyncio.create_task(_housekeeping(ctx))]
            if settings.run_worker:
                # Its own pool: hanging handshakes must not hold the connections it sends on.
                sending = await stack.enter_async_context(
                    Outbound(policy=policy, resolver=resolver)
                )
                ctx.worker = Worker(settings, opened, sending)
                background.append(asyncio.create_task(ctx.worker.run(stop)))
            try:
                yield
            finally:
                stop.set()
                background[0].cancel()
                await asyncio.gather(*background, return_exceptions=True)

    routes = [
        *API_ROUTES,
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
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
