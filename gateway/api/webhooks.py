"""/api/v1/Webhooks: create (with handshake), retrieve, update, delete, new secret, query."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from starlette.requests import Request
from starlette.responses import Response

from gateway import lifecycle, signing, wire
from gateway.api.common import (
    PAGING,
    Context,
    Principal,
    authenticate,
    context,
    filter_param,
    includes,
    json_response,
    operation,
    page_query,
    path_id,
    read_json,
)
from gateway.errors import HandshakeFailed, NotFound, ValidationError
from gateway.filters import fields_of
from gateway.handshake import verify_callback
from gateway.lifecycle import Move, StatusChange
from gateway.models import HttpMethod, Scope, StatusReason, Webhook, WebhookStatus
from gateway.schemas import (
    Circumstances,
    WebhookCreate,
    WebhookPatch,
    check_method_format,
    parse,
    parse_batch,
)
from gateway.store.base import Query, WebhookEdit
from gateway.wire import WEBHOOK_INCLUDES, ActionResultModel, FetchResult, WebhookModel, batch_of

log = logging.getLogger(__name__)


@operation(batch_of(WebhookModel), 400, body=WebhookCreate, batch="max_batch_size")
async def create(request: Request) -> Response:
    """Create one or more webhooks; all pass their handshakes and are stored, or none."""
    principal = await authenticate(request, Scope.WEBHOOKS)
    ctx = context(request)
    now = ctx.clock()
    specs = parse_batch(
        WebhookCreate,
        await read_json(request),
        most=ctx.settings.max_batch_size,
        noun="webhooks",
        given=Circumstances(now, ctx.settings),
    )
    hooks = [_new_webhook(spec, principal, now) for spec in specs]
    await _handshake_all(ctx, hooks)
    await ctx.store.add_webhooks(hooks)
    return json_response([wire.webhook(h, now) for h in hooks])


def _new_webhook(spec: WebhookCreate, who: Principal, now: datetime) -> Webhook:
    """The webhook a create asks for: the body's fields, Active unless it asks to be paused."""
    paused = spec.status_code is WebhookStatus.INACTIVE
    return Webhook(
        **spec.model_dump(exclude={"status_code"}),
        webhook_id=uuid4(),
        group_key=who.group_key,
        status_code=lifecycle.PAUSE.status if paused else WebhookStatus.ACTIVE,
        status_message=lifecycle.PAUSE.status_message if paused else None,
        status_reason=StatusReason.PAUSED if paused else None,
        client_secret=signing.generate_secret(),
        created=now,
        created_user_id=who.api_key_id,
        modified=now,
        modified_user_id=who.api_key_id,
    )


async def _handshake_all(ctx: Context, hooks: list[Webhook]) -> None:
    """Run every handshake at once; any failure fails the batch, naming each failing item."""
    results = await asyncio.gather(*(_handshake(ctx, h) for h in hooks), return_exceptions=True)
    errors: dict[str, list[str]] = {}
    for index, result in enumerate(results):
        if isinstance(result, HandshakeFailed):
            errors[f"[{index}].callbackUrl"] = [result.detail]
        elif isinstance(result, BaseException):
            raise result
    if errors:
        detail = "; ".join(f"item {k[1 : k.index(']')]}: {v[0]}" for k, v in errors.items())
        raise HandshakeFailed(f"callback verification failed: {detail}", errors=errors)


async def _handshake(ctx: Context, hook: Webhook) -> None:
    await _verify(ctx, hook, hook.callback_http_method, hook.callback_url)


async def _verify(ctx: Context, hook: Webhook, method: HttpMethod, url: str) -> None:
    """The handshake against this callback for this webhook, within its group's slots."""
    await verify_callback(
        ctx.outbound,
        ctx.codes,
        hook.webhook_id,
        method.value,
        url,
        group=hook.group_key,
        timeout=ctx.settings.handshake_timeout,
    )


async def _owned(request: Request) -> tuple[Context, Principal, Webhook]:
    principal = await authenticate(request, Scope.WEBHOOKS)
    ctx = context(request)
    webhook_id = path_id(request, "webhookId")
    hook = await ctx.store.get_webhook(principal.group_key, webhook_id)
    if hook is None:
        raise NotFound(f"no webhook {webhook_id}")
    return ctx, principal, hook


@operation(WebhookModel, 400, 404, query=("include",), includes=WEBHOOK_INCLUDES)
async def retrieve(request: Request) -> Response:
    """One webhook, with its rules when include=WebhookRules."""
    ctx, principal, hook = await _owned(request)
    rules = None
    if includes(request, WEBHOOK_INCLUDES):
        found = await ctx.store.rules_for_webhooks(principal.group_key, [hook.webhook_id])
        rules = found.get(hook.webhook_id, [])
    return json_response(wire.webhook(hook, ctx.clock(), rules))


@operation(WebhookModel, 400, 404, 409, body=WebhookPatch)
async def update(request: Request) -> Response:
    """Change the given properties; a new callback, a reactivation or the renewal of an expired
    webhook passes a handshake first. Only the named properties are written, and the answer is
    the webhook as stored after the change."""
    ctx, principal, hook = await _owned(request)
    now = ctx.clock()
    body = await read_json(request)
    spec, given = parse(WebhookPatch, body, given=Circumstances(now, ctx.settings))
    values = {name: getattr(spec, name) for name in given - {"status_code"}}
    method = values.get("callback_http_method", hook.callback_http_method)
    url = values.get("callback_url", hook.callback_url)
    content = values.get("request_content_type", hook.request_content_type)
    try:
        check_method_format(method, content)
    except ValueError as exc:
        raise ValidationError.field("requestContentType", str(exc)) from exc
    plan = lifecycle.plan_patch(
        hook,
        spec.status_code,
        now=now,
        expiration=values.get("expiration_date", hook.expiration_date),
        renews="expiration_date" in values,
        moves=(url, method) != (hook.callback_url, hook.callback_http_method),
    )
    if plan.handshake:
        await _verify(ctx, hook, method, url)
    values.update(modified=now, modified_user_id=principal.api_key_id)
    edit = WebhookEdit(values, _relied_on(hook, values, plan.handshake), plan.change)
    changed = await ctx.store.edit_webhook(principal.group_key, hook.webhook_id, edit, now)
    if changed is None:
        raise NotFound(f"no webhook {hook.webhook_id}")
    if plan.change is not None:
        _changed_status(ctx, changed, plan.change)
    return json_response(wire.webhook(changed, ctx.clock()))


def _relied_on(hook: Webhook, values: dict[str, Any], verified: bool) -> dict[str, Any]:
    """The stored values this PATCH decided on without setting them, which must still hold
    when it writes: the method and content type checked together, and the callback a
    handshake verified. A concurrent change of them makes the PATCH a 409, not a webhook
    whose callback nobody verified."""
    relied = set()
    if ("callback_http_method" in values) != ("request_content_type" in values):
        relied |= {"callback_http_method", "request_content_type"}
    if verified:
        relied |= {"callback_url", "callback_http_method"}
    return {name: getattr(hook, name) for name in sorted(relied - set(values))}


def _changed_status(ctx: Context, hook: Webhook, change: StatusChange) -> None:
    """Tell the workers and the log about an owner's change of status."""
    ctx.webhook_changed(hook.webhook_id)
    if change.move is Move.RELEASE:
        ctx.wake_workers()  # its parked notifications are due now
    verb = "reactivated" if change.move is Move.RELEASE else "paused"
    log.info(f"webhook {verb}", extra={
        "webhook_id": str(hook.webhook_id), "group_key": str(hook.group_key),
        "status_code": hook.status_code.value, "reason": hook.status_message,
    })  # fmt: skip


@operation(ActionResultModel, 404)
async def delete(request: Request) -> Response:
    """Delete a webhook with its rules and history."""
    ctx, principal, hook = await _owned(request)
    if not await ctx.store.delete_webhook(principal.group_key, hook.webhook_id):
        raise NotFound(f"no webhook {hook.webhook_id}")
    return json_response(ActionResultModel(messages=[f"Webhook {hook.webhook_id} deleted"]).wire())


@operation(WebhookModel, 404)
async def regenerate_secret(request: Request) -> Response:
    """A new client secret; the old one keeps signing for the grace period."""
    ctx, principal, hook = await _owned(request)
    now = ctx.clock()
    grace = timedelta(seconds=ctx.settings.secret_grace_period)
    changed = await ctx.store.regenerate_secret(
        principal.group_key,
        hook.webhook_id,
        signing.generate_secret(),
        now + grace,
        now,
        principal.api_key_id,
    )
    if changed is None:
        raise NotFound(f"no webhook {hook.webhook_id}")
    ctx.webhook_changed(hook.webhook_id)
    log.info("client secret regenerated", extra={
        "webhook_id": str(hook.webhook_id), "group_key": str(hook.group_key),
        "previous_secret_until": (now + grace).isoformat(),
    })  # fmt: skip
    return json_response(wire.webhook(changed, now))


async def expire_due(ctx: Context) -> list[Webhook]:
    """Make the webhooks whose expirationDate has passed Inactive (the status readers already
    see), park their notifications, and log each."""
    expired = await ctx.store.expire_webhooks(ctx.clock())
    for hook in expired:
        ctx.webhook_changed(hook.webhook_id)
        log.info("webhook expired", extra={
            "webhook_id": str(hook.webhook_id), "group_key": str(hook.group_key),
            "status_code": hook.status_code.value, "reason": hook.status_message,
        })  # fmt: skip
    return expired


@operation(FetchResult[WebhookModel], 400, query=("include", *PAGING), includes=WEBHOOK_INCLUDES)
async def query(request: Request) -> Response:
    """Filter, order and page this group's webhooks."""
    principal = await authenticate(request, Scope.WEBHOOKS)
    ctx = context(request)
    node = filter_param(request, WebhookModel.queryable().keys())
    wanted = includes(request, WEBHOOK_INCLUDES)
    q = page_query(request, node)
    if _reads_status(q):
        # Rows are swept to Inactive only periodically, but every reader must see an expired
        # webhook as Inactive: sweep now, so the filter and order agree with the records.
        await expire_due(ctx)
    page = await ctx.store.query_webhooks(principal.group_key, q)
    rules: dict[UUID, Any] = {}
    if wanted:
        ids = [h.webhook_id for h in page.records]
        rules = await ctx.store.rules_for_webhooks(principal.group_key, ids)
    now = ctx.clock()
    records = [
        wire.webhook(h, now, rules.get(h.webhook_id, []) if wanted else None) for h in page.records
    ]
    return json_response(wire.fetch_result(records, page.total_count, q.page_size, q.page_number))


_STATUS_FIELDS = {"statuscode", "statusmessage", "modified"}


def _reads_status(query: Query) -> bool:
    """Whether a query's filter or order looks at what expiry changes."""
    ordered = (query.order or "").lower()
    return bool(fields_of(query.filter) & _STATUS_FIELDS) or any(
        name in ordered for name in _STATUS_FIELDS
    )
