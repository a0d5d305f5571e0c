"""What a notification looks like on the wire (contract §6): the envelope, Full vs Id, GET vs body.

The signed payload is exactly what is sent: the JSON body for POST/PUT/PATCH, or for GET the
query string (everything after the '?', the partner's own parameters included).

A webhook's `config` is echoed in the body as `"config"` (Full and Id alike), and never in a
GET's query string, which servers and proxies log. It is write-only, so the body as the
history keeps it (`Rendered.shown`) has HIDDEN in its place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson

from gateway.errors import ValidationError
from gateway.models import ContentType, Deliverable, HttpMethod, Webhook, record
from gateway.wire_values import timestamp

# orjson refuses to encode more than 254 nested objects and arrays, and a notification's body
# holds its records two levels down (the envelope, then its records array), so no record may
# nest deeper than this; the max_record_depth setting keeps them well below it.
ENCODER_DEPTH = 254
MAX_RECORD_DEPTH = ENCODER_DEPTH - 2


@record
class Rendered:
    """One request ready to sign and send."""

    method: str
    url: str
    body: bytes | None  # None for GET
    signed_payload: bytes  # the body, or for GET the query string
    shown: bytes | None  # the body as the history keeps it (the config hidden)


HIDDEN = "(write-only)"  # the config's value in the body as the history keeps it


# A record's id is one of these exactly (records come parsed from JSON): bool, an int subclass,
# is not among them.
_ID_TYPES = frozenset({str, int, float})


def record_id(record: Mapping[str, Any], table_key: str) -> str:
    """A record's id: its `id` property, else `<tableKey>Id` (case-insensitive), a string or
    a number as the schema says (JSON's true and false are neither, though Python's bool is an
    int)."""
    table_id, found = f"{table_key.lower()}id", None
    for key, value in record.items():
        if type(value) in _ID_TYPES:
            if (lowered := key.lower()) == "id":
                return str(value)
            if found is None and lowered == table_id:
                found = str(value)
    if found is None:
        raise ValidationError.field("records", f"each record needs an 'id' or '{table_key}Id'")
    return found


def nests_deeper(value: dict[str, Any] | list[Any], levels: int) -> bool:
    """Whether an object or array nests more than `levels` levels, itself counting as one.

    Looks into containers only: a flat record costs one pass over its values.
    """
    if levels < 1:
        return True
    for item in value.values() if isinstance(value, dict) else value:
        if isinstance(item, dict | list) and nests_deeper(item, levels - 1):
            return True
    return False


def envelope(hook: Webhook, note: Deliverable) -> dict[str, Any]:
    """The JSON body of a notification."""
    body: dict[str, Any] = {
        "webhookId": str(hook.webhook_id),
        "eventId": str(note.event_id),
        "notificationId": str(note.notification_id),
        "tableKey": note.table_key,
        "eventType": str(note.event_type),  # a StrEnum's value; `.value` is a Python property
        "triggeredAt": timestamp(note.triggered_at),
        "sequence": note.sequence,
    }
    if hook.request_content_type is ContentType.FULL:
        body["records"] = list(note.records)
    else:
        body["ids"] = [record_id(r, note.table_key) for r in note.records]
    if hook.config is not None:
        body["config"] = hook.config
    return body


def render(hook: Webhook, note: Deliverable) -> Rendered:
    """The request for this notification with this webhook's method and content type."""
    data = envelope(hook, note)
    if hook.callback_http_method is HttpMethod.GET:
        return _as_query(hook.callback_url, data)
    body = orjson.dumps(data)
    shown = body if hook.config is None else orjson.dumps({**data, "config": HIDDEN})
    return Rendered(str(hook.callback_http_method), hook.callback_url, body, body, shown)


_NOT_QUERIED = frozenset({"records", "config"})


def _as_query(url: str, data: Mapping[str, Any]) -> Rendered:
    params = {k: _query_value(v) for k, v in data.items() if k not in _NOT_QUERIED}
    query = urlencode(params)
    parts = urlsplit(url)
    # The partner's own query parameters stay first; the whole query string as sent is signed.
    full_query = f"{parts.query}&{query}" if parts.query else query
    sent = urlunsplit(parts._replace(query=full_query))
    return Rendered("GET", sent, None, full_query.encode(), None)


def _query_value(value: Any) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return ",".join(str(v) for v in value)
    return str(value)
