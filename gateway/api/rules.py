"""/api/v1/WebhookRules: which tables, event types and records each webhook receives."""

from __future__ import annotations

import dataclasses
from uuid import uuid4

from starlette.requests import Request
from starlette.responses import Response

from gateway import filters, wire
from gateway.api.common import (
    Context,
    Principal,
    authenticate,
    context,
    filter_param,
    json_response,
    page_query,
    path_id,
    read_json,
)
from gateway.errors import NotFound, ValidationError
from gateway.models import Scope, WebhookRule
from gateway.schemas import RuleCreate, RulePatch, parse
from gateway.store.base import RULE_FIELDS


def _check_rule_filter(ctx: Context, text: str | None, field: str) -> None:
    """Rule filters run against arbitrary records, so only their syntax is checked here."""
    if text:
        try:
            filters.parse_filter(
                text,
                max_length=ctx.settings.max_filter_length,
                max_depth=ctx.settings.max_filter_depth,
            )
        except ValidationError as exc:
            raise ValidationError.field(field, exc.detail) from exc


async def create(request: Request) -> Response:
    """Create one or more rules, all or none."""
    principal = await authenticate(request, Scope.WEBHOOKS)
    ctx = context(request)
    body = await read_json(request)
    items = body if isinstance(body, list) else [body]
    if not items or len(items) > ctx.settings.max_batch_size:
        raise ValidationError.field(
            "body", f"send between 1 and {ctx.settings.max_batch_size} rules"
        )
    rules = [await _new_rule(ctx, principal, item, i) for i, item in enumerate(items)]
    await ctx.store.add_rules(rules)
    return json_response([wire.rule(r) for r in rules])


async def _new_rule(ctx: Context, who: Principal, item: object, index: int) -> WebhookRule:
    spec, _ = parse(RuleCreate, item, where=f"[{index}].")
    _check_rule_filter(ctx, spec.filter, f"[{index}].filter")
    if await ctx.store.get_webhook(who.group_key, spec.webhookId) is None:
        raise ValidationError.field(f"[{index}].webhookId", f"no webhook {spec.webhookId}")
    now = ctx.clock()
    return WebhookRule(
        webhook_rule_id=uuid4(),
        webhook_id=spec.webhookId,
        group_key=who.group_key,
        table_key=spec.tableKey,
        event_type=spec.eventType,
        filter=spec.filter or None,
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


async def retrieve(request: Request) -> Response:
    """One rule."""
    _, _, rule = await _owned(request)
    return json_response(wire.rule(rule))


async def update(request: Request) -> Response:
    """Change the given properties of a rule."""
    ctx, principal, rule = await _owned(request)
    spec, given = parse(RulePatch, await read_json(request))
    for name in given - {"filter"}:
        if getattr(spec, name) is None:
            raise ValidationError.field(name, "cannot be null")
    _check_rule_filter(ctx, spec.filter, "filter")
    changed = dataclasses.replace(
        rule,
        table_key=spec.tableKey if "tableKey" in given and spec.tableKey else rule.table_key,
        event_type=spec.eventType if "eventType" in given and spec.eventType else rule.event_type,
        filter=(spec.filter or None) if "filter" in given else rule.filter,
        modified=ctx.clock(),
        modified_user_id=principal.api_key_id,
    )
    if not await ctx.store.update_rule(changed):
        raise NotFound(f"no webhook rule {rule.webhook_rule_id}")
    return json_response(wire.rule(changed))


async def delete(request: Request) -> Response:
    """Delete a rule."""
    ctx, principal, rule = await _owned(request)
    if not await ctx.store.delete_rule(principal.group_key, rule.webhook_rule_id):
        raise NotFound(f"no webhook rule {rule.webhook_rule_id}")
    return json_response({"messages": [f"WebhookRule {rule.webhook_rule_id} deleted"]})


async def query(request: Request) -> Response:
    """Filter, order and page this group's rules."""
    principal = await authenticate(request, Scope.WEBHOOKS)
    ctx = context(request)
    q = page_query(request, filter_param(request, RULE_FIELDS.keys()))
    page = await ctx.store.query_rules(principal.group_key, q)
    records = [wire.rule(r) for r in page.records]
    return json_response(wire.fetch_result(records, page.total_count, q.page_size, q.page_number))
