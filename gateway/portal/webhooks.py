"""The portal's webhook pages: the group's webhooks, one webhook, and what a partner does to
them (create, edit, pause and resume, rotate the secret), each through the same services as
the API: gateway.schemas parses the form as the API's body, ctx.management runs the handshake
and writes."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway import wire
from gateway.api.common import Principal, context, path_id
from gateway.api.webhooks import new_webhook
from gateway.errors import Conflict, GatewayError, HandshakeFailed, ValidationError
from gateway.models import (
    DeliveryOrder,
    Notification,
    NotificationState,
    Scope,
    StatusReason,
    Webhook,
    WebhookStatus,
)
from gateway.portal import webhook_forms as forms
from gateway.portal.flash import done
from gateway.portal.tokens import PortalRefused, Session
from gateway.portal.web import (
    PREFIX,
    PortalEndpoint,
    changing_form,
    page,
    portal_page,
    portal_session,
)
from gateway.schemas import Circumstances, WebhookCreate, WebhookPatch, checked_against, parse
from gateway.store.base import Query

MOST_LISTED = 500
METHODS = ("POST", "PUT", "PATCH", "GET")
CONTENT_TYPES = ("Full", "Id")
SCHEMES = ("StandardWebhooks", "StandardWebhooksEd25519", "HmacSha256Hex", "HmacSha512Base64")
ORDERS = tuple(order.value for order in DeliveryOrder)


@page
async def listing(request: Request) -> Response:
    """The group's webhooks: status, status message, callback, method, content type, expiry
    and last delivery."""
    session = portal_session(request)
    ctx = context(request)
    await ctx.management.expire_due()  # every reader sees an expired webhook as Inactive
    found = await ctx.store.query_webhooks(session.group_key, Query(page_size=MOST_LISTED))
    now = ctx.clock()
    rows = [(wire.webhook(h, now), await _last_delivery(request, h)) for h in found.records]
    return portal_page(request, "webhooks.html", title="Webhooks", rows=rows)


async def _last_delivery(request: Request, hook: Webhook) -> dict[str, Any] | None:
    """The webhook's latest history entry, as the API's history shows it, if any."""
    q = Query(order="timestamp desc", page_size=1)
    found = await context(request).store.query_history(hook.group_key, hook.webhook_id, q)
    return history_entry(found.records[0]) if found.records else None


def history_entry(
    row: Notification, include: Collection[str] = (), limit: int = 0
) -> dict[str, Any]:
    """A history entry as the API shows it, and whether it waits behind an earlier
    notification of its Strict webhook (`waitingBehind`), which the page says in words."""
    entry = wire.history(row, include, None, limit)
    return {**entry, "waitingBehind": row.state is NotificationState.WAITING}


async def owned_webhook(request: Request, session: Session) -> Webhook:
    """The webhook the path names, if the session's group has it; else a 404 page, as for one
    that never existed."""
    webhook_id = path_id(request, "webhookId")
    hook = await context(request).store.get_webhook(session.group_key, webhook_id)
    if hook is None:
        raise PortalRefused(404, f"Your group has no webhook {webhook_id}.",
                            "Go back to the list of webhooks.")  # fmt: skip
    return hook


async def webhook_page(
    request: Request, hook: Webhook, *, status: int = 200, **shown: Any
) -> Response:
    """A webhook's page (its facts and, for a session that may change it, its forms); `shown`
    adds a notice (kind, words), a secret shown once, a test send's result, form values and
    errors."""
    ctx = context(request)
    auths = await ctx.store.query_authentications(hook.group_key, Query(page_size=MOST_LISTED))
    defaults: dict[str, Any] = {"notice": None, "secret": None, "errors": {}, "tested": None,
                                "values": forms.shown(hook)}  # fmt: skip
    return portal_page(
        request, "webhook.html", status=status, title=hook.name, hook=hook,
        view=wire.webhook(hook, ctx.clock()), last=await _last_delivery(request, hook),
        expired=_expired(hook, ctx.clock()),
        authentications=auths.records, **_choices(), **{**defaults, **shown},
    )  # fmt: skip


def _expired(hook: Webhook, now: datetime) -> bool:
    """Whether it stopped because its date passed (a new date, not a resume, renews it)."""
    past = hook.expiration_date is not None and hook.expiration_date <= now
    return past or hook.status_reason is StatusReason.EXPIRED


def _choices() -> dict[str, Any]:
    return {"methods": METHODS, "content_types": CONTENT_TYPES, "schemes": SCHEMES,
            "orders": ORDERS}  # fmt: skip


@page
async def detail(request: Request) -> Response:
    """One webhook: everything about it, and the forms that change it."""
    session = portal_session(request)
    return await webhook_page(request, await owned_webhook(request, session))


@page
async def new(request: Request) -> Response:
    """The form for a new webhook."""
    session = portal_session(request)
    return await _new_form(request, session, forms.shown(None), {})


async def _new_form(
    request: Request, session: Session, values: dict[str, str], errors: dict[str, list[str]],
    *, status: int = 200, notice: tuple[str, str] | None = None,
) -> Response:  # fmt: skip
    store = context(request).store
    auths = await store.query_authentications(session.group_key, Query(page_size=MOST_LISTED))
    return portal_page(request, "webhook_new.html", status=status, title="New webhook",
                       values=values, errors=errors, notice=notice,
                       authentications=auths.records, **_choices())  # fmt: skip


@page
async def create(request: Request) -> Response:
    """Create a webhook from the form: its callback must pass the handshake, whose result the
    page says in words; the new webhook's secret is shown once."""
    session, form = await changing_form(request)
    ctx = context(request)
    now = ctx.clock()
    sent = forms.submitted(form)
    try:
        spec, _ = parse(
            WebhookCreate, forms.create_body(sent), given=Circumstances(now, ctx.settings)
        )
        who = Principal(session.link_id, session.group_key, frozenset({Scope.WEBHOOKS}))
        hook = new_webhook(spec, who, now)
        await ctx.management.create([hook])
    except (ValidationError, HandshakeFailed, Conflict) as exc:
        notice = ("bad", _refusal_words(exc))
        errors = forms.field_errors(exc) if isinstance(exc, ValidationError) else {}
        return await _new_form(request, session, {**forms.NEW, **sent}, errors, status=exc.status,
                               notice=notice)  # fmt: skip
    words = (f"Created. Your callback passed the verification handshake, so the webhook is "
             f"{hook.status_code.value}.")  # fmt: skip
    return done(request, session, page_of(hook), ("ok", words), secret=_secret_of(hook, None))


def page_of(hook: Webhook) -> str:
    """The path of the webhook's page, where a form that changed it redirects."""
    return f"{PREFIX}/webhooks/{hook.webhook_id}"


def _refusal_words(exc: GatewayError) -> str:
    """What went wrong, as a sentence for the partner."""
    if isinstance(exc, HandshakeFailed):
        reason = next(iter(exc.errors.values()), [exc.detail])[0]
        return (f"Your callback did not pass the verification handshake: {reason}. The gateway "
                "called it with a code query parameter; it must answer 2xx in time with exactly "
                "that code as plain text. Nothing was changed.")  # fmt: skip
    if isinstance(exc, ValidationError):
        return "Some fields need fixing (see below). Nothing was changed."
    return f"{exc.detail} Nothing was changed."


@page
async def edit(request: Request) -> Response:
    """Change the webhook's settings from the form: only the fields changed are sent, as a
    PATCH; a new callback passes the handshake first."""
    session, form = await changing_form(request)
    hook = await owned_webhook(request, session)
    sent = forms.submitted(form)
    try:
        body = forms.patch_body(hook, sent)
        if not body:
            words = "Nothing was changed: the form was as stored."
            return done(request, session, page_of(hook), ("ok", words))
        changed = await _patch(request, session, hook, body)
    except (ValidationError, HandshakeFailed, Conflict) as exc:
        errors = forms.field_errors(exc) if isinstance(exc, ValidationError) else {}
        notice = ("bad", _refusal_words(exc))
        values = {**forms.shown(hook), **sent}
        return await webhook_page(
            request, hook, status=exc.status, notice=notice, errors=errors, values=values
        )
    names = ", ".join(sorted(body))
    return done(request, session, page_of(changed), ("ok", f"Saved: {names}."))


async def _patch(
    request: Request, session: Session, hook: Webhook, body: dict[str, Any]
) -> Webhook:
    """Apply a PATCH body as the API does (parse, check against the stored webhook, manage)."""
    ctx = context(request)
    now = ctx.clock()
    spec, given = parse(WebhookPatch, body, given=Circumstances(now, ctx.settings))
    values = checked_against(hook, spec.written(given))
    return await ctx.management.patch(hook, values, spec.status_code, session.link_id, now)


@page
async def change_status(request: Request) -> Response:
    """Pause (action=pause) or bring back to Active (action=activate: resume a paused webhook,
    reactivate an Errored one; the handshake runs first)."""
    session, form = await changing_form(request)
    hook = await owned_webhook(request, session)
    action = form.get("action")
    if action not in ("pause", "activate"):
        raise PortalRefused(400, "The portal does not know that action.",
                            "Use the buttons on the webhook's page.")  # fmt: skip
    target = WebhookStatus.INACTIVE if action == "pause" else WebhookStatus.ACTIVE
    try:
        changed = await _patch(request, session, hook, {"statusCode": target.value})
    except (ValidationError, HandshakeFailed, Conflict) as exc:
        return await webhook_page(
            request, hook, status=exc.status, notice=("bad", _refusal_words(exc))
        )
    if target is WebhookStatus.INACTIVE:
        words = "Paused: nothing is sent to it; what is published for it meanwhile is kept."
    else:
        words = (f"Your callback passed the verification handshake: the webhook is "
                 f"{changed.status_code.value}, and what was kept for it is due now.")  # fmt: skip
    return done(request, session, page_of(changed), ("ok", words))


@page
async def rotate_secret(request: Request) -> Response:
    """A new signing secret, shown once, with when the old one stops signing."""
    session, _ = await changing_form(request)
    hook = await owned_webhook(request, session)
    ctx = context(request)
    changed = await ctx.management.rotate_secret(hook, session.link_id, ctx.clock())
    until = changed.previous_secret_expires
    words = "A new signing secret was made. Give it to your receiver now: it is shown only once."
    return done(request, session, page_of(changed), ("ok", words),
                secret=_secret_of(changed, until))  # fmt: skip


def _secret_of(hook: Webhook, old_until: Any) -> dict[str, Any]:
    return {"value": hook.client_secret, "public_key": hook.public_key, "old_until": old_until}


PAGES: dict[str, dict[str, PortalEndpoint]] = {
    "/webhooks": {"GET": listing},
    "/webhooks/new": {"GET": new, "POST": create},
    "/webhooks/{webhookId}": {"GET": detail},
    "/webhooks/{webhookId}/edit": {"POST": edit},
    "/webhooks/{webhookId}/status": {"POST": change_status},
    "/webhooks/{webhookId}/rotate-secret": {"POST": rotate_secret},
}
