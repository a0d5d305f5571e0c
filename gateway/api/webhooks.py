"""/api/v1/Webhooks: create (with handshake), retrieve, update, delete, new secret, query."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from starlette.requests import Request
from starlette.responses import Response

from gateway import lifecycle, signing, wire
from gateway.api.common import (
    Context,
    Principal,
    authenticate,
    context,
    filter_param,
    includes,
    json_response,
    page_query,
    path_id,
    read_json,
)
from gateway.errors import NotFound, ValidationError
from gateway.filters import fields_of
from gateway.models import ContentType, HttpMethod, Scope, StatusReason, Webhook, WebhookStatus
from gateway.schemas import WebhookCreate, WebhookPatch, parse
from gateway.store.base import WEBHOOK_FIELDS, Query

WEBHOOK_INCLUDES = {"webhookrules": "WebhookRules"}
# PATCH may clear these with null; the others are required and cannot be null.
NULLABLE = {"expirationDate", "partitionKey"}
# PATCH properties that are plain columns: wire name -> Webhook field.
PATCHABLE = {
    "name": "name",
    "requestContentType": "request_content_type",
    "callbackHttpMethod": "callback_http_method",
    "callbackUrl": "callback_url",
    "retryCount": "retry_count",
    "partitionKey": "partition_key",
    "expirationDate": "expiration_date",
}


async def create(request: Request) -> Response:
    """Create one or more webhooks; all pass their handshakes and are stored, or none."""
    principal = await authenticate(request, Scope.WEBHOOKS)
    ctx = context(request)
    body = await read_json(request)
    items = body if isinstance(body, list) else [body]
    if not items or len(items) > ctx.settings.max_batch_size:
        raise ValidationError.field(
            "body", f"send between 1 and {ctx.settings.max_batch_size} webhooks"
        )
    now = ctx.clock()
    hooks = [
        _new_webhook(parse(WebhookCreate, item, where=f"[{i}].")[0], principal, ctx, i)
        for i, item in enumerate(items)
    ]
    await ctx.management.create(hooks)
    return json_response([wire.webhook(h, now) for h in hooks])


def _new_webhook(spec: WebhookCreate, who: Principal, ctx: Context, index: int) -> Webhook:
    now = ctx.clock()
    _check_method_format(spec.callbackHttpMethod, spec.requestContentType, f"[{index}].")
    if spec.expirationDate is not None and spec.expirationDate <= now:
        raise ValidationError.field(f"[{index}].expirationDate", "must be in the future")
    if spec.statusCode is WebhookStatus.ERRORED:
        raise ValidationError.field(f"[{index}].statusCode", "Errored is set by the gateway")
    paused = spec.statusCode is WebhookStatus.INACTIVE
    return Webhook(
        webhook_id=uuid4(),
        group_key=who.group_key,
        name=spec.name,
        status_code=lifecycle.PAUSE.status if paused else WebhookStatus.ACTIVE,
        status_message=lifecycle.PAUSE.status_message if paused else None,
        status_reason=StatusReason.PAUSED if paused else None,
        client_secret=signing.generate_secret(),
        request_content_type=spec.requestContentType,
        callback_http_method=spec.callbackHttpMethod,
        callback_url=spec.callbackUrl,
        expiration_date=spec.expirationDate,
        retry_count=spec.retryCount,
        created=now,
        created_user_id=who.api_key_id,
        modified=now,
        modified_user_id=who.api_key_id,
        partition_key=spec.partitionKey,
    )


def _check_method_format(method: HttpMethod, content: ContentType, where: str = "") -> None:
    if method is HttpMethod.GET and content is ContentType.FULL:
        raise ValidationError.field(
            f"{where}requestContentType", "a GET webhook carries no body, so it must use Id"
        )


async def _owned(request: Request) -> tuple[Context, Principal, Webhook]:
    principal = await authenticate(request, Scope.WEBHOOKS)
    ctx = context(request)
    webhook_id = path_id(request, "webhookId")
    hook = await ctx.store.get_webhook(principal.group_key, webhook_id)
    if hook is None:
        raise NotFound(f"no webhook {webhook_id}")
    return ctx, principal, hook


async def retrieve(request: Request) -> Response:
    """One webhook, with its rules when include=WebhookRules."""
    ctx, principal, hook = await _owned(request)
    rules = None
    if includes(request, WEBHOOK_INCLUDES):
        found = await ctx.store.rules_for_webhooks(principal.group_key, [hook.webhook_id])
        rules = found.get(hook.webhook_id, [])
    return json_response(wire.webhook(hook, ctx.clock(), rules))


async def update(request: Request) -> Response:
    """Change the given properties; a new callback, a reactivation or the renewal of an expired
    webhook passes a handshake first. Only the named properties are written, and the answer is
    the webhook as stored after the change."""
    ctx, principal, hook = await _owned(request)
    spec, given = parse(WebhookPatch, await read_json(request))
    for name in given - NULLABLE:
        if getattr(spec, name) is None:
            raise ValidationError.field(name, "cannot be null")
    now = ctx.clock()
    values = _patched(spec, given, now)
    _check_method_format(
        values.get("callback_http_method", hook.callback_http_method),
        values.get("request_content_type", hook.request_content_type),
    )
    changed = await ctx.management.patch(hook, values, spec.statusCode, principal.api_key_id, now)
    return json_response(wire.webhook(changed, ctx.clock()))


def _patched(spec: WebhookPatch, given: set[str], now: datetime) -> dict[str, Any]:
    """The columns a PATCH names, with their new values."""
    if "expirationDate" in given and spec.expirationDate is not None:
        if spec.expirationDate <= now:
            raise ValidationError.field("expirationDate", "must be in the future")
    return {attr: getattr(spec, name) for name, attr in PATCHABLE.items() if name in given}


async def delete(request: Request) -> Response:
    """Delete a webhook with its rules and history."""
    ctx, principal, hook = await _owned(request)
    if not await ctx.store.delete_webhook(principal.group_key, hook.webhook_id):
        raise NotFound(f"no webhook {hook.webhook_id}")
    return json_response({"messages": [f"Webhook {hook.webhook_id} deleted"]})


async def regenerate_secret(request: Request) -> Response:
    """A new client secret; the old one keeps signing for the grace period."""
    ctx, principal, hook = await _owned(request)
    now = ctx.clock()
    changed = await ctx.management.rotate_secret(hook, principal.api_key_id, now)
    return json_response(wire.webhook(changed, now))


async def expire_due(ctx: Context) -> list[Webhook]:
    """Make the webhooks whose expirationDate has passed Inactive (Management.expire_due)."""
    return await ctx.management.expire_due()


async def query(request: Request) -> Response:
    """Filter, order and page this group's webhooks."""
    principal = await authenticate(request, Scope.WEBHOOKS)
    ctx = context(request)
    node = filter_param(request, WEBHOOK_FIELDS.keys())
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
