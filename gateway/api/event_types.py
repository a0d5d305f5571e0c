"""/api/v1/EventTypes: the catalogue of the events a platform publishes, which partners read.

The platform's keys (scope `events`) declare, change and delete event types; any key of the
group (`webhooks` or `events`) reads them. With `enforce_event_types` on, only declared types
are published or subscribed to (gateway.catalogue).
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime
from uuid import uuid4

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
    read_json,
)
from gateway.errors import Forbidden, NotFound, ValidationError
from gateway.models import EventTypeDefinition, Scope
from gateway.schemas import Circumstances, EventTypeCreate, EventTypePatch, parse
from gateway.wire import ActionResultModel, EventTypeModel, FetchResult, batch_of

# Properties an event type keeps for good: a PATCH naming them is refused, not ignored.
_FIXED = {"tablekey": "tableKey", "eventtype": "eventType"}


async def _reader(request: Request) -> Principal:
    """The caller, who may read the catalogue with either scope."""
    principal = await authenticate(request, None)
    if not principal.scopes & {Scope.WEBHOOKS, Scope.EVENTS}:
        raise Forbidden("the API key lacks the 'webhooks' or the 'events' scope")
    return principal


@operation(batch_of(EventTypeModel), 400, 409, body=EventTypeCreate, batch="max_batch_size")
async def create(request: Request) -> Response:
    """Declare one or more event types, all or none; a (tableKey, eventType) declared already
    is a 409."""
    principal = await authenticate(request, Scope.EVENTS)
    ctx = context(request)
    now = ctx.clock()
    specs = await read_batch(request, EventTypeCreate, "event types", now)
    declared = [_new(principal, spec, now) for spec in specs]
    await ctx.store.add_event_types(declared)
    ctx.catalogue.forget(principal.group_key)
    return json_response([wire.event_type(d) for d in declared])


def _new(who: Principal, spec: EventTypeCreate, now: datetime) -> EventTypeDefinition:
    return EventTypeDefinition(
        **spec.model_dump(),
        event_type_id=uuid4(),
        group_key=who.group_key,
        created=now,
        created_user_id=who.api_key_id,
        modified=now,
        modified_user_id=who.api_key_id,
    )


async def _owned(request: Request, principal: Principal) -> tuple[Context, EventTypeDefinition]:
    ctx = context(request)
    found = await owned(request, principal, "eventTypeId", "event type", ctx.store.get_event_type)
    return ctx, found


@operation(EventTypeModel, 404)
async def retrieve(request: Request) -> Response:
    """One event type."""
    _, found = await _owned(request, await _reader(request))
    return json_response(wire.event_type(found))


@operation(EventTypeModel, 400, 404, body=EventTypePatch)
async def update(request: Request) -> Response:
    """Change the given properties of an event type (never its tableKey and eventType)."""
    principal = await authenticate(request, Scope.EVENTS)
    ctx, found = await _owned(request, principal)
    now = ctx.clock()
    body = await read_json(request)
    if isinstance(body, dict):
        for key in body:
            if (fixed := _FIXED.get(str(key).lower())) is not None:
                message = "cannot change: delete this event type and declare another"
                raise ValidationError.field(fixed, message)
    spec, given = parse(EventTypePatch, body, given=Circumstances(now, ctx.settings))
    changes = {name: getattr(spec, name) for name in given}
    changed = dataclasses.replace(
        found, **changes, modified=now, modified_user_id=principal.api_key_id
    )
    if not await ctx.store.update_event_type(changed):
        raise NotFound(f"no event type {found.event_type_id}")
    ctx.catalogue.forget(principal.group_key)
    return json_response(wire.event_type(changed))


@operation(ActionResultModel, 404)
async def delete(request: Request) -> Response:
    """Delete an event type; rules on it stay (with enforcement on, nothing is published to
    them until it is declared again)."""
    principal = await authenticate(request, Scope.EVENTS)
    ctx, found = await _owned(request, principal)
    if not await ctx.store.delete_event_type(principal.group_key, found.event_type_id):
        raise NotFound(f"no event type {found.event_type_id}")
    ctx.catalogue.forget(principal.group_key)
    message = f"EventType {found.event_type_id} deleted"
    return json_response(ActionResultModel(messages=[message]).wire())


@operation(FetchResult[EventTypeModel], 400, query=PAGING)
async def query(request: Request) -> Response:
    """Filter, order and page this group's event types (by category, deprecated, ...)."""
    principal = await _reader(request)
    listed = functools.partial(context(request).store.query_event_types, principal.group_key)
    return await answer_page(request, EventTypeModel.queryable(), listed, wire.event_type)
