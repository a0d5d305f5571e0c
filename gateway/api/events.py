"""/api/v1/Events: the platform publishes record changes; each becomes notifications."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response

from gateway import payloads
from gateway.api.common import Context, authenticate, context, json_response, read_json
from gateway.errors import ValidationError
from gateway.ids import new_id
from gateway.models import Event, Scope
from gateway.schemas import EventIn, parse


async def publish(request: Request) -> Response:
    """Accept events; answer 202 once they and their notifications are committed."""
    principal = await authenticate(request, Scope.EVENTS)
    ctx = context(request)
    body = await read_json(request)
    items = body if isinstance(body, list) else [body]
    limit = ctx.settings.max_events_per_request
    if not items or len(items) > limit:
        raise ValidationError.field("body", f"send between 1 and {limit} events")
    now = ctx.clock()  # one time for the whole request: its events were accepted together
    events = [_event(ctx, principal.group_key, item, i, now) for i, item in enumerate(items)]
    notes = await ctx.publishing.publish(events, now)
    return json_response(
        {"eventIds": [str(e.event_id) for e in events], "notificationCount": len(notes)}, 202
    )


def _event(ctx: Context, group_key: UUID, item: Any, index: int, now: datetime) -> Event:
    spec, _ = parse(EventIn, item, where=f"[{index}].")
    if len(spec.records) > ctx.settings.max_records_per_event:
        raise ValidationError.field(
            f"[{index}].records", f"at most {ctx.settings.max_records_per_event} records"
        )
    depth = ctx.settings.max_record_depth
    for number, record in enumerate(spec.records):
        try:
            payloads.record_id(record, spec.tableKey)
        except ValidationError as exc:
            raise ValidationError.field(f"[{index}].records", exc.errors["records"][0]) from exc
        # What cannot be rendered must not be accepted: it would stay pending for good.
        if payloads.nests_deeper(record, depth):
            message = f"record {number} is nested deeper than {depth} levels"
            raise ValidationError.field(f"[{index}].records", message)
    return Event(new_id(), group_key, spec.tableKey, spec.eventType, tuple(spec.records), now)
