"""/api/v1/Webhooks: create (with handshake), retrieve, update, delete, new secret, query."""

from __future__ import annotations

from datetime import datetime
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
    owned,
    page_query,
    read_batch,
    read_patch,
)
from gateway.errors import NotFound
from gateway.filters import fields_of
from gateway.models import Scope, StatusReason, Webhook, WebhookRule, WebhookStatus
from gateway.schemas import (
    WebhookBody,
    WebhookCreate,
    WebhookPatch,
    checked_against,
)
from gateway.store.base import Query
from gateway.wire import WEBHOOK_INCLUDES, ActionResultModel, FetchResult, WebhookModel, batch_of


@operation(batch_of(WebhookModel), 400, 409, body=WebhookCreate, batch="max_batch_size")
async def create(request: Request) -> Response:
    """Create one or more webhooks, each with the rules it lists (webhookRules); all pass
    their handshakes and are stored with their rules, or none (a 409 if the group would pass
    the operator's max_webhooks_per_group)."""
    principal = await authenticate(request, Scope.WEBHOOKS)
    ctx = context(request)
    now = ctx.clock()
    specs = await read_batch(request, WebhookCreate, "webhooks", now)
    hooks = [new_webhook(spec, principal, now) for spec in specs]
    rules = {hook.webhook_id: await _new_rules(ctx, principal, spec, hook, f"[{i}].", now)
             for i, (spec, hook) in enumerate(zip(specs, hooks, strict=True))}  # fmt: skip
    await ctx.management.create(hooks, [r for made in rules.values() for r in made or ()])
    # Each answer lists the rules its item gave (as include=WebhookRules lists them), and
    # none if it gave none: then it reads as a GET of the webhook does.
    return json_response([wire.webhook(h, now, rules[h.webhook_id]) for h in hooks])


async def _new_rules(
    ctx: Context, who: Principal, spec: Any, hook: Webhook, where: str, now: datetime
) -> list[WebhookRule] | None:
    """The rules a create lists with a webhook (webhookRules; None if it gives none), each as
    POST WebhookRules makes one; an error names its place ("[0].webhookRules.1.eventType")."""
    if spec.webhook_rules is None:
        return None
    return [
        await ctx.rules.new(
            who.group_key,
            who.api_key_id,
            given,
            hook.webhook_id,
            now,
            where=f"{where}webhookRules.{j}.",
        )
        for j, given in enumerate(spec.webhook_rules)
    ]


def new_webhook(spec: WebhookBody, who: Principal, now: datetime) -> Webhook:
    """The webhook a create asks for: the body's fields with what its signature scheme needs
    (gateway.signing.scheme_fields), Active unless it asks to be paused."""
    paused = spec.status_code is WebhookStatus.INACTIVE
    values = spec.written()
    values |= signing.scheme_fields(values["signature_scheme"], values["signature_header"])
    return Webhook(
        **values,
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


async def _owned(request: Request) -> tuple[Context, Principal, Webhook]:
    principal = await authenticate(request, Scope.WEBHOOKS)
    ctx = context(request)
    hook = await owned(request, principal, "webhookId", "webhook", ctx.store.get_webhook)
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
    spec, given = await read_patch(request, WebhookPatch, now)
    values = checked_against(hook, spec.written(given))
    changed = await ctx.management.patch(hook, values, spec.status_code, principal.api_key_id, now)
    return json_response(wire.webhook(changed, ctx.clock()))


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
    changed = await ctx.management.rotate_secret(hook, principal.api_key_id, now)
    return json_response(wire.webhook(changed, now))


async def expire_due(ctx: Context) -> list[Webhook]:
    """Make the webhooks whose expirationDate has passed Inactive (Management.expire_due)."""
    return await ctx.management.expire_due()


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
