"""Responses, each resource defined once: its properties with their wire names (the camelCase
of the domain records' attributes, which the ADS Platform clients expect, contract §2), the ones
it computes (`statusCode` as a reader sees it, `failureCount`, the `Invoice.U` event type), the
ones sent only on request (include), and which ones filter and order may name. The OpenAPI
document's response schemas are these models' (gateway.openapi); they are closed, so an answer
cannot carry a field its schema does not declare: building it fails first. `WebhookModel` is
built from the `Webhook` record's fields (all but those marked INTERNAL or write-only,
gateway.models), a structured setting's part record as a model of its own (`_part_model`).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Generic, Self, TypeVar
from uuid import UUID

import orjson
from pydantic import ConfigDict, Field, create_model
from pydantic.alias_generators import to_camel

from gateway import lifecycle
from gateway.models import (
    Attempt,
    Authentication,
    AuthenticationKind,
    EventType,
    EventTypeDefinition,
    Marked,
    Notification,
    Scope,
    Webhook,
    WebhookRule,
    marked,
)
from gateway.resource import Resource
from gateway.wire_values import truncate


class WebhookRuleModel(Resource):
    """A rule: which table and event type (and records, by filter) a webhook receives."""

    webhook_rule_id: UUID
    webhook_id: UUID
    group_key: UUID
    table_key: str
    event_type: EventType
    filter: str | None
    created: datetime
    created_user_id: UUID
    modified: datetime
    modified_user_id: UUID


class EventTypeModel(Resource):
    """An entry of the event-type catalogue: a table and event type the platform publishes,
    and what partners read about it. With enforcement on, only declared ones are published,
    and each record must pass `schema`, if set."""

    event_type_id: UUID
    group_key: UUID
    table_key: str
    event_type: EventType
    name: str
    description: str | None
    category: str | None
    record_schema: dict[str, Any] | None = Field(
        alias="schema", description="The JSON Schema every record of this type passes."
    )
    deprecated: bool
    created: datetime
    created_user_id: UUID
    modified: datetime
    modified_user_id: UUID


def event_type(item: EventTypeDefinition) -> dict[str, Any]:
    """An EventTypeModel's JSON."""
    return EventTypeModel.copied(item).wire()


# include=... names of a webhook, lowercase -> what an error lists as allowed.
WEBHOOK_INCLUDES = {"webhookrules": "WebhookRules"}


class _WebhookModel(Resource):
    """A webhook; an expired Active webhook reads as Inactive. Its rules with
    include=WebhookRules."""

    ON_REQUEST = frozenset({"webhook_rules"})
    UNQUERIED = frozenset({"client_secret"})

    @classmethod
    def of(cls, hook: Webhook, now: datetime, rules: Sequence[WebhookRule] | None = None) -> Self:
        """The webhook as a reader sees it at `now`, with these rules if given."""
        status, message = lifecycle.effective_status(hook, now)
        computed: dict[str, Any] = {"status_code": status, "status_message": message}
        if rules is not None:
            computed["webhook_rules"] = [WebhookRuleModel.copied(r) for r in rules]
        return cls.copied(hook, **computed)


def _shown(record: type) -> dict[str, Any]:
    """A record's fields as an answer's, in order and each required: all but the INTERNAL
    and the write-only ones."""
    return {
        name: _answer_field(f)
        for name, f in marked(record).items()
        if not f.internal and not (f.settable and f.settable.write_only)
    }


def _answer_field(field: Marked) -> tuple[Any, Any]:
    """A record field as an answer's: a settable one with its marker's wire name, description
    and (a number) bounds; a shown one with its marker's description. A text's length is the
    request's rule only, so that an answer never fails on a text stored under an older limit."""
    mark = field.settable
    kind = _answer_type(field.type)
    if mark is None:
        return kind, Field(description=field.shown.description if field.shown else None)
    low, high = mark.bounds if field.type is int else (None, None)
    return kind, Field(alias=mark.wire, description=mark.description, ge=low, le=high)


def _answer_type(kind: Any) -> Any:
    """What an answer shows for a field of this type: a part record (gateway.models.Settable)
    as its model, a tuple of them as a list, anything else as it is."""
    if kind is not None and typing.get_origin(kind) in (types.UnionType, typing.Union):
        bare = [_answer_type(arg) for arg in typing.get_args(kind)]
        return functools.reduce(operator.or_, bare)
    if _is_part(kind):
        return _part_model(kind)
    args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple and args and _is_part(args[0]):
        return list[_part_model(args[0])]  # type: ignore[misc]
    return kind


def _is_part(kind: Any) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


class _Part(Resource):
    """A part record's object in an answer, read off the record."""

    model_config = ConfigDict(from_attributes=True)


@functools.cache
def _part_model(record: type) -> type[Resource]:
    """The answer's model of a part record (`<Record>Model`): its fields, as `_shown`."""
    model: type[Resource] = create_model(
        f"{record.__name__}Model",
        __base__=_Part,
        __doc__=record.__doc__,
        __module__=__name__,
        **_shown(record),
    )
    return model


if TYPE_CHECKING:  # to mypy a built class is a variable, not a type: it sees the base
    WebhookModel = _WebhookModel
else:
    WebhookModel = create_model(
        "WebhookModel",
        __base__=_WebhookModel,
        __doc__=_WebhookModel.__doc__,
        __module__=__name__,
        **_shown(Webhook),
        webhook_rules=(list[WebhookRuleModel], Field(default_factory=list)),
    )


def webhook(
    hook: Webhook, now: datetime, rules: Sequence[WebhookRule] | None = None
) -> dict[str, Any]:
    """A WebhookModel's JSON."""
    return WebhookModel.of(hook, now, rules).wire()


def rule(item: WebhookRule) -> dict[str, Any]:
    """A WebhookRuleModel's JSON."""
    return WebhookRuleModel.copied(item).wire()


class AuthenticationModel(Resource):
    """Credentials that webhooks of its group reference by authenticationId. A Basic one shows
    its username, a Header one its header's name; password and headerValue are write-only."""

    authentication_id: UUID
    group_key: UUID
    name: str
    kind: AuthenticationKind
    username: str | None
    header_name: str | None
    created: datetime
    created_user_id: UUID
    modified: datetime
    modified_user_id: UUID


def authentication(item: Authentication) -> dict[str, Any]:
    """An AuthenticationModel's JSON: never its sealed secret, which the model does not have."""
    return AuthenticationModel.copied(item).wire()


class AttemptModel(Resource):
    """One attempt of a notification (history include=Attempts)."""

    attempt: int = Field(ge=1)
    timestamp: datetime
    is_successful: bool
    response_status_code: str | None
    process_result_message: str | None
    request_message: str | None
    response_message: str | None


ATTEMPTS = "attempts"
# include=... names of a history entry, lowercase -> wire property.
HISTORY_INCLUDES = {
    "records": "records",
    "requestmessage": "requestMessage",
    "responsemessage": "responseMessage",
    "attempts": ATTEMPTS,
}


class WebhookHistoryTableStorageModel(Resource):
    """A notification as its webhook's history shows it. `select` picks which properties are
    sent, so none is required; the large ones come only with include, cut to a limit."""

    ON_REQUEST = frozenset({"records", "request_message", "response_message", "attempts"})
    SELECTABLE = True

    group_key: UUID
    webhook_id: UUID
    webhook_history_id: UUID
    event_type: str  # "Invoice.U"
    request_sent: bool
    is_successful: bool
    response_status_code: str | None
    process_result_message: str | None
    failure_count: int  # the failed attempts
    timestamp: datetime
    is_test: Annotated[
        bool,
        Field(description="A test send (POST /api/v1/Webhooks/{webhookId}/test): sent once, "
              "not retried, and never counted against the webhook's lifecycle."),
    ]  # fmt: skip
    records: str = ""  # the records, as JSON text
    request_message: str | None = None
    response_message: str | None = None
    attempts: list[AttemptModel] = Field(default_factory=list)

    @classmethod
    def of(cls, row: Notification, include: Collection[str], limit: int,
           logged: Sequence[Attempt] = ()) -> Self:  # fmt: skip
        """The entry with the includes named, each large text cut at `limit`."""
        computed: dict[str, Any] = {
            "webhook_history_id": row.notification_id,
            "event_type": f"{row.table_key}.{row.event_type.value}",
            "failure_count": row.attempts - (1 if row.is_successful else 0),
        }
        for name in include:
            if name == ATTEMPTS:
                computed["attempts"] = attempts(row, logged, limit)
            elif name == "records":
                computed["records"] = truncate(orjson.dumps(list(row.records)).decode(), limit)
            elif name == "requestMessage":
                computed["request_message"] = truncate(row.request_message, limit)
            else:
                computed["response_message"] = truncate(row.response_message, limit)
        return cls.copied(row, **computed)


def history(
    row: Notification,
    include: Collection[str],
    select: Collection[str] | None,
    limit: int,
    logged: Sequence[Attempt] = (),
) -> dict[str, Any]:
    """A history entry's JSON: with include=Attempts, every attempt in order: the failed ones
    from the attempt log (`logged`), then the successful one, which is the row's own. With
    select, only the properties named (lower-case wire names)."""
    entry = WebhookHistoryTableStorageModel.of(row, include, limit, logged)
    only = None if not select else {_selected()[name] for name in select if name in _selected()}
    return entry.wire(only)


@functools.cache
def _selected() -> dict[str, str]:
    """History attributes by lower-case wire name."""
    fields = WebhookHistoryTableStorageModel.model_fields
    return {to_camel(name).lower(): name for name in fields}


def attempts(row: Notification, logged: Sequence[Attempt], limit: int) -> list[AttemptModel]:
    """Every attempt of a notification, oldest first."""
    out = [
        AttemptModel.copied(
            a, is_successful=False, **_cut(a.request_message, a.response_message, limit)
        )
        for a in logged
    ]
    if row.is_successful:
        messages = _cut(row.request_message, row.response_message, limit)
        out.append(AttemptModel.copied(row, attempt=row.attempts, **messages))
    return out


def _cut(request: str | None, response: str | None, limit: int) -> dict[str, str | None]:
    return {
        "request_message": truncate(request, limit),
        "response_message": truncate(response, limit),
    }


R = TypeVar("R")


def batch_of(model: type[Resource]) -> Any:
    """The answer to a batch create: the objects created, in the order sent."""
    return Annotated[list[model], Field(min_length=1)]  # type: ignore[valid-type]


class ActionResultModel(Resource):
    """What a delete did."""

    messages: list[str]


class PortalSessionModel(Resource):
    """A portal link: open `url` in a browser before `linkExpiresAt`; the session it opens
    ends at `expiresAt`. The link opens one session only."""

    url: str
    expires_at: datetime
    link_expires_at: datetime
    group_key: UUID
    read_only: bool


class StatusModel(Resource):
    """Who is calling: any valid key may ask, whatever its scopes."""

    group_key: UUID
    api_key_id: UUID
    logged_in: bool
    user_name: str
    roles: list[Scope]
    environment: str
    version: str


class RetryResult(Resource):
    """A hand retry that was queued."""

    webhook_history_id: UUID
    status: str


class TestResult(Resource):
    """What a receiver answered a sample notification. The send is kept in the webhook's
    history (`isTest` true) under `webhookHistoryId`, with the same properties."""

    webhook_id: UUID
    webhook_history_id: UUID
    is_successful: Annotated[
        bool, Field(description="Whether the answer is a delivery by the webhook's successPolicy.")
    ]
    response_status_code: Annotated[
        str | None, Field(description='The answer\'s HTTP status, as history shows it ("200").')
    ]
    process_result_message: Annotated[
        str | None, Field(description='What came of it: "HTTP 200", or why no answer came.')
    ]
    latency_ms: float | None
    body: Annotated[str | None, Field(description="The start of the answer's body.")]


class EventsAccepted(Resource):
    """The events a publish stored, and how many notifications they made."""

    event_ids: list[UUID]
    notification_count: int


class Problem(Resource):
    """An RFC 7807 problem (gateway.app answers every GatewayError with one)."""

    ON_REQUEST = frozenset({"errors"})

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: Mapping[str, list[str]] = Field(default_factory=dict)  # validation problems only


class FetchResult(Resource, Generic[R]):
    """One page of a query's records."""

    records: list[R]
    total_count: int
    page_size: int
    page_number: int


def fetch_result(
    records: list[dict[str, Any]], total: int, size: int, number: int
) -> dict[str, Any]:
    """A FetchResult page of records already written as JSON."""
    page = FetchResult[dict[str, Any]](
        records=records, total_count=total, page_size=size, page_number=number
    )
    return page.wire()
