"""The portal's rule pages: the group's webhook rules (which tables, event types and records
each webhook receives), and creating, changing and deleting one. The form becomes the API's
body (gateway.schemas RuleCreate / RulePatch) and goes through the service the API uses
(gateway.rules: the webhook is the group's, the event type is declared when the catalogue is
enforced), so a refusal is the API's, said on the form, with nothing changed."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.common import context, path_id
from gateway.errors import ValidationError
from gateway.models import EventType, WebhookRule
from gateway.portal.flash import done
from gateway.portal.tokens import PortalRefused, Session
from gateway.portal.web import (
    PREFIX,
    Form,
    PortalEndpoint,
    changing_form,
    page,
    portal_page,
    portal_session,
)
from gateway.schemas import Circumstances, RuleCreate, RulePatch, parse
from gateway.store.base import Query

MOST_LISTED = 500
LISTING = f"{PREFIX}/rules"  # where creating or deleting a rule redirects
FIELDS = ("webhookId", "tableKey", "eventType", "filter")
EVENT_TYPES = {EventType.INSERT: "Insert", EventType.UPDATE: "Update", EventType.DELETE: "Delete"}


async def owned_rule(request: Request, session: Session) -> WebhookRule:
    """The rule the path's {webhookRuleId} names, if the session's group has it; else a 404
    page, as for one that never existed."""
    rule_id = path_id(request, "webhookRuleId")
    rule = await context(request).store.get_rule(session.group_key, rule_id)
    if rule is None:
        raise PortalRefused(404, f"Your group has no webhook rule {rule_id}.",
                            "Go back to the list of rules.")  # fmt: skip
    return rule


def _sent(form: Form, *names: str) -> dict[str, Any]:
    """The API body of the form's fields (an empty filter is none, as in the API)."""
    return {name: (form.get(name) or None) if name == "filter" else form.get(name)
            for name in names}  # fmt: skip


def _errors(exc: ValidationError) -> dict[str, list[str]]:
    """The refusal's messages by form field ("[0].webhookId" -> "webhookId"; others "form")."""
    out: dict[str, list[str]] = {}
    for where, messages in (exc.errors or {"form": [exc.detail]}).items():
        head = re.sub(r"^\[\d+\]\.", "", where).split(".")[0]
        out.setdefault(head if head in FIELDS else "form", []).extend(messages)
    return out


def _shown(rule: WebhookRule | None) -> dict[str, str]:
    if rule is None:
        return {"webhookId": "", "tableKey": "", "eventType": "U", "filter": ""}
    return {"webhookId": str(rule.webhook_id), "tableKey": rule.table_key,
            "eventType": rule.event_type.value, "filter": rule.filter or ""}  # fmt: skip


async def _listing(
    request: Request, session: Session, *, status: int = 200, values: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None, notice: tuple[str, str] | None = None,
) -> Response:  # fmt: skip
    store = context(request).store
    rules = await store.query_rules(session.group_key, Query(page_size=MOST_LISTED))
    hooks = await store.query_webhooks(session.group_key, Query(page_size=MOST_LISTED))
    declared = await store.event_types_of_group(session.group_key)
    return portal_page(
        request, "rules.html", status=status, title="Rules", rules=rules.records,
        total=rules.total_count, hooks=hooks.records,
        names={h.webhook_id: h.name for h in hooks.records},
        tables=sorted({d.table_key for d in declared}), event_types=EVENT_TYPES,
        values=values or _shown(None), errors=errors or {}, notice=notice,
    )  # fmt: skip


@page
async def listing(request: Request) -> Response:
    """The group's rules, and (for a session that may change them) the form for a new one."""
    return await _listing(request, portal_session(request))


@page
async def create(request: Request) -> Response:
    """A new rule from the form, checked as the API's create."""
    session, form = await changing_form(request)
    ctx = context(request)
    now = ctx.clock()
    body = _sent(form, *FIELDS)
    try:
        spec, _ = parse(RuleCreate, body, given=Circumstances(now, ctx.settings))
        [rule] = await ctx.rules.create(session.group_key, session.link_id, [spec], now)
    except ValidationError as exc:
        shown = {name: str(value or "") for name, value in body.items()}
        return await _listing(request, session, status=exc.status, values=shown,
                              errors=_errors(exc), notice=("bad", _fix_words()))  # fmt: skip
    words = f"Rule {rule.webhook_rule_id} created: {rule.table_key} {rule.event_type.value}."
    return done(request, session, LISTING, ("ok", words))


def _fix_words() -> str:
    return "Some fields need fixing (see below). Nothing was changed."


async def _rule_page(
    request: Request, session: Session, rule: WebhookRule, *, status: int = 200,
    values: dict[str, str] | None = None, errors: dict[str, list[str]] | None = None,
    notice: tuple[str, str] | None = None,
) -> Response:  # fmt: skip
    store = context(request).store
    hook = await store.get_webhook(session.group_key, rule.webhook_id)
    declared = await store.event_types_of_group(session.group_key)
    return portal_page(
        request, "rule.html", status=status, title="Rule", rule=rule,
        hook_name=hook.name if hook else str(rule.webhook_id), event_types=EVENT_TYPES,
        tables=sorted({d.table_key for d in declared}), values=values or _shown(rule),
        errors=errors or {}, notice=notice,
    )  # fmt: skip


@page
async def detail(request: Request) -> Response:
    """One rule, and the forms that change or delete it."""
    session = portal_session(request)
    return await _rule_page(request, session, await owned_rule(request, session))


@page
async def edit(request: Request) -> Response:
    """Change a rule's table, event type and filter, checked as the API's PATCH."""
    session, form = await changing_form(request)
    rule = await owned_rule(request, session)
    body = _sent(form, "tableKey", "eventType", "filter")
    try:
        changed = await _patched(request, session, rule, body)
    except ValidationError as exc:
        shown = {**_shown(rule), **{k: str(v or "") for k, v in body.items()}}
        return await _rule_page(request, session, rule, status=exc.status, values=shown,
                                errors=_errors(exc), notice=("bad", _fix_words()))  # fmt: skip
    path = f"{LISTING}/{changed.webhook_rule_id}"
    return done(request, session, path, ("ok", "Saved."))


async def _patched(
    request: Request, session: Session, rule: WebhookRule, body: dict[str, Any]
) -> WebhookRule:
    """The rule with the PATCH body applied and stored (gateway.rules, as the API's update)."""
    ctx = context(request)
    now = ctx.clock()
    spec, given = parse(RulePatch, body, given=Circumstances(now, ctx.settings))
    changed = await ctx.rules.update(rule, session.link_id, spec, given, now)
    if changed is None:
        raise _gone(rule)
    return changed


def _gone(rule: WebhookRule) -> PortalRefused:
    return PortalRefused(404, f"Your group has no webhook rule {rule.webhook_rule_id}.",
                         "Go back to the list of rules.")  # fmt: skip


@page
async def delete(request: Request) -> Response:
    """Delete a rule: its webhook no longer receives what it matched."""
    session, _ = await changing_form(request)
    rule = await owned_rule(request, session)
    if not await context(request).store.delete_rule(session.group_key, rule.webhook_rule_id):
        raise _gone(rule)
    words = f"Rule {rule.webhook_rule_id} deleted: {rule.table_key} {rule.event_type.value}."
    return done(request, session, LISTING, ("ok", words))


PAGES: dict[str, dict[str, PortalEndpoint]] = {
    "/rules": {"GET": listing},
    "/rules/new": {"POST": create},
    "/rules/{webhookRuleId}": {"GET": detail},
    "/rules/{webhookRuleId}/edit": {"POST": edit},
    "/rules/{webhookRuleId}/delete": {"POST": delete},
}
