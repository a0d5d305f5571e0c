"""Request bodies, each defined once: its properties with their wire names, the validation of
each property and the rules between them, with field-named messages; and their JSON schemas
for /openapi.json.

Attributes are the domain records' names (`partition_key`); the wire name is their camelCase
(`partitionKey`), matched case-insensitively (the C# client sends PascalCase). Read-only
properties that clients echo back (webhookId, created, ...) are ignored; any other unknown
property is a 400, so a typo never passes silently. Rules that need the time or the settings
(a future expirationDate, a rule filter within the limits, records per event) read them from
the `Circumstances` that `parse` is given.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
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
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from gateway import filters, payloads
from gateway.config import Settings
from gateway.errors import ValidationError
from gateway.filters import MAX_FILTER_LENGTH
from gateway.models import ContentType, EventType, HttpMethod, WebhookStatus, utcnow

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


@dataclass(frozen=True)
class Circumstances:
    """What rules beyond a body's own text are judged against: the request's time and the
    server's limits."""

    now: datetime = field(default_factory=utcnow)
    settings: Settings = field(default_factory=Settings)


def _circumstances(info: ValidationInfo) -> Circumstances:
    given = info.context
    return given if isinstance(given, Circumstances) else Circumstances()


class _Body(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, use_enum_values=False, alias_generator=to_camel
    )


def _optional_not_nullable(schema: dict[str, Any], model: type[Any]) -> None:
    """In the schema of a PATCH body, a property outside NULLABLE may be left out but not be
    null: `X | None = None` is how pydantic spells "optional", not what the server takes."""
    nullable = {to_camel(name) for name in model.NULLABLE}
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


# Errored is the gateway's to set; only these are asked for.
ASKED_STATUS: JsonDict = {"anyOf": [{"enum": ["Active", "Inactive"]}, {"type": "null"}]}
# A GET notification carries no body, so a GET webhook sends ids only (DESIGN §6).
_GET_SENDS_IDS: JsonDict = {
    "if": {
        "properties": {"callbackHttpMethod": {"const": "GET"}},
        "required": ["callbackHttpMethod"],
    },
    "then": {"properties": {"requestContentType": {"const": "Id"}}},
}


def check_method_format(method: HttpMethod, content: ContentType) -> None:
    """A GET webhook sends ids only; a PATCH checks it again with the stored values."""
    if method is HttpMethod.GET and content is ContentType.FULL:
        raise ValueError("a GET webhook carries no body, so it must use Id")


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


def _future(value: datetime | None, info: ValidationInfo) -> datetime | None:
    """A naive date is UTC; an expiration date must lie ahead (null: never expires)."""
    if value is None:
        return None
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    if aware <= _circumstances(info).now:
        raise ValueError("must be in the future")
    return aware


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


def _rule_filter(value: str | None, info: ValidationInfo) -> str | None:
    """Rule filters run against arbitrary records, so only their syntax is checked here."""
    if value:
        settings = _circumstances(info).settings
        try:
            filters.parse_filter(
                value,
                max_length=settings.max_filter_length,
                max_depth=settings.max_filter_depth,
            )
        except ValidationError as exc:
            raise ValueError(exc.detail) from exc
    return value


def _webhook_patch_schema(schema: dict[str, Any], model: type[Any]) -> None:
    _optional_not_nullable(schema, model)
    schema.update(_GET_SENDS_IDS)


class WebhookCreate(_Body):
    """A webhook to create; it becomes Active once its callback passes the handshake."""

    model_config = ConfigDict(json_schema_extra=_GET_SENDS_IDS)

    name: Name
    # The method before the content type: the content type's check reads it.
    callback_http_method: HttpMethod
    request_content_type: ContentType
    callback_url: CallbackUrl
    expiration_date: datetime | None = None
    retry_count: int = Field(default=3, ge=0, le=5)
    status_code: WebhookStatus | None = Field(default=None, json_schema_extra=ASKED_STATUS)
    partition_key: PartitionKey | None = None

    _url = field_validator("callback_url")(_callback_url)
    _method = field_validator("callback_http_method", mode="before")(_upper)
    _ctype = field_validator("request_content_type", mode="before")(_content_type)
    _expiry = field_validator("expiration_date")(_future)

    @field_validator("request_content_type")
    @classmethod
    def _sends_ids_on_get(cls, value: ContentType, info: ValidationInfo) -> ContentType:
        method = info.data.get("callback_http_method")
        if method is not None:
            check_method_format(method, value)
        return value

    @field_validator("status_code")
    @classmethod
    def _not_errored(cls, value: WebhookStatus | None) -> WebhookStatus | None:
        if value is WebhookStatus.ERRORED:
            raise ValueError("Errored is set by the gateway")
        return value


class WebhookPatch(_Patch):
    """Changes to a webhook; only the properties given change (the method and content type
    are checked together with the stored values, by gateway.api.webhooks)."""

    model_config = ConfigDict(json_schema_extra=_webhook_patch_schema)
    NULLABLE = frozenset({"expiration_date", "partition_key"})

    name: Name | None = None
    request_content_type: ContentType | None = None
    callback_http_method: HttpMethod | None = None
    callback_url: CallbackUrl | None = None
    expiration_date: datetime | None = None
    retry_count: int | None = Field(default=None, ge=0, le=5)
    status_code: WebhookStatus | None = Field(default=None, json_schema_extra=ASKED_STATUS)
    partition_key: PartitionKey | None = None

    _url = field_validator("callback_url")(lambda v: v and _callback_url(v))
    _method = field_validator("callback_http_method", mode="before")(_upper)
    _ctype = field_validator("request_content_type", mode="before")(_content_type)
    _expiry = field_validator("expiration_date")(_future)

    @field_validator("status_code")
    @classmethod
    def _not_errored(cls, value: WebhookStatus | None) -> WebhookStatus | None:
        if value is WebhookStatus.ERRORED:
            raise ValueError("Errored is set by the gateway, not by a request")
        return value


class RuleCreate(_Body):
    """A rule: which table and event type (and records, by filter) a webhook receives."""

    webhook_id: UUID
    table_key: TableKey
    event_type: EventType
    filter: FilterText | None = None

    _etype = field_validator("event_type", mode="before")(_event_type)
    _filter = field_validator("filter")(_rule_filter)


class RulePatch(_Patch):
    """Changes to a rule; only the properties given change."""

    NULLABLE = frozenset({"filter"})

    table_key: TableKey | None = None
    event_type: EventType | None = None
    filter: FilterText | None = None

    _etype = field_validator("event_type", mode="before")(_event_type)
    _filter = field_validator("filter")(_rule_filter)


# What the server needs of a record, for the schema: gateway.payloads.record_id also takes
# `<tableKey>Id` in any case, and EventIn limits the nesting.
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

    table_key: TableKey
    event_type: EventType
    records: list[dict[str, Any]] = Field(min_length=1, json_schema_extra={"items": RECORD})

    _etype = field_validator("event_type", mode="before")(_event_type)

    @field_validator("records")
    @classmethod
    def _renderable(cls, records: list[dict[str, Any]], info: ValidationInfo) -> Any:
        """Within the settings' limits, and each with an id: what cannot be rendered must not
        be accepted, as it would stay pending for good."""
        settings = _circumstances(info).settings
        if len(records) > settings.max_records_per_event:
            raise ValueError(f"at most {settings.max_records_per_event} records")
        table_key = info.data.get("table_key")
        depth = settings.max_record_depth
        for number, record in enumerate(records):
            if table_key is not None:
                try:
                    payloads.record_id(record, table_key)
                except ValidationError as exc:
                    raise ValueError(exc.errors["records"][0]) from exc
            if payloads.nests_deeper(record, depth):
                raise ValueError(f"record {number} is nested deeper than {depth} levels")
        return records


M = TypeVar("M", bound=BaseModel)


def parse(
    model: type[M], data: Any, *, where: str = "", given: Circumstances | None = None
) -> tuple[M, set[str]]:
    """Validate one JSON object; return the model and the attributes that were given."""
    if not isinstance(data, Mapping):
        raise ValidationError.field(where.removesuffix(".") or "body", "must be a JSON object")
    canonical = _canonical_keys(model, data, where)
    try:
        parsed = model.model_validate(canonical, context=given or Circumstances())
    except pydantic.ValidationError as exc:
        raise _translate(exc, where) from exc
    names = _attributes(model)
    return parsed, {names[alias] for alias in canonical}


def parse_batch(
    model: type[M], body: Any, *, most: int, noun: str, given: Circumstances
) -> list[M]:
    """One object or an array of 1 to `most` of them; errors name the item ("[2].name")."""
    items = body if isinstance(body, list) else [body]
    if not items or len(items) > most:
        raise ValidationError.field("body", f"send between 1 and {most} {noun}")
    return [parse(model, item, where=f"[{i}].", given=given)[0] for i, item in enumerate(items)]


@functools.cache
def _attributes(model: type[BaseModel]) -> dict[str, str]:
    """Each field's attribute by its wire name."""
    return {info.alias or name: name for name, info in model.model_fields.items()}


@functools.cache
def _spellings(model: type[BaseModel]) -> dict[str, str]:
    """Each field's wire name by its lower-case wire name and by the lower-case aliases that
    lead to it (a field's own name wins). Worked out once per model: pydantic answers
    model_fields through a property that showed in profiles of the publish path, once per
    event."""
    wire_names = _attributes(model)
    found = {alias: name for alias, name in ALIASES.items() if name in wire_names}
    found.update((name.lower(), name) for name in wire_names)
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
