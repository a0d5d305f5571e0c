"""Request bodies, each defined once: its properties with their wire names, the validation of
each property and the rules between them, with field-named messages; and their JSON schemas
for /openapi.json.

Attributes are the domain records' names (`partition_key`); the wire name is their camelCase
(`partitionKey`), matched case-insensitively (the C# client sends PascalCase). Read-only
properties that clients echo back (webhookId, created, ...) are ignored; any other unknown
property is a 400, so a typo never passes silently. Rules that need the time or the settings
(a future expirationDate, a rule filter within the limits, records per event) read them from
the `Circumstances` that `parse` is given.

The webhook bodies are not written out: `WebhookCreate` and `WebhookPatch` are built from the
fields of the `Webhook` record marked `Settable` (gateway.models), each with its marker's type,
default, bounds and description; a field's rules beyond those (the callback URL, a future
expirationDate, no Errored) are in `_OWN_RULES`, and those between fields on the bodies. A
structured setting's part record (a header, the failure window) becomes a closed object built
the same way from its own marked fields (`_part_body`), whose rules are `_OWN_RULES`' too, under
"Part.field"; it is checked, then taken as the record.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import typing
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar
from urllib.parse import urlsplit
from uuid import UUID

import orjson
import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from gateway import catalogue, credentials, filters, headers, notices, payloads
from gateway.config import Settings
from gateway.errors import ValidationError
from gateway.filter_values import storable
from gateway.filters import MAX_FILTER_LENGTH
from gateway.models import (
    MAX_CONFIG_BYTES,
    MAX_HEADER_NAME,
    MAX_HEADER_VALUE,
    AuthenticationKind,
    ContentType,
    EventType,
    Header,
    HttpMethod,
    Settable,
    SignatureScheme,
    Webhook,
    WebhookStatus,
    settable,
    utcnow,
)
from gateway.signing import DEFAULT_HEADER

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
    "publickey",
    "authenticationid",
    "eventtypeid",
}
EVENT_TYPE_NAMES = {"i": "I", "u": "U", "d": "D", "insert": "I", "update": "U", "delete": "D"}


def _no_nul(value: str) -> str:
    # PostgreSQL's text cannot hold U+0000 where SQLite's can: refused alike on every store,
    # before it reaches either.
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (U+0000)")
    return value


# For the schema only (and so for clients and fuzzers): _no_nul checks it, with its own message.
NO_NUL: JsonDict = {"pattern": "^[^\\u0000]*$"}
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
_URL_SCHEMA: JsonDict = {"format": "uri", "maxLength": 250, "pattern": _URL_PATTERN}
# The same with require_https_callbacks (gateway.openapi puts it in the document).
HTTPS_URL_PATTERN = _URL_PATTERN.replace("[Ss]?://", "[Ss]://", 1)
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
    # Other names a property is taken by: lower-case alias -> wire name.
    ALIASES: ClassVar[Mapping[str, str]] = {}


def _optional_not_nullable(schema: dict[str, Any], model: type[Any]) -> None:
    """In the schema of a PATCH body, a property outside NULLABLE may be left out but not be
    null: `X | None = None` is how pydantic spells "optional", not what the server takes."""
    nullable = {model.model_fields[name].alias or to_camel(name) for name in model.NULLABLE}
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


# A GET notification carries no body, so a GET webhook sends ids only (contract §6).
_GET_SENDS_IDS: JsonDict = {
    "if": {
        "properties": {"callbackHttpMethod": {"const": "GET"}},
        "required": ["callbackHttpMethod"],
    },
    "then": {"properties": {"requestContentType": {"const": "Id"}}},
}


# Only an HMAC scheme takes a signature header: on create, none is StandardWebhooks; a PATCH
# without a scheme is judged with the stored one (checked_against).
def _schemes(names_header: bool) -> JsonDict:
    return {
        "properties": {"signatureScheme": {
            "enum": [s.value for s in SignatureScheme if s.names_header == names_header]}},
        "required": ["signatureScheme"],
    }  # fmt: skip


_NO_HEADER: JsonDict = {"properties": {"signatureHeader": {"type": "null"}}}
_HMAC_NAMES_HEADER: JsonDict = {"if": {"not": _schemes(True)}, "then": _NO_HEADER}
_NON_HMAC_TAKES_NO_HEADER: JsonDict = {"if": _schemes(False), "then": _NO_HEADER}


def check_method_format(method: HttpMethod, content: ContentType) -> None:
    """A GET webhook sends ids only; a PATCH checks it again with the stored values."""
    if method is HttpMethod.GET and content is ContentType.FULL:
        raise ValueError("a GET webhook carries no body, so it must use Id")


def _callback_url(value: str, info: ValidationInfo) -> str:
    # The URL is sent as written, so a space or control character would break (or, with CR LF,
    # split) the request line; urlsplit silently drops tabs and newlines, so look before it.
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError("must not contain spaces or control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http or https URL")
    if parts.scheme == "http" and _circumstances(info).settings.require_https_callbacks:
        raise ValueError("must be an https URL: this gateway accepts only HTTPS callbacks")
    if len(value) > 250:
        raise ValueError("must be at most 250 characters")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials")
    try:
        parts.port  # noqa: B018 - parsed lazily; raises for a port that is not 0-65535
    except ValueError as exc:
        raise ValueError(f"has an invalid port ({exc})") from exc
    return value


# A signature header is neither a name the gateway sets nor Authorization, which an
# authentication may set (gateway.headers).
_SIGNATURE_HEADER_SCHEMA = headers.name_schema(headers.AUTHORIZATION)


def _signature_header_name(value: str) -> str:
    return headers.check_name(value, headers.AUTHORIZATION)


def check_signature_header(scheme: SignatureScheme, header: str | None) -> None:
    """Only an HMAC scheme sends its signature in a header of the owner's naming; a PATCH
    checks it again with the stored scheme."""
    if header is not None and not scheme.names_header:
        raise ValueError(
            f"only HmacSha256Hex and HmacSha512Base64 send a signature header; {scheme.value} "
            "signs in webhook-signature"
        )


def _future(value: datetime | None, info: ValidationInfo) -> datetime | None:
    """A naive date is UTC; an expiration date must lie ahead (null: never expires)."""
    if value is None:
        return None
    aware = storable(value)
    if aware <= _circumstances(info).now:
        raise ValueError("must be in the future")
    return aware


def _event_type(value: Any) -> Any:
    if isinstance(value, str):
        return EVENT_TYPE_NAMES.get(value.strip().lower(), value)
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
    schema["allOf"] = [_NON_HMAC_TAKES_NO_HEADER]


def _not_errored(value: WebhookStatus) -> WebhookStatus:
    if value is WebhookStatus.ERRORED:
        raise ValueError("Errored is set by the gateway, not by a request")
    return value


def _asked_status(schema: JsonDict) -> None:
    """Errored is the gateway's to set; only these are asked for."""
    schema.clear()
    schema["enum"] = [WebhookStatus.ACTIVE.value, WebhookStatus.INACTIVE.value]


def _distinct_headers(value: tuple[Header, ...]) -> tuple[Header, ...]:
    headers.check_distinct(value)
    return value


MAX_CONFIG_DEPTH = 32  # levels, the config itself being one


def _config(value: dict[str, Any]) -> dict[str, Any]:
    """A config fits the body it is echoed in: not nested too deep to encode, and small."""
    if payloads.nests_deeper(value, MAX_CONFIG_DEPTH):
        raise ValueError(f"must nest at most {MAX_CONFIG_DEPTH} levels")
    try:
        size = len(orjson.dumps(value))
    except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits
        raise ValueError(f"cannot be sent as JSON ({exc})") from exc
    if size > MAX_CONFIG_BYTES:
        raise ValueError(f"must be at most {MAX_CONFIG_BYTES} bytes as compact JSON, not {size}")
    return value


_HEADER_NAME = headers.name_schema()
_HEADER_VALUE: JsonDict = {"pattern": headers.VALUE_PATTERN}

# A webhook field's rules beyond what its marker says (gateway.models.Settable), on its value;
# a part record's field's under "Part.field".
_OWN_RULES: dict[str, tuple[Any, ...]] = {
    "callback_url": (Field(json_schema_extra=_URL_SCHEMA), AfterValidator(_callback_url)),
    "expiration_date": (AfterValidator(_future),),
    "status_code": (Field(json_schema_extra=_asked_status), AfterValidator(_not_errored)),
    "signature_header": (
        Field(min_length=1, max_length=100, json_schema_extra=_SIGNATURE_HEADER_SCHEMA),
        AfterValidator(_signature_header_name),
    ),
    "headers": (AfterValidator(_distinct_headers),),
    "config": (AfterValidator(_config),),
    "Header.name": (Field(min_length=1, max_length=MAX_HEADER_NAME, json_schema_extra=_HEADER_NAME),
                    AfterValidator(headers.check_name)),
    "Header.value": (Field(max_length=MAX_HEADER_VALUE, json_schema_extra=_HEADER_VALUE),
                     AfterValidator(headers.check_value)),
}  # fmt: skip


def _value_type(name: str, kind: Any, mark: Settable) -> Any:
    """What a body takes for a webhook field's value (null aside): text without NUL, within its
    bounds; a number within its bounds; an enum in any case if its marker says so; a part
    record's object, or a list of them within its bounds; and the field's own rules, which
    replace the text rules."""
    low, high = mark.bounds
    rules = _OWN_RULES.get(name, ())
    if _is_part(kind):
        kind = _part_body(kind)
    elif typing.get_origin(kind) is tuple:
        kind = tuple[_part_body(typing.get_args(kind)[0]), ...]  # type: ignore[misc]
        rules = (Field(min_length=low, max_length=high), *rules)
    elif kind is str and not rules:
        rules = (Field(min_length=low, max_length=high, json_schema_extra=NO_NUL),
                 AfterValidator(_no_nul))  # fmt: skip
    elif kind is int:
        rules = (Field(ge=low, le=high), *rules)
    elif mark.any_case:
        rules = (BeforeValidator(_any_case(kind)), *rules)
    return Annotated[(kind, *rules)] if rules else kind


def _body_field(
    name: str, kind: Any, mark: Settable, *, patch: bool, part: str = ""
) -> tuple[Any, Any]:
    """A webhook field (or with `part`, a part record's) as a create or PATCH body's field:
    (type, FieldInfo). A PATCH may leave out any field; a create fills in the marker's
    default."""
    nullable = _admits_none(kind)
    value = _value_type(part + name, _without_none(kind), mark)
    optional = patch or nullable or (not mark.required and mark.default is None)
    default = None if patch else (... if mark.required else mark.default)
    info = Field(default, alias=_wire_name(name, mark), description=mark.description)
    return (value | None if optional else value), info


def _wire_name(name: str, mark: Settable) -> str:
    return mark.wire or to_camel(name)


def _admits_none(kind: Any) -> bool:
    return type(None) in typing.get_args(kind)


def _without_none(kind: Any) -> Any:
    if not _admits_none(kind):
        return kind
    (bare,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    return bare


def _is_part(kind: Any) -> bool:
    """Whether a field's type is a part record (gateway.models.Settable)."""
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


class _Part(BaseModel):
    """A part record's object: closed, its properties named in any case."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel)

    @model_validator(mode="before")
    @classmethod
    def _any_case_names(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        names = {alias.lower(): alias for alias in _attributes(cls)}
        return {names.get(str(key).lower(), key): value for key, value in data.items()}


@functools.cache
def _part_body(record: type[Any]) -> Any:
    """What a body takes for a part record: an object of its Settable fields (`<Record>In` in
    the schema), checked, then taken as the record."""
    name = record.__name__
    fields: dict[str, Any] = {
        attr: _body_field(attr, kind, mark, patch=False, part=f"{name}.")
        for attr, (kind, mark) in settable(record).items()
    }
    model = pydantic.create_model(
        f"{name}In", __base__=_Part, __doc__=record.__doc__, __module__=__name__, **fields
    )
    return Annotated[model, AfterValidator(lambda given: record(**dict(given)))]


def _any_case(kind: type[enum.Enum]) -> Any:
    """A before-validator that takes an enum's values in any letter case."""
    values = {str(member.value).lower(): member.value for member in kind}
    return lambda value: values.get(value.lower(), value) if isinstance(value, str) else value


class RuleFields(_Body):
    """What a rule receives: a table and event type, and records by filter."""

    table_key: TableKey
    event_type: EventType
    filter: FilterText | None = None

    _etype = field_validator("event_type", mode="before")(_event_type)
    _filter = field_validator("filter")(_rule_filter)


class RuleCreate(RuleFields):
    """A rule: which table and event type (and records, by filter) a webhook receives."""

    webhook_id: UUID


class WebhookRuleIn(RuleFields):
    """A rule created with its webhook (a create's webhookRules), checked as POST
    /api/v1/WebhookRules checks one; a webhookId or other read-only property is ignored."""

    @model_validator(mode="before")
    @classmethod
    def _as_top_level(cls, data: Any) -> Any:
        # Named in any case, echoed read-only properties dropped, as a body's own properties
        # are (`_canonical_keys`); an unknown one is left for `extra="forbid"` to refuse.
        if not isinstance(data, Mapping):
            return data
        spellings = _spellings(cls)
        named = {str(key).lower(): (key, value) for key, value in data.items()}
        return {spellings.get(low, key): value for low, (key, value) in named.items()
                if low in spellings or low not in READ_ONLY}  # fmt: skip


def _few_rules(
    value: list[WebhookRuleIn] | None, info: ValidationInfo
) -> list[WebhookRuleIn] | None:
    most = _circumstances(info).settings.max_batch_size
    if value is not None and len(value) > most:
        raise ValueError(f"send at most {most} rules with one webhook")
    return value


# null is none, as a client that serialises the whole ADS model sends it.
InlineRules = Annotated[list[WebhookRuleIn] | None, AfterValidator(_few_rules)]
INLINE_RULES: Any = Field(
    default=None,
    description="Rules to create with the webhook, in the same transaction: each is checked as "
    "POST /api/v1/WebhookRules checks one (without webhookId), and one refused refuses the whole "
    "create. The answer lists them when this property is a list.",
)


class WebhookBody(_Body):
    """What both webhook bodies share: the record's Settable fields (`_webhook_body` adds them)
    and what the handlers take of them."""

    ALIASES = {alias.lower(): _wire_name(name, mark) for name, (_, mark) in
               settable(Webhook).items() for alias in mark.aliases}  # fmt: skip
    if TYPE_CHECKING:  # a field, as every Settable one; the handlers pass it to the lifecycle
        status_code: WebhookStatus | None

    def written(self, given: Collection[str] | None = None) -> dict[str, Any]:
        """The fields to write as given (all if None), but those the lifecycle decides."""
        names = type(self).model_fields if given is None else given
        marks = settable(Webhook)
        return {
            name: getattr(self, name)
            for name in names
            if name in marks and not marks[name][1].lifecycle
        }


def _webhook_create_schema(schema: dict[str, Any]) -> None:
    schema.update(_GET_SENDS_IDS)
    schema["allOf"] = [_HMAC_NAMES_HEADER]


class _WebhookCreate(WebhookBody):
    """A webhook to create; it becomes Active once its callback passes the handshake."""

    model_config = ConfigDict(json_schema_extra=_webhook_create_schema)
    if TYPE_CHECKING:  # added by _webhook_body, after the Settable fields
        webhook_rules: list[WebhookRuleIn] | None

    @field_validator("request_content_type", check_fields=False)
    @classmethod
    def _sends_ids_on_get(cls, value: ContentType, info: ValidationInfo) -> ContentType:
        method = info.data.get("callback_http_method")
        if method is not None:
            check_method_format(method, value)
        return value

    @field_validator("signature_header", check_fields=False)
    @classmethod
    def _header_of_hmac(cls, value: str | None, info: ValidationInfo) -> str | None:
        scheme = info.data.get("signature_scheme")
        if scheme is not None:
            check_signature_header(scheme, value)
        return value

    @field_validator("headers", check_fields=False)
    @classmethod
    def _apart_from_the_signature(
        cls, value: tuple[Header, ...], info: ValidationInfo
    ) -> tuple[Header, ...]:
        scheme = info.data.get("signature_scheme")
        if scheme is not None:
            taken = signed_in(scheme, info.data.get("signature_header"))
            headers.check_apart_from(value, taken)
        headers.check_authorization(value, info.data.get("authentication_id"))
        return value


class _WebhookPatch(WebhookBody, _Patch):
    """Changes to a webhook; only the properties given change (the method and content type
    are checked together with the stored values, by checked_against)."""

    model_config = ConfigDict(json_schema_extra=_webhook_patch_schema)
    NULLABLE = frozenset(name for name, (kind, _) in settable(Webhook).items()
                         if _admits_none(kind))  # fmt: skip


def _webhook_body(name: str, base: type[WebhookBody], *, patch: bool) -> type[WebhookBody]:
    """A webhook body: each Settable field of the record, in order."""
    fields: dict[str, Any] = {
        attr: _body_field(attr, kind, mark, patch=patch)
        for attr, (kind, mark) in settable(Webhook).items()
    }
    if not patch:  # a webhook's rules come with its create, or on their own later
        fields["webhook_rules"] = (InlineRules, INLINE_RULES)
    return pydantic.create_model(
        name, __base__=base, __doc__=base.__doc__, __module__=__name__, **fields
    )


WebhookCreate = _webhook_body("WebhookCreate", _WebhookCreate, patch=False)
WebhookPatch = _webhook_body("WebhookPatch", _WebhookPatch, patch=True)


def checked_against(hook: Webhook, values: dict[str, Any]) -> dict[str, Any]:
    """A PATCH's values, checked with the stored ones they are written beside: a GET webhook
    must send ids, only an HMAC scheme takes a signature header, and no owner's header is the
    one it signs in, nor Authorization beside an authentication, whichever of them the PATCH
    names."""
    method = values.get("callback_http_method", hook.callback_http_method)
    content = values.get("request_content_type", hook.request_content_type)
    try:
        check_method_format(method, content)
    except ValueError as exc:
        raise ValidationError.field("requestContentType", str(exc)) from exc
    scheme = values.get("signature_scheme", hook.signature_scheme)
    try:
        check_signature_header(scheme, values.get("signature_header"))
    except ValueError as exc:
        raise ValidationError.field("signatureHeader", str(exc)) from exc
    header = values.get("signature_header", hook.signature_header)
    try:
        given = values.get("headers", hook.headers)
        headers.check_apart_from(given, signed_in(scheme, header))
        headers.check_authorization(given, values.get("authentication_id", hook.authentication_id))
    except ValueError as exc:
        raise ValidationError.field("headers", str(exc)) from exc
    return values


def signed_in(scheme: SignatureScheme, header: str | None) -> str | None:
    """The header a webhook's signature travels in, if the owner names it (an HMAC scheme's,
    by default X-Webhook-Signature)."""
    return (header or DEFAULT_HEADER) if scheme.names_header else None


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

    @field_validator("table_key")
    @classmethod
    def _not_lifecycle(cls, table_key: str) -> str:
        """Lifecycle notices come from the gateway alone: a published one could be forged."""
        if table_key.casefold() == notices.TABLE_KEY.casefold():
            raise ValueError(
                f"{notices.TABLE_KEY} is the gateway's own table (lifecycle notices); "
                "publish under another tableKey"
            )
        return table_key

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


AuthenticationName = Annotated[
    str, Field(min_length=1, max_length=100, json_schema_extra=NO_NUL), AfterValidator(_no_nul)
]
Kind = Annotated[AuthenticationKind, BeforeValidator(_any_case(AuthenticationKind))]
# The patterns are for the schema only: the validators check the same, with their own messages.
_PRINTABLE = r"^[^\u0000-\u001f\u007f-\u009f]*$"
_WRITE_ONLY = "Write-only: stored sealed, never answered."
Username = Annotated[
    str,
    Field(min_length=1, max_length=256,
          json_schema_extra={"pattern": r"^[^:\u0000-\u001f\u007f-\u009f]*$"}),
    AfterValidator(credentials.check_username),
]  # fmt: skip
Password = Annotated[
    str,
    Field(max_length=1024, description=_WRITE_ONLY, json_schema_extra={"pattern": _PRINTABLE}),
    AfterValidator(credentials.check_printable),
]
HeaderName = Annotated[
    str,
    Field(min_length=1, max_length=100, json_schema_extra=_HEADER_NAME),
    AfterValidator(headers.check_name),
]  # fmt: skip
HeaderValue = Annotated[
    str,
    Field(min_length=1, max_length=4096, description=_WRITE_ONLY,
          json_schema_extra=_HEADER_VALUE),
    AfterValidator(headers.check_value),
]  # fmt: skip
# Each kind's own fields: a create gives all of them, and never another kind's.
KIND_FIELDS = {
    AuthenticationKind.BASIC: ("username", "password"),
    AuthenticationKind.HEADER: ("header_name", "header_value"),
}


def _kind_rules(*, complete: bool) -> Any:
    """For the schema: a kind's fields are not another kind's, and (`complete`) all present."""

    def extra(schema: dict[str, Any], model: type[Any]) -> None:
        if not complete:
            _optional_not_nullable(schema, model)
        rules = []
        for kind, own in KIND_FIELDS.items():
            others = [to_camel(n) for k, names in KIND_FIELDS.items() if k is not kind
                      for n in names]  # fmt: skip
            then: dict[str, Any] = {"not": {"anyOf": [{"required": [n]} for n in others]}}
            if complete:
                then = {"required": [to_camel(n) for n in own],
                        "properties": {**{to_camel(n): {"type": "string"} for n in own},
                                       **{n: {"type": "null"} for n in others}}}  # fmt: skip
            test = {"properties": {"kind": {"const": kind.value}}, "required": ["kind"]}
            rules.append({"if": test, "then": then})
        schema["allOf"] = rules

    return extra


class AuthenticationCreate(_Body):
    """A reusable authentication: Basic (username and password) or Header (headerName and
    headerValue), whichever `kind` says. password and headerValue are write-only."""

    model_config = ConfigDict(json_schema_extra=_kind_rules(complete=True))

    name: AuthenticationName
    kind: Kind
    username: Username | None = None
    password: Password | None = None
    header_name: HeaderName | None = None
    header_value: HeaderValue | None = None


class AuthenticationPatch(_Patch):
    """Changes to an authentication; only the properties given change. A change of kind gives
    all of the new kind's fields."""

    model_config = ConfigDict(json_schema_extra=_kind_rules(complete=False))

    name: AuthenticationName | None = None
    kind: Kind | None = None
    username: Username | None = None
    password: Password | None = None
    header_name: HeaderName | None = None
    header_value: HeaderValue | None = None


def check_kind_fields(
    kind: AuthenticationKind, body: BaseModel, *, complete: bool, where: str = ""
) -> None:
    """An authentication body gives only its kind's fields, and all of them if `complete` (a
    create, or a change of kind): a 400 naming each field that breaks this."""
    given = {name for name in body.model_fields_set if getattr(body, name) is not None}
    errors: dict[str, list[str]] = {}
    for owner, names in KIND_FIELDS.items():
        for name in names:
            wire = f"{where}{to_camel(name)}"
            if owner is not kind and name in given:
                errors[wire] = [f"is for a {owner.value} authentication, not a {kind.value} one"]
            elif owner is kind and complete and name not in given:
                errors[wire] = [f"is required for a {kind.value} authentication"]
    if errors:
        detail = "; ".join(f"{field}: {msgs[0]}" for field, msgs in errors.items())
        raise ValidationError(detail, errors=errors)


def _record_schema(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A record schema is saved only if it is a JSON Schema the gateway can use."""
    if value is not None and (problem := catalogue.schema_problem(value)) is not None:
        raise ValueError(problem)
    return value


_SCHEMA_DESCRIPTION = (
    "A JSON Schema (draft 4 to 2020-12, by its $schema; 2020-12 if none) that every record of "
    "this type passes when the gateway enforces the catalogue; null: any record. It must be "
    "valid against its draft's meta-schema and may not $ref anything outside itself."
)
EventTypeName = Annotated[
    str, Field(min_length=1, max_length=100, json_schema_extra=NO_NUL), AfterValidator(_no_nul)
]
EventTypeText = Annotated[
    str, Field(max_length=1000, json_schema_extra=NO_NUL), AfterValidator(_no_nul)
]
CategoryText = Annotated[
    str, Field(max_length=100, json_schema_extra=NO_NUL), AfterValidator(_no_nul)
]


class EventTypeCreate(_Body):
    """An event type to declare: a table and event type the platform publishes."""

    table_key: TableKey
    event_type: EventType
    name: EventTypeName
    description: EventTypeText | None = None
    category: CategoryText | None = None
    record_schema: dict[str, Any] | None = Field(
        None, alias="schema", description=_SCHEMA_DESCRIPTION
    )
    deprecated: StrictBool = False

    _etype = field_validator("event_type", mode="before")(_event_type)
    _schema = field_validator("record_schema")(_record_schema)


class EventTypePatch(_Patch):
    """Changes to an event type; only the properties given change. Its table and event type
    never do: declare another instead."""

    NULLABLE = frozenset({"description", "category", "record_schema"})

    name: EventTypeName | None = None
    description: EventTypeText | None = None
    category: CategoryText | None = None
    record_schema: dict[str, Any] | None = Field(
        None, alias="schema", description=_SCHEMA_DESCRIPTION
    )
    deprecated: StrictBool | None = None

    _schema = field_validator("record_schema")(_record_schema)


class PortalSessionCreate(_Body):
    """A portal link for the caller's group: its session lasts `expiresInSeconds` from now
    (60 to 86400, default 3600) and changes nothing if `readOnly`."""

    expires_in_seconds: int = Field(default=3600, ge=60, le=86_400)
    read_only: StrictBool = False


M = TypeVar("M", bound=_Body)


def parse(
    model: type[M], data: Any, *, where: str = "", given: Circumstances | None = None
) -> tuple[M, set[str]]:
    """Validate one JSON object; return the model and the attributes that were given."""
    canonical = _canonical(model, data, where)
    names = _attributes(model)
    return _validated(model, canonical, where, given), {names[alias] for alias in canonical}


def parse_batch(
    model: type[M], body: Any, *, most: int, noun: str, given: Circumstances
) -> list[M]:
    """One object or an array of 1 to `most` of them; errors name the item ("[2].name")."""
    items = body if isinstance(body, list) else [body]
    if not items or len(items) > most:
        raise ValidationError.field("body", f"send between 1 and {most} {noun}")
    # Item by item, as `parse` but without the attributes given, which a batch has no use for
    # (a publish's events come by the hundred).
    parsed = []
    for i, item in enumerate(items):
        where = f"[{i}]."
        parsed.append(_validated(model, _canonical(model, item, where), where, given))
    return parsed


def _canonical(model: type[_Body], data: Any, where: str) -> dict[str, Any]:
    """A JSON object's properties under their wire names (`_canonical_keys`)."""
    if not isinstance(data, Mapping):
        raise ValidationError.field(where.removesuffix(".") or "body", "must be a JSON object")
    return _canonical_keys(model, data, where)


def _validated(
    model: type[M], canonical: dict[str, Any], where: str, given: Circumstances | None
) -> M:
    try:
        return model.model_validate(canonical, context=given or Circumstances())
    except pydantic.ValidationError as exc:
        raise _translate(exc, where) from exc


@functools.cache
def _attributes(model: type[BaseModel]) -> dict[str, str]:
    """Each field's attribute by its wire name."""
    return {info.alias or name: name for name, info in model.model_fields.items()}


@functools.cache
def _spellings(model: type[_Body]) -> dict[str, str]:
    """Each field's wire name by its lower-case wire name and by the lower-case aliases that
    lead to it (a field's own name wins). Worked out once per model: pydantic answers
    model_fields through a property that showed in profiles of the publish path, once per
    event."""
    found = dict(model.ALIASES)
    found.update((name.lower(), name) for name in _attributes(model))
    return found


def _canonical_keys(model: type[_Body], data: Mapping[str, Any], where: str) -> dict[str, Any]:
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
    models: list[type[BaseModel]] = [
        WebhookCreate, WebhookPatch, RuleCreate, RulePatch, EventIn, AuthenticationCreate,
        AuthenticationPatch, EventTypeCreate, EventTypePatch, PortalSessionCreate,
    ]  # fmt: skip
    return {
        m.__name__: m.model_json_schema(ref_template="#/components/schemas/{model}") for m in models
    }
