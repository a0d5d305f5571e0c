"""/api/v1/WebhookRules: which tables, event types and records each webhook receives."""

from __future__ import annotations

import functools

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
    owned,
    read_batch,
    read_patch,
)
from gateway.errors import NotFound
from gateway.models import Scope, WebhookRule
from gateway.schemas import RuleCreate, RulePatch
from gateway.wire import ActionResultModel, FetchResult, WebhookRuleModel, batch_of


@operation(batch_of(WebhookRuleModel), 400, body=RuleCreate, batch="max_batch_size")
async def create(request: Request) -> Response:
    """Create one or more rules, all or none."""
    principal = await authenticate(request, Scope.WEBHOOKS)
    ctx = context(request)
    now = ctx.clock()
    specs = await read_batch(request, RuleCreate, "rules", now)
    rules = await ctx.rules.create(principal.group_key, principal.api_key_id, specs, now)
    return json_response([wire.rule(r) for r in rules])


async def _owned(request: Request) -> tuple[Context, Principal, WebhookRule]:
    principal = await authenticate(request, Scope.WEBHOOKS)
    ctx = context(request)
    rule = await owned(request, principal, "webhookRuleId", "webhook rule", ctx.store.get_rule)
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
    spec, given = await read_patch(request, RulePatch, now)
    changed = await ctx.rules.update(rule, principal.api_key_id, spec, given, now)
    if changed is None:
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
