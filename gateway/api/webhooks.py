"""/api/v1/Webhooks: create (with handshake), retrieve, update, delete, new secret, query."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
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
from gateway.errors import HandshakeFailed, NotFound, ValidationError
from gateway.filters import fields_of
from gateway.handshake import verify_callback
from gateway.models import ContentType, HttpMethod, Scope, Webhook, WebhookStatus
from gateway.schemas import WebhookCreate, WebhookPatch, parse
from gateway.store.base import WEBHOOK_FIELDS, Query

WEBHOOK_INCLUDES = {"webhookrules": "WebhookRules"}
# PATCH may clear these with null; the others are required and cannot be null.
NULLABLE = {"expirationDate", "partitionKey"}


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
    await _handshake_all(ctx, hooks)
    await ctx.store.add_webhooks(hooks)
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
        status_code=WebhookStatus.INACTIVE if paused else WebhookStatus.ACTIVE,
        status_message="paused by owner" if paused else None,
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
    await verify_callback(
        ctx.outbound,
        ctx.codes,
        hook.webhook_id,
        hook.callback_http_method.value,
        hook.callback_url,
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


async def retrieve(request: Request) -> Response:
    """One webhook, with its rules when include=WebhookRules."""
    ctx, principal, hook = await _owned(request)
    rules = None
    if includes(request, WEBHOOK_INCLUDES):
        found = await ctx.store.rules_for_webhooks(principal.group_key, [hook.webhook_id])
        rules = found.get(hook.webhook_id, [])
    return json_response(wire.webhook(hook, ctx.clock(), rules))


async def update(request: Request) -> Response:
    """Change the given properties; a new callback or a reactivation passes a handshake first."""
    ctx, principal, hook = await _owned(request)
    body = await read_json(request)
    spec, given = parse(WebhookPatch, body)
    for name in given - NULLABLE:
        if getattr(spec, name) is None:
            raise ValidationError.field(name, "cannot be null")
    changed, release = _apply_patch(ctx, hook, spec, given)
    changed = dataclasses.replace(
        changed, modified=ctx.clock(), modified_user_id=principal.api_key_id
    )
    if _needs_handshake(hook, changed, release):
        await _handshake(ctx, changed)
    if not await ctx.store.update_webhook(changed, release_parked=release):
        raise NotFound(f"no webhook {hook.webhook_id}")
    return json_response(wire.webhook(changed, ctx.clock()))


def _apply_patch(
    ctx: Context, hook: Webhook, spec: WebhookPatch, given: set[str]
) -> tuple[Webhook, bool]:
    now = ctx.clock()
    values: dict[str, Any] = {}
    simple = {
        "name": "name",
        "requestContentType": "request_content_type",
        "callbackHttpMethod": "callback_http_method",
        "callbackUrl": "callback_url",
        "retryCount": "retry_count",
        "partitionKey": "partition_key",
    }
    for wire_name, attr in simple.items():
        if wire_name in given:
            values[attr] = getattr(spec, wire_name)
    if "expirationDate" in given:
        if spec.expirationDate is not None and spec.expirationDate <= now:
            raise ValidationError.field("expirationDate", "must be in the future")
        values["expiration_date"] = spec.expirationDate
    changed = dataclasses.replace(hook, **values)
    _check_method_format(changed.callback_http_method, changed.request_content_type)
    if spec.statusCode is None:
        return changed, False
    plan = lifecycle.plan_status_change(
        hook, spec.statusCode, now=now, new_expiration=changed.expiration_date
    )
    changed = dataclasses.replace(
        changed, status_code=plan.status, status_message=plan.status_message
    )
    if plan.release_parked:
        changed = dataclasses.replace(changed, failure_count=0)
    return changed, plan.release_parked


def _needs_handshake(before: Webhook, after: Webhook, reactivating: bool) -> bool:
    moved = (before.callback_url, before.callback_http_method) != (
        after.callback_url,
        after.callback_http_method,
    )
    return reactivating or moved


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
    grace = timedelta(seconds=ctx.settings.secret_grace_period)
    changed = dataclasses.replace(
        hook,
        client_secret=signing.generate_secret(),
        previous_secret=hook.client_secret,
        previous_secret_expires=now + grace,
        modified=now,
        modified_user_id=principal.api_key_id,
    )
    if not await ctx.store.update_webhook(changed):
        raise NotFound(f"no webhook {hook.webhook_id}")
    return json_response(wire.webhook(changed, now))


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
        await ctx.store.expire_webhooks(ctx.clock(), "expired")
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
