"""/api/v1/Events: the platform publishes record changes; each becomes notifications."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.common import authenticate, context, json_response, operation, read_batch
from gateway.ids import new_id
from gateway.models import Event, Scope
from gateway.schemas import EventIn
from gateway.wire import EventsAccepted


@operation(EventsAccepted, 400, body=EventIn, batch="max_events_per_request", status=202)
async def publish(request: Request) -> Response:
    """Accept events; answer 202 once they and their notifications are committed. With
    enforce_event_types, each must be of a declared event type and its records pass the
    type's schema."""
    principal = await authenticate(request, Scope.EVENTS)
    ctx = context(request)
    now = ctx.clock()  # one time for the whole request: its events were accepted together
    most = ctx.settings.max_events_per_request
    specs = await read_batch(request, EventIn, "events", now, most)
    events = [_event(principal.group_key, spec, now) for spec in specs]
    if ctx.settings.enforce_event_types:  # before anything is stored: all or none
        await ctx.catalogue.check_events(principal.group_key, events)
    notes = await ctx.publishing.publish(events, now)
    accepted = EventsAccepted(event_ids=[e.event_id for e in events], notification_count=len(notes))
    return json_response(accepted.wire(), 202)


def _event(group_key: UUID, spec: EventIn, now: datetime) -> Event:
    return Event(new_id(), group_key, spec.table_key, spec.event_type, tuple(spec.records), now)
