"""Request bodies: validation with field-named messages, and the models behind /openapi.json.

Property names are matched case-insensitively (the C# client sends PascalCase). Read-only
properties that clients echo back (webhookId, created, ...) are ignored; any other unknown
property is a 400, so a typo never passes silently.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, TypeVar
from urllib.parse import urlsplit
from uuid import UUID

import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic.config import JsonDict

from gateway.errors import ValidationError
from gateway.filters import MAX_FILTER_LENGTH
from gateway.models import ContentType, EventType, HttpMethod, WebhookStatus

READ_ONLY = {
    "webhookid",
    "groupkey",
    "clientsecret",
    "statusmessage",
    "created",
    "createduserid",
    "modified",
    "modifieduserid",
    "webhookrules",
    "webhookruleid",
}
ALIASES = {"emitformat": "requestContentType"}
EVENT_TYPE_NAMES = {"i": "I", "u": "U", "d": "D", "insert": "I", "update": "U", "delete": "D"}


def _no_nul(value: str) -> str:
    # PostgreSQL's text cannot hold U+0000 where SQLite's can: refused alike on every store,
    # before it reaches either.
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (U+0000)")
    return value


# For the schema only (and so for clients and fuzzers): _no_nul checks it, with its own message.
NO_NUL = {"pattern": "^[^\\u0000]*$"}
Name = Annotated[
    str, Field(min_length=1, max_length=100, json_schema_extra=NO_NUL), AfterValidator(_no_nul)
]
PartitionKey = Annotated[
    str, Field(max_length=100, json_schema_extra=NO_NUL), AfterValidator(_no_nul)
]
FilterText = Annotated[
    str, Field(max_length=MAX_FILTER_LENGTH, json_schema_extra=NO_NUL), AfterValidator(_no_nul)
]
# Checked by _callback_url (its messages are friendlier); the schema tells clients and fuzzers:
# http(s), a host and no credentials, a port of at most 65535, no spaces or control characters.
_PORT = r"(6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|\d{1,4})"
_URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://(\[[0-9A-Fa-f:.]+\]|[^\s\u0000-\u001f\u007f-\u009f/?#@\[\]:\\]+)"
    rf"(:{_PORT})?([/?#][^\s\u0000-\u001f\u007f-\u009f]*)?$"
)
CallbackUrl = Annotated[
    str, Field(json_schema_extra={"format": "uri", "maxLength": 250, "pattern": _URL_PATTERN})
]
TableKey = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


def _optional_not_nullable(schema: dict[str, Any], model: type[Any]) -> None:
    """In the schema of a PATCH body, a property outside NULLABLE may be left out but not be
    null: `X | None = None` is how pydantic spells "optional", not what the server takes."""
    nullable: frozenset[str] = model.NULLABLE
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf", [])
        if name in nullable or {"type": "null"} not in options:
            continue
        (kept,) = [option for option in options if option != {"type": "null"}]
        del prop["anyOf"], prop["default"]
        prop.update(kept)


class _Patch(_Body):
    """Changes: only the properties given change, and only those in NULLABLE may be null."""

    model_config = ConfigDict(json_schema_extra=_optional_not_nullable)
    NULLABLE: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.NULLABLE:
            raise ValueError("cannot be null")
        return value


# Errored is the gateway's to set (gateway.api.webhooks refuses it); only these are asked for.
ASKED_STATUS: JsonDict = {"anyOf": [{"enum": ["Active", "Inactive"]}, {"type": "null"}]}
# A GET notification carries no body, so a GET webhook sends ids only (DESIGN §6).
_GET_SENDS_IDS: JsonDict = {
    "if": {
        "properties": {"callbackHttpMethod": {"const": "GET"}},
        "required": ["callbackHttpMethod"],
    },
    "then": {"properties": {"requestContentType": {"const": "Id"}}},
}


def _callback_url(value: str) -> str:
    # The URL is sent as written, so a space or control character would break (or, with CR LF,
    # split) the request line; urlsplit silently drops tabs and newlines, so look before it.
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError("must not contain spaces or control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http or https URL")
    if len(value) > 250:
        raise ValueError("must be at most 250 characters")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials")
    try:
        parts.port  # noqa: B018 - parsed lazily; raises for a port that is not 0-65535
    except ValueError as exc:
        raise ValueError(f"has an invalid port ({exc})") from exc
    return value


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _event_type(value: Any) -> Any:
    if isinstance(value, str):
        return EVENT_TYPE_NAMES.get(value.strip().lower(), value)
    return value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _content_type(value: Any) -> Any:
    if isinstance(value, str):
        return {"full": "Full", "id": "Id"}.get(value.lower(), value)
    return value


def _webhook_patch_schema(schema: dict[str, Any], model: type[Any]) -> None:
    _optional_not_nullable(schema, model)
    schema.update(_GET_SENDS_IDS)


class WebhookCreate(_Body):
    """A webhook to create; it becomes Active once its callback passes the handshake."""

    model_config = ConfigDict(json_schema_extra=_GET_SENDS_IDS)

    name: Name
    requestContentType: ContentType
    callbackHttpMethod: HttpMethod
    callbackUrl: CallbackUrl
    expirationDate: datetime | None = None
    retryCount: int = Field(default=3, ge=0, le=5)
    statusCode: WebhookStatus | None = Field(default=None, json_schema_extra=ASKED_STATUS)
    partitionKey: PartitionKey | None = None

    _url = field_validator("callbackUrl")(_callback_url)
    _method = field_validator("callbackHttpMethod", mode="before")(_upper)
    _ctype = field_validator("requestContentType", mode="before")(_content_type)
    _expiry = field_validator("expirationDate")(lambda v: v and _aware(v))


class WebhookPatch(_Patch):
    """Changes to a webhook; only the properties given change."""

    model_config = ConfigDict(json_schema_extra=_webhook_patch_schema)
    NULLABLE = frozenset({"expirationDate", "partitionKey"})

    name: Name | None = None
    requestContentType: ContentType | None = None
    callbackHttpMethod: HttpMethod | None = None
    callbackUrl: CallbackUrl | None = None
    expirationDate: datetime | None = None
    retryCount: int | None = Field(default=None, ge=0, le=5)
    statusCode: WebhookStatus | None = Field(default=None, json_schema_extra=ASKED_STATUS)
    partitionKey: PartitionKey | None = None

    _url = field_validator("callbackUrl")(lambda v: v and _callback_url(v))
    _method = field_validator("callbackHttpMethod", mode="before")(_upper)
    _ctype = field_validator("requestContentType", mode="before")(_content_type)
    _expiry = field_validator("expirationDate")(lambda v: v and _aware(v))


class RuleCreate(_Body):
    """A rule: which table and event type (and records, by filter) a webhook receives."""

    webhookId: UUID
    tableKey: TableKey
    eventType: EventType
    filter: FilterText | None = None

    _etype = field_validator("eventType", mode="before")(_event_type)


class RulePatch(_Patch):
    """Changes to a rule; only the properties given change."""

    NULLABLE = frozenset({"filter"})

    tableKey: TableKey | None = None
    eventType: EventType | None = None
    filter: FilterText | None = None

    _etype = field_validator("eventType", mode="before")(_event_type)


# What the server needs of a record, for the schema: gateway.payloads.record_id also takes
# `<tableKey>Id` in any case, and gateway.api.events limits the nesting.
RECORD: JsonDict = {
    "type": "object",
    "required": ["id"],
    "properties": {"id": {"type": ["string", "number"]}},
    "description": "A changed record. It needs an id: `id`, or `<tableKey>Id` (property names in "
    "any case), a string or number. Records nest at most max_record_depth levels (32 by "
    "default; the record itself is one).",
}


class EventIn(_Body):
    """A change published by the platform: records of one table with one event type."""

    tableKey: TableKey
    eventType: EventType
    records: list[dict[str, Any]] = Field(min_length=1, json_schema_extra={"items": RECORD})

    _etype = field_validator("eventType", mode="before")(_event_type)


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any, *, where: str = "") -> tuple[M, set[str]]:
    """Validate one JSON object; return the model and the canonical names that were given."""
    if not isinstance(data, Mapping):
        raise ValidationError.field(where.removesuffix(".") or "body", "must be a JSON object")
    canonical = _canonical_keys(model, data, where)
    try:
        return model.model_validate(canonical), set(canonical)
    except pydantic.ValidationError as exc:
        raise _translate(exc, where) from exc


@functools.cache
def _spellings(model: type[BaseModel]) -> dict[str, str]:
    """Each field of `model` by its lower-case name and by the lower-case aliases that lead to
    it (a field's own name wins). Worked out once per model: pydantic answers model_fields
    through a property that showed in profiles of the publish path, once per event."""
    fields = model.model_fields
    found = {alias: name for alias, name in ALIASES.items() if name in fields}
    found.update((name.lower(), name) for name in fields)
    return found


def _canonical_keys(model: type[BaseModel], data: Mapping[str, Any], where: str) -> dict[str, Any]:
    spellings = _spellings(model)
    out: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in data.items():
        lowered = str(key).lower()
        name = spellings.get(lowered)
        if name is not None:
            out[name] = value
        elif lowered not in READ_ONLY:
            unknown.append(str(key))
    if unknown:
        errors = {f"{where}{key}": ["is not a known property"] for key in unknown}
        raise ValidationError(f"unknown property: {', '.join(unknown)}", errors=errors)
    return out


def _translate(exc: pydantic.ValidationError, where: str) -> ValidationError:
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"]) or "body"
        message = error["msg"].removeprefix("Value error, ")
        errors.setdefault(f"{where}{path}", []).append(message)
    detail = "; ".join(f"{field}: {', '.join(msgs)}" for field, msgs in errors.items())
    return ValidationError(detail, errors=errors)


def openapi_schemas() -> dict[str, Any]:
    """JSON schemas of the request bodies, for /openapi.json."""
    models: list[type[BaseModel]] = [WebhookCreate, WebhookPatch, RuleCreate, RulePatch, EventIn]
    return {
        m.__name__: m.model_json_schema(ref_template="#/components/schemas/{model}") for m in models
    }
