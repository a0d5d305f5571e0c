"""/api/v1/WebhookRules: which tables, event types and records each webhook receives."""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime
from uuid import UUID, uuid4

from starlette.requests import Request
from starlette.responses import Response

from gateway import wire
from gateway.api.common import (
    PAGING,
    Context,
    Principal,
    answer_page,
    authenticate,
    context,
    json_response,
    operation,
    path_id,
    read_json,
)
from gateway.errors import NotFound, ValidationError
from gateway.models import Scope, WebhookRule
from gateway.schemas import Circumstances, RuleCreate, RuleFields, RulePatch, parse, parse_batch
from gateway.wire import ActionResultModel, FetchResult, WebhookRuleModel, batch_of


@operation(batch_of(WebhookRuleModel), 400, body=RuleCreate, batch="max_batch_size")
async def create(request: Request) -> Response:
    """Create one or more rules, all or none."""
    principal = await authenticate(request, Scope.WEBHOOKS)
    ctx = context(request)
    now = ctx.clock()
    specs = parse_batch(
        RuleCreate,
        await read_json(request),
        most=ctx.settings.max_batch_size,
        noun="rules",
        given=Circumstances(now, ctx.settings),
    )
    rules = [await _new_rule(ctx, principal, spec, i, now) for i, spec in enumerate(specs)]
    await ctx.store.add_rules(rules)
    return json_response([wire.rule(r) for r in rules])


async def _new_rule(
    ctx: Context, who: Principal, spec: RuleCreate, index: int, now: datetime
) -> WebhookRule:
    if await ctx.store.get_webhook(who.group_key, spec.webhook_id) is None:
        raise ValidationError.field(f"[{index}].webhookId", f"no webhook {spec.webhook_id}")
    return await new_rule(ctx, who, spec, spec.webhook_id, now, where=f"[{index}].")


async def new_rule(
    ctx: Context, who: Principal, spec: RuleFields, webhook_id: UUID, now: datetime, *, where: str
) -> WebhookRule:
    """The rule a create asks for, of this webhook (one of the caller's group, or one its
    create is making); with enforcement on, its event type must be declared (a 400 naming
    `where` + eventType)."""
    if ctx.settings.enforce_event_types:
        field = f"{where}eventType"
        await ctx.catalogue.check_declared(who.group_key, spec.table_key, spec.event_type, field)
    return WebhookRule(
        webhook_id=webhook_id,
        table_key=spec.table_key,
        event_type=spec.event_type,
        filter=spec.filter or None,
        webhook_rule_id=uuid4(),
        group_key=who.group_key,
        created=now,
        created_user_id=who.api_key_id,
        modified=now,
        modified_user_id=who.api_key_id,
    )


async def _owned(request: Request) -> tuple[Context, Principal, WebhookRule]:
    principal = await authenticate(request, Scope.WEBHOOKS)
    ctx = context(request)
    rule_id = path_id(request, "webhookRuleId")
    rule = await ctx.store.get_rule(principal.group_key, rule_id)
    if rule is None:
        raise NotFound(f"no webhook rule {rule_id}")
    return ctx, principal, rule


@operation(WebhookRuleModel, 404)
async def retrieve(request: Request) -> Response:
    """One rule."""
    _, _, rule = await _owned(request)
    return json_response(wire.rule(rule))


@operation(WebhookRuleModel, 400, 404, body=RulePatch)
async def update(request: Request) -> Response:
    """Change the given properties of a rule."""
    ctx, principal, rule = await _owned(request)
    now = ctx.clock()
    spec, given = parse(RulePatch, await read_json(request), given=Circumstances(now, ctx.settings))
    changes = {name: getattr(spec, name) for name in given}
    if "filter" in changes:
        changes["filter"] = spec.filter or None  # an empty filter is none
    changed = dataclasses.replace(
        rule, **changes, modified=now, modified_user_id=principal.api_key_id
    )
    if ctx.settings.enforce_event_types and {"table_key", "event_type"} & given:
        await ctx.catalogue.check_declared(
            principal.group_key, changed.table_key, changed.event_type, "eventType"
        )
    if not await ctx.store.update_rule(changed):
        raise NotFound(f"no webhook rule {rule.webhook_rule_id}")
    return json_response(wire.rule(changed))


@operation(ActionResultModel, 404)
async def delete(request: Request) -> Response:
    """Delete a rule."""
    ctx, principal, rule = await _owned(request)
    if not await ctx.store.delete_rule(principal.group_key, rule.webhook_rule_id):
        raise NotFound(f"no webhook rule {rule.webhook_rule_id}")
    return json_response(
        ActionResultModel(messages=[f"WebhookRule {rule.webhook_rule_id} deleted"]).wire()
    )


@operation(FetchResult[WebhookRuleModel], 400, query=PAGING)
async def query(request: Request) -> Response:
    """Filter, order and page this group's rules."""
    principal = await authenticate(request, Scope.WEBHOOKS)
    listed = functools.partial(context(request).store.query_rules, principal.group_key)
    return await answer_page(request, WebhookRuleModel.queryable(), listed, wire.rule)
