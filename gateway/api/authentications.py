"""/api/v1/Authentications: credentials that many webhooks of a group send with, kept once.

The secret part (password, headerValue) is sealed as the request is read (gateway.credentials)
and never answered. A change reaches every webhook that uses the authentication from its next
request on: the workers are told to read those webhooks afresh (gateway.wakeup; on PostgreSQL
the store tells every process), and a worker told nothing reads them within
gateway.sender.WEBHOOK_CACHE_SECONDS anyway.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from starlette.requests import Request
from starlette.responses import Response

from gateway import credentials, sealed, wire
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
from gateway.models import Authentication, AuthenticationKind, Scope
from gateway.schemas import (
    AuthenticationCreate,
    AuthenticationPatch,
    check_kind_fields,
)
from gateway.wire import ActionResultModel, AuthenticationModel, FetchResult, batch_of

log = logging.getLogger(__name__)


@operation(batch_of(AuthenticationModel), 400, body=AuthenticationCreate, batch="max_batch_size")
async def create(request: Request) -> Response:
    """Create one or more authentications, all or none."""
    principal = await authenticate(request, Scope.WEBHOOKS)
    ctx = context(request)
    now = ctx.clock()
    specs = await read_batch(request, AuthenticationCreate, "authentications", now)
    for index, spec in enumerate(specs):
        check_kind_fields(spec.kind, spec, complete=True, where=f"[{index}].")
    made = [_new(ctx, principal, spec, now) for spec in specs]
    await ctx.store.add_authentications(made)
    for item in made:
        _logged("authentication created", item)
    return json_response([wire.authentication(a) for a in made])


def _new(ctx: Context, who: Principal, spec: AuthenticationCreate, now: datetime) -> Authentication:
    authentication_id = uuid4()
    basic = spec.kind is AuthenticationKind.BASIC
    secret = spec.password if basic else spec.header_value
    return Authentication(
        authentication_id=authentication_id,
        group_key=who.group_key,
        name=spec.name,
        kind=spec.kind,
        username=spec.username if basic else None,
        header_name=None if basic else spec.header_name,
        sealed_secret=_seal(ctx, secret or "", authentication_id),
        created=now,
        created_user_id=who.api_key_id,
        modified=now,
        modified_user_id=who.api_key_id,
    )


def _seal(ctx: Context, secret: str, authentication_id: UUID) -> str:
    return credentials.seal(secret, authentication_id, sealed.sealer(ctx.settings.secret_key))


async def _owned(request: Request) -> tuple[Context, Principal, Authentication]:
    principal = await authenticate(request, Scope.WEBHOOKS)
    ctx = context(request)
    get = ctx.store.get_authentication
    found = await owned(request, principal, "authenticationId", "authentication", get)
    return ctx, principal, found


@operation(AuthenticationModel, 404)
async def retrieve(request: Request) -> Response:
    """One authentication (never its password or header value)."""
    _, _, found = await _owned(request)
    return json_response(wire.authentication(found))


@operation(AuthenticationModel, 400, 404, body=AuthenticationPatch)
async def update(request: Request) -> Response:
    """Change the given properties; every webhook that uses the authentication sends with the
    change from its next request on. A change of kind gives all of the new kind's fields."""
    ctx, principal, found = await _owned(request)
    now = ctx.clock()
    spec, given = await read_patch(request, AuthenticationPatch, now)
    kind = spec.kind or found.kind
    check_kind_fields(kind, spec, complete=kind is not found.kind)
    changed = dataclasses.replace(
        found,
        **_changes(ctx, found, spec, given, kind),
        modified=now,
        modified_user_id=principal.api_key_id,
    )
    users = await ctx.store.update_authentication(changed)
    if users is None:
        raise NotFound(f"no authentication {found.authentication_id}")
    for webhook_id in users:
        ctx.wakeup.webhook_changed(webhook_id)
    _logged("authentication changed", changed, webhooks=len(users))
    return json_response(wire.authentication(changed))


def _changes(
    ctx: Context,
    found: Authentication,
    spec: AuthenticationPatch,
    given: set[str],
    kind: AuthenticationKind,
) -> dict[str, Any]:
    """The fields a PATCH writes: those given, the secret sealed anew, and on a change of kind
    the old kind's fields cleared."""
    changes: dict[str, Any] = {"kind": kind}
    if "name" in given:
        changes["name"] = spec.name
    if kind is AuthenticationKind.BASIC:
        changes["header_name"] = None
        if "username" in given:
            changes["username"] = spec.username
        secret = spec.password if "password" in given else None
    else:
        changes["username"] = None
        if "header_name" in given:
            changes["header_name"] = spec.header_name
        secret = spec.header_value if "header_value" in given else None
    if secret is not None:
        changes["sealed_secret"] = _seal(ctx, secret, found.authentication_id)
    return changes


@operation(ActionResultModel, 404, 409)
async def delete(request: Request) -> Response:
    """Delete an authentication that no webhook uses; a 409 names the webhooks that do."""
    ctx, principal, found = await _owned(request)
    if not await ctx.store.delete_authentication(principal.group_key, found.authentication_id):
        raise NotFound(f"no authentication {found.authentication_id}")
    _logged("authentication deleted", found)
    message = f"Authentication {found.authentication_id} deleted"
    return json_response(ActionResultModel(messages=[message]).wire())


@operation(FetchResult[AuthenticationModel], 400, query=PAGING)
async def query(request: Request) -> Response:
    """Filter, order and page this group's authentications."""
    principal = await authenticate(request, Scope.WEBHOOKS)
    listed = functools.partial(context(request).store.query_authentications, principal.group_key)
    return await answer_page(request, AuthenticationModel.queryable(), listed, wire.authentication)


def _logged(what: str, item: Authentication, **extra: Any) -> None:
    """Log a change by ids and kind: never a credential, not even the username."""
    log.info(what, extra={
        "authentication_id": str(item.authentication_id), "group_key": str(item.group_key),
        "kind": item.kind.value, **extra,
    })  # fmt: skip
