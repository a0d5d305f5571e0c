"""Domain records: immutable (frozen, or `record` for the hot ones), timezone-aware, with the
enums of contract §2 and §5.

These are what the stores keep and return. The wire shape (camelCase JSON) is produced by
`gateway.wire`; input validation lives in `gateway.schemas`. A webhook's fields say themselves
what an owner may set (`Settable`) and what the wire never shows (`INTERNAL`): the request
bodies and the answer's model are built from them, so a new setting is one field here.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar, dataclass_transform
from uuid import UUID

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def record(cls: type[T]) -> type[T]:
    """A slotted dataclass that type checkers hold immutable, built as a plain one at run time.

    For the records made by the hundred per request (events, notifications, attempt outcomes):
    a frozen dataclass's __init__ sets every field through object.__setattr__, and building a
    Notification took 4.2 us that way against 0.4 us plain (timeit). mypy still refuses any
    assignment to their fields (frozen_default); changes go through dataclasses.replace. Unlike
    frozen ones they are not hashable.
    """
    return dataclass(slots=True)(cls)


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class WebhookStatus(enum.StrEnum):
    ACTIVE = "Active"
    INACTIVE = "Inactive"
    ERRORED = "Errored"


class StatusReason(enum.StrEnum):
    """Why a webhook is not Active; kept beside the status, not on the wire."""

    PAUSED = "paused"  # by its owner
    EXPIRED = "expired"  # its expirationDate passed
    UNSUBSCRIBED = "unsubscribed"  # the callback answered 410 Gone
    FAILING = "failing"  # Errored: past retryCount consecutive failures, or its failureWindow
    UNVERIFIED = "unverified"  # Errored: its callback failed a re-verification handshake


class ContentType(enum.StrEnum):
    FULL = "Full"
    ID = "Id"


class HttpMethod(enum.StrEnum):
    GET = "GET"
    POST = "POST"
    PATCH = "PATCH"
    PUT = "PUT"


class SuccessPolicy(enum.StrEnum):
    """Which answers to a delivery count as delivered (a webhook's successPolicy)."""

    ANY_2XX = "Any2xx"
    ONLY_200 = "Only200"


class RetryScope(enum.StrEnum):
    """Which failed deliveries are tried again (a webhook's retryPolicy)."""

    ALL_FAILURES = "AllFailures"
    SERVER_ERRORS_ONLY = "ServerErrorsOnly"  # and 429, timeouts and connection errors


class DeliveryOrder(enum.StrEnum):
    """Whether a webhook's notifications go out in sequence order (a webhook's deliveryOrder)."""

    UNORDERED = "Unordered"  # several in flight at once, retries out of order: the fast choice
    STRICT = "Strict"  # one in flight, in sequence order; a failed one holds the rest back


class EventType(enum.StrEnum):
    INSERT = "I"
    UPDATE = "U"
    DELETE = "D"


class SignatureScheme(enum.StrEnum):
    """How a webhook's requests are signed (gateway.signing)."""

    STANDARD_WEBHOOKS = "StandardWebhooks"  # v1: HMAC-SHA256 of "id.timestamp.payload"
    STANDARD_WEBHOOKS_ED25519 = "StandardWebhooksEd25519"  # v1a: Ed25519 of the same
    HMAC_SHA256_HEX = "HmacSha256Hex"  # "sha256=<hex>" of the payload, in signatureHeader
    HMAC_SHA512_BASE64 = "HmacSha512Base64"  # base64 of the raw digest, in signatureHeader

    @property
    def names_header(self) -> bool:
        """Whether its signature travels in the header `signatureHeader` names."""
        return self in _HMAC_SCHEMES


_HMAC_SCHEMES = frozenset({SignatureScheme.HMAC_SHA256_HEX, SignatureScheme.HMAC_SHA512_BASE64})


class NotificationState(enum.StrEnum):
    """Where a notification stands in the delivery pipeline."""

    PENDING = "pending"  # due at next_attempt_at
    PARKED = "parked"  # its webhook is not Active; released on reactivation
    # Queued behind an earlier notification of a Strict webhook: never claimed, parked or
    # released as it is; it becomes pending (or parked) when it is the head of the queue.
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    # Failed for good (cannot be rendered, or an answer its retryPolicy does not retry); may be
    # retried by hand.
    FAILED = "failed"


class AuthenticationKind(enum.StrEnum):
    BASIC = "Basic"  # Authorization: Basic base64(username:password)
    HEADER = "Header"  # one header, headerName: headerValue


class Scope(enum.StrEnum):
    WEBHOOKS = "webhooks"
    EVENTS = "events"


@dataclass(frozen=True, slots=True)
class ApiKey:
    api_key_id: UUID
    group_key: UUID
    group_name: str
    key_hash: str  # sha256 hex of the secret part; the key itself is never stored
    scopes: frozenset[Scope]
    created: datetime
    revoked: datetime | None = None


@dataclass(frozen=True, slots=True)
class Settable:
    """Marks a record field (in `Annotated`) that its owner sets through the API, with what the
    wire needs of it. gateway.schemas builds the create and PATCH bodies from these (a PATCH
    may give any of them, and null where the field's type allows None), gateway.wire gives the
    answer's field its description, and the store lets a PATCH write it (store.base.EDITABLE)
    unless the lifecycle decides it.

    A structured setting is a `part` record (a frozen dataclass whose fields are marked too),
    or a tuple of them: the body takes a JSON object (a list of them) checked field by field,
    the answer shows one, and the store keeps it as JSON (gateway.store.codec)."""

    description: str  # for the OpenAPI document
    required: bool = False  # on create; else `default` when left out
    default: Any = None
    # A text's length, a number's value or a list's length, each end inclusive (None: open).
    bounds: tuple[int | None, int | None] = (None, None)
    wire: str | None = None  # the wire name, when not the camelCase of the field's
    aliases: tuple[str, ...] = ()  # other names taken on input, in any case
    any_case: bool = False  # an enum value is taken in any letter case
    lifecycle: bool = False  # asked of gateway.lifecycle, which decides what is stored
    write_only: bool = False  # taken on input, never in an answer (nor in a log)


@dataclass(frozen=True, slots=True)
class Shown:
    """Marks a record field (in `Annotated`) that the wire shows but no owner sets, with its
    description for the OpenAPI document."""

    description: str


@dataclass(frozen=True, slots=True)
class Internal:
    """Marks a record field (in `Annotated`) the gateway keeps for itself: never on the wire."""


INTERNAL = Internal()


class Marked(typing.NamedTuple):
    """A record field's type without its markers, its Settable marker if it has one, whether
    it is INTERNAL, and its Shown marker if it has one."""

    type: Any
    settable: Settable | None
    internal: bool
    shown: Shown | None = None


@functools.cache
def marked(cls: type) -> dict[str, Marked]:
    """Every field of a record class in order, with its markers."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = {}
    for name in (f.name for f in dataclasses.fields(cls)):
        hint = hints[name]
        kind, *marks = typing.get_args(hint) if typing.get_origin(hint) is Annotated else (hint,)
        settable = next((m for m in marks if isinstance(m, Settable)), None)
        shown = next((m for m in marks if isinstance(m, Shown)), None)
        out[name] = Marked(kind, settable, INTERNAL in marks, shown)
    return out


def settable(cls: type) -> dict[str, tuple[Any, Settable]]:
    """The fields of a record class that an owner sets, in order: name -> (type, marker)."""
    return {name: (f.type, f.settable) for name, f in marked(cls).items() if f.settable}


# Request settings (gateway.headers checks a header's name and value beyond these bounds).
MAX_HEADERS, MAX_HEADER_NAME, MAX_HEADER_VALUE = 20, 100, 1000
MAX_CONFIG_BYTES = 2048  # a webhook's config, as compact JSON


@dataclass(frozen=True, slots=True)
class Header:
    """A header its owner adds to every request to a webhook's callback."""

    name: Annotated[
        str,
        Settable("An HTTP token, not one the gateway sets itself; names compare in any case.",
                 required=True, bounds=(1, MAX_HEADER_NAME)),
    ]  # fmt: skip
    value: Annotated[
        str,
        Settable("Visible ASCII characters and inner spaces.", required=True,
                 bounds=(0, MAX_HEADER_VALUE)),
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class FailureWindow:
    """A webhook becomes Errored when this many failed attempts fall within this many seconds
    (besides retryCount's consecutive rule)."""

    count: Annotated[int, Settable("Failed attempts.", required=True, bounds=(1, 1000))]
    seconds: Annotated[
        int, Settable("The window, in seconds (at most 7 days).", required=True,
                      bounds=(1, 604_800))
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Webhook:
    """A subscription. Its Settable fields are what an owner sets (the method before the
    content type: the content type's check reads it); all but the INTERNAL ones are on the
    wire, as gateway.wire.WebhookModel."""

    webhook_id: UUID
    group_key: UUID
    name: Annotated[
        str, Settable("The owner's name for the webhook.", required=True, bounds=(1, 100))
    ]
    status_code: Annotated[
        WebhookStatus,
        Settable(
            "Active receives notifications; Inactive does not (paused, expired or "
            "unsubscribed); Errored: too many failures (retryCount, failureWindow; its "
            "statusMessage says which). An owner asks for Active "
            "(the default on create) or Inactive; only the gateway sets Errored.",
            lifecycle=True,
        ),
    ]
    status_message: str | None
    client_secret: str
    callback_http_method: Annotated[
        HttpMethod,
        Settable("How notifications are sent; a GET one carries ids only.", required=True,
                 any_case=True),
    ]  # fmt: skip
    request_content_type: Annotated[
        ContentType,
        Settable("Full sends the changed records, Id only their ids.", required=True,
                 aliases=("emitFormat",), any_case=True),
    ]  # fmt: skip
    callback_url: Annotated[
        str,
        Settable("The absolute http(s) URL notifications go to; it must pass the handshake.",
                 required=True),
    ]  # fmt: skip
    expiration_date: Annotated[
        datetime | None,
        Settable("No notifications after this time (null: never expires)."),
    ]
    retry_count: Annotated[
        int,
        Settable("Consecutive failed notifications, not counting the current one, before the "
                 "webhook becomes Errored.", default=3, bounds=(0, 5)),
    ]  # fmt: skip
    created: datetime
    created_user_id: UUID
    modified: datetime
    modified_user_id: UUID
    partition_key: Annotated[
        str | None, Settable("Free text for the owner's own use.", bounds=(None, 100))
    ] = None
    signature_scheme: Annotated[
        SignatureScheme,
        Settable("How requests are signed: StandardWebhooks (v1, HMAC-SHA256, keyed by the "
                 "clientSecret's base64), StandardWebhooksEd25519 (v1a, verified with "
                 "publicKey), HmacSha256Hex (\"sha256=<hex HMAC-SHA256 of the payload>\") or "
                 "HmacSha512Base64 (base64 of the HMAC-SHA512 digest of the payload); the HMAC "
                 "ones are keyed by the clientSecret text and sent in signatureHeader.",
                 default=SignatureScheme.STANDARD_WEBHOOKS),
    ] = SignatureScheme.STANDARD_WEBHOOKS  # fmt: skip
    signature_header: Annotated[
        str | None,
        Settable("The header an HMAC scheme's signature is sent in (default "
                 "X-Webhook-Signature; null with the other schemes, which use "
                 "webhook-signature).", bounds=(1, 100)),
    ] = None  # fmt: skip
    public_key: Annotated[
        str | None,
        Shown("With StandardWebhooksEd25519: whpk_ + base64 of the raw 32-byte Ed25519 public "
              "key that verifies the v1a signatures; null with the other schemes."),
    ] = None  # fmt: skip
    success_policy: Annotated[
        SuccessPolicy,
        Settable("Which answers count as delivered: Any2xx (the default) any 2xx status; "
                 "Only200 HTTP 200 alone, any other status (2xx included) is a failed attempt.",
                 default=SuccessPolicy.ANY_2XX, any_case=True),
    ] = SuccessPolicy.ANY_2XX  # fmt: skip
    retry_policy: Annotated[
        RetryScope,
        Settable("Which failed attempts are retried: AllFailures (the default) every one; "
                 "ServerErrorsOnly timeouts, connection errors, 429 and 5xx only, and any other "
                 "answer fails the notification for good (in its history, counted toward "
                 "retryCount, not retried). 410 Gone unsubscribes under both.",
                 default=RetryScope.ALL_FAILURES, any_case=True),
    ] = RetryScope.ALL_FAILURES  # fmt: skip
    authentication_id: Annotated[
        UUID | None,
        Settable("An Authentication of the same group whose credentials go with every request "
                 "to the callback (handshakes, test sends, deliveries); null: none."),
    ] = None  # fmt: skip
    headers: Annotated[
        tuple[Header, ...],
        Settable(f"Up to {MAX_HEADERS} headers sent on every request to the callback: "
                 "handshakes, test sends and notifications.", default=(),
                 bounds=(None, MAX_HEADERS)),
    ] = ()  # fmt: skip
    # repr=False: kept out of any log line or error that prints the record.
    config: Annotated[
        dict[str, Any] | None,
        Settable(f"A JSON object (at most {MAX_CONFIG_BYTES} bytes as compact JSON) echoed as "
                 "`config` in every notification body (not in a GET's query string); "
                 "write-only: no answer shows it. null clears it.", write_only=True),
    ] = field(default=None, repr=False)  # fmt: skip
    failure_window: Annotated[
        FailureWindow | None,
        Settable("Besides retryCount's rule, the webhook becomes Errored when `count` failed "
                 "attempts fall within `seconds` (null: no such rule)."),
    ] = None  # fmt: skip
    delivery_order: Annotated[
        DeliveryOrder,
        Settable("Unordered (the default): up to the gateway's per-webhook concurrency in "
                 "flight at once, a failed one retried while later ones go out. Strict: one "
                 "in flight at a time, in sequence order; a failed one is retried before "
                 "anything after it is sent (the queue waits behind it), and only a permanent "
                 "failure lets the queue move on. A change applies once the notifications in "
                 "flight have settled.", default=DeliveryOrder.UNORDERED, any_case=True),
    ] = DeliveryOrder.UNORDERED  # fmt: skip
    # Delivery bookkeeping.
    failure_count: Annotated[int, INTERNAL] = 0  # consecutive failed attempts
    # Still signs until previous_secret_expires.
    previous_secret: Annotated[str | None, INTERNAL] = None
    previous_secret_expires: Annotated[datetime | None, INTERNAL] = None
    # StandardWebhooksEd25519's private key (whsk_ + base64 of the raw 32 bytes), and the one
    # it replaced, which still signs until previous_secret_expires.
    signing_key: Annotated[str | None, INTERNAL] = None
    previous_signing_key: Annotated[str | None, INTERNAL] = None
    status_reason: Annotated[StatusReason | None, INTERNAL] = None  # why it is not Active
    # failureWindow counts no failed attempt before this (its last reactivation).
    window_start: Annotated[datetime | None, INTERNAL] = None
    # The expirationDate an `expiring` notice went out for (gateway.notices): once per date.
    expiry_warned_for: Annotated[datetime | None, INTERNAL] = None
    # When its callback last passed a handshake (create, PATCH, re-verification), and when the
    # re-verification sweep runs it next (None: to be scheduled; gateway.lifecycle).
    verified_at: Annotated[datetime | None, INTERNAL] = None
    reverify_due: Annotated[datetime | None, INTERNAL] = None


@record
class Recipient:
    """A webhook as publishing reads it when one of its rules takes an event: who receives,
    and what decides whether its notification is handed over, parked or queued (a first
    guess; the store decides in its transaction). Reading every column of each webhook, a
    publish to 1,000 webhooks spent more on decoding them than on storing its notifications."""

    webhook_id: UUID
    group_key: UUID
    status_code: WebhookStatus
    expiration_date: datetime | None
    delivery_order: DeliveryOrder


@dataclass(frozen=True, slots=True)
class WebhookRule:
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


@dataclass(frozen=True, slots=True)
class Authentication:
    """Credentials that webhooks of its group reference (`Webhook.authentication_id`), so that
    changing them once changes them for all. The secret part (a Basic password, a Header
    value) is kept only sealed (gateway.sealed, bound to the id): never in the clear, never on
    the wire."""

    authentication_id: UUID
    group_key: UUID
    name: str
    kind: AuthenticationKind
    username: str | None  # Basic
    header_name: str | None  # Header
    sealed_secret: str
    created: datetime
    created_user_id: UUID
    modified: datetime
    modified_user_id: UUID


@dataclass(frozen=True, slots=True)
class EventTypeDefinition:
    """One entry of a group's event-type catalogue: a (table, event type) the platform
    publishes, what partners read about it, and optionally a JSON Schema every record of it
    must pass when the gateway enforces the catalogue (gateway.catalogue)."""

    event_type_id: UUID
    group_key: UUID
    table_key: str
    event_type: EventType
    name: str
    description: str | None
    category: str | None
    # The JSON Schema of one record (an object), or None. Not `schema`: pydantic's models
    # have a method by that name; the wire calls it `schema`.
    record_schema: dict[str, Any] | None
    deprecated: bool
    created: datetime
    created_user_id: UUID
    modified: datetime
    modified_user_id: UUID


@record
class Event:
    event_id: UUID
    group_key: UUID
    table_key: str
    event_type: EventType
    records: tuple[dict[str, Any], ...]
    created: datetime


@record
class Due:
    """A notification as a claim leases it to a delivery worker: what sending it and settling
    its attempt read, and no more. The row's last attempt (its messages, its flags, its times)
    is of no use to the next one, and reading those columns back cost a claim about a tenth of
    a notification's instructions in the worker (bench.worker_drain under callgrind)."""

    notification_id: UUID
    group_key: UUID
    webhook_id: UUID
    event_id: UUID
    table_key: str
    event_type: EventType
    records: tuple[dict[str, Any], ...]
    sequence: int
    triggered_at: datetime
    attempts: int
    lease_until: datetime | None
    lease_owner: str | None


@record
class Notification:
    """One event's delivery to one webhook; also its history row (webhookHistoryId)."""

    notification_id: UUID  # the `webhook-id` header on every attempt
    group_key: UUID
    webhook_id: UUID
    event_id: UUID
    table_key: str
    event_type: EventType
    records: tuple[dict[str, Any], ...]  # the records that matched this webhook's rules
    sequence: int  # per-webhook, increasing
    triggered_at: datetime
    state: NotificationState
    next_attempt_at: datetime
    created: datetime
    attempts: int = 0
    lease_until: datetime | None = None
    lease_owner: str | None = None
    request_sent: bool = False
    is_successful: bool = False
    response_status_code: str | None = None
    process_result_message: str | None = None
    request_message: str | None = None
    response_message: str | None = None
    timestamp: datetime = field(default_factory=utcnow)  # last change
    # A test send (POST .../test): recorded finished, never claimed, retried or counted
    # against the webhook's lifecycle.
    is_test: bool = False


# What the delivery path sends: a claimed notification, or a whole one (one the publish path
# hands to its own process's worker, a test send).
Deliverable = Due | Notification


@record
class Attempt:
    """One failed delivery attempt of a notification, kept when a later attempt replaces it on
    the notification's row: the history keeps why every attempt failed."""

    notification_id: UUID
    attempt: int  # 1 for the first request sent
    timestamp: datetime
    response_status_code: str | None
    process_result_message: str | None
    request_message: str | None
    response_message: str | None
