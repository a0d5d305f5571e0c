"""/api/v1/PortalSessions: a link that opens the partner portal (gateway.portal) for the
caller's group, and the end of every session and unopened link of it (gateway.portal.
revocation)."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.common import authenticate, context, json_response, operation, read_json
from gateway.models import Scope
from gateway.portal import revocation
from gateway.portal.tokens import portal_link
from gateway.schemas import PortalSessionCreate, parse
from gateway.wire import ActionResultModel, PortalSessionModel

log = logging.getLogger(__name__)


@operation(PortalSessionModel, 400, body=PortalSessionCreate)
async def create(request: Request) -> Response:
    """A portal link for the caller's group (the body is optional): open its url in a
    browser within minutes; the session it opens ends at expiresAt."""
    principal = await authenticate(request, Scope.WEBHOOKS)
    ctx = context(request)
    body = await read_json(request) if await _has_body(request) else {}
    spec, _ = parse(PortalSessionCreate, body)
    base = ctx.settings.public_url or str(request.base_url)
    url, grant = portal_link(
        ctx.settings.secret_key or "",
        base,
        principal.group_key,
        read_only=spec.read_only,
        session_seconds=spec.expires_in_seconds,
        now=ctx.clock(),
    )
    log.info("portal link issued", extra={
        "link_id": str(grant.link_id), "group_key": str(principal.group_key),
        "api_key_id": str(principal.api_key_id), "read_only": grant.read_only,
    })  # fmt: skip
    answer = PortalSessionModel(
        url=url,
        expires_at=grant.session_expires,
        link_expires_at=grant.link_expires,
        group_key=principal.group_key,
        read_only=grant.read_only,
    )
    return json_response(answer.wire())


@operation(ActionResultModel)
async def revoke(request: Request) -> Response:
    """End every portal session of the caller's group and every link of it not yet opened;
    links made afterwards open as usual."""
    principal = await authenticate(request, Scope.WEBHOOKS)
    ctx = context(request)
    await revocation.end_group(ctx.store, principal.group_key, ctx.clock())
    log.info("portal sessions revoked", extra={
        "group_key": str(principal.group_key), "api_key_id": str(principal.api_key_id),
    })  # fmt: skip
    ended = f"every portal session and unopened link of group {principal.group_key} ended"
    return json_response(ActionResultModel(messages=[ended]).wire())


async def _has_body(request: Request) -> bool:
    """Whether the request has a body other than whitespace (it is optional here)."""
    return bool((await request.body()).strip())
