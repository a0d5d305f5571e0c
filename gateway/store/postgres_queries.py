"""The PostgreSQL store's own SQL, by name, and how records map to rows.

Its statements are `statements/shared.sql`'s overlaid by `statements/postgres.sql`'s (row
locks, arrays, NOTIFY, the delivery path), served as this module's attributes under the names
`SqlStore` uses for both dialects (`__getattr__`). Their named parameters (`:name`) are
numbered as asyncpg's (`$1`) once, as they are read (`number`); text the store makes as it runs
(a listing's filter, an owner's edit) is numbered as it runs, once per text (`sql`, cached).

Values are native: uuid, timestamptz (aware datetimes), boolean, bigint, text[] for scopes, and
`json` text for records.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import orjson

from gateway.models import (
    ApiKey,
    Attempt,
    ContentType,
    EventType,
    HttpMethod,
    Notification,
    NotificationState,
    Scope,
    StatusReason,
    Webhook,
    WebhookRule,
    WebhookStatus,
)
from gateway.outcomes import AttemptOutcome, Settlement
from gateway.store import queries as shared

MIGRATIONS = Path(__file__).parent / "migrations" / "postgres"
R = TypeVar("R", ApiKey, Webhook, WebhookRule, Notification, Attempt)
Params = Mapping[str, Any]
# `:name`, but not the second colon of a `::type` cast.
_NAMED = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
# The LISTEN/NOTIFY channels (steps.Notify), named in queries.py.
NEW_WORK_CHANNEL, WEBHOOK_CHANGED_CHANNEL = shared.NEW_WORK_CHANNEL, shared.WEBHOOK_CHANGED_CHANNEL
# Where add_events reads and numbers a notification row (notification_row: by name).
ROW_GROUP, ROW_WEBHOOK, ROW_SEQUENCE, ROW_STATE = "group_key", "webhook_id", "sequence", "state"
ROW_LEASE_UNTIL, ROW_LEASE_OWNER = "lease_until", "lease_owner"
ROW_MESSAGE = "process_result_message"


@dataclass(frozen=True, slots=True)
class Sql:
    """A statement with numbered placeholders and the parameter name behind each number."""

    text: str
    names: tuple[str, ...]

    def args(self, params: Params) -> list[Any]:
        """The positional arguments for these named parameters."""
        return [params[name] for name in self.names]


def number(template: str) -> Sql:
    """Translate `:name` placeholders to `$n` (one number per distinct name)."""
    names: list[str] = []

    def place(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return Sql(_NAMED.sub(place, template), tuple(names))


@functools.lru_cache(maxsize=512)
def sql(template: str) -> Sql:
    """`number(template)` for text made as the store runs, which repeats (cached)."""
    return number(template)


# The statements filled in as they run (queries.FILLED_LATER) stay text, numbered by `sql`.
_STATEMENTS = {
    name: statement if shared.filled_later(statement) else number(statement)
    for name, statement in shared.load("postgres").items()
}


def __getattr__(name: str) -> Sql | str:
    """A statement by name (`statements/shared.sql` overlaid by `statements/postgres.sql`)."""
    if name in _STATEMENTS:
        return _STATEMENTS[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.lru_cache(maxsize=256)
def edit_webhook(values: tuple[str, ...], expect: tuple[str, ...]) -> Sql:
    """An owner's edit (queries.edit_webhook)."""
    return sql(shared.edit_webhook(values, expect, same_as="IS NOT DISTINCT FROM"))


# -- Values and rows --------------------------------------------------------------------------
def to_sql(value: Any) -> Any:
    """One Python value as asyncpg binds it."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: the store keeps timezone-aware times only")
    if isinstance(value, tuple):
        return orjson.dumps(list(value)).decode()
    if isinstance(value, frozenset):
        return sorted(value)
    return value


def encode(record: Any, **extra: Any) -> dict[str, Any]:
    """A record's fields as named parameters; column names are the field names."""
    params = {f.name: to_sql(getattr(record, f.name)) for f in fields(record)}
    params.update(extra)
    return params


event_row = encode


def notification_row(note: Notification) -> dict[str, Any]:
    """INSERT_NOTIFICATION's parameters."""
    return encode(note, event_type_label=f"{note.table_key}.{note.event_type.value}")


def reserve_params(counts: Mapping[tuple[UUID, UUID], int]) -> Params:
    """RESERVE_SEQUENCES' parameters: how many numbers each (webhook, group) takes."""
    return {"webhook_ids": [w for w, _ in counts], "group_keys": [g for _, g in counts],
            "counts": list(counts.values())}  # fmt: skip


def settled_row(outcome: AttemptOutcome, done: Settlement, now: datetime) -> Params:
    """SETTLE_ATTEMPT's parameters."""
    return {
        "notification_id": outcome.notification_id, "state": done.state.value,
        "next_attempt_at": done.next_attempt_at, "is_successful": done.is_successful,
        "process_result_message": done.process_result_message, "now": now,
        "response_status_code": outcome.response_status_code,
        "request_message": outcome.request_message, "response_message": outcome.response_message,
        "lease_owner": outcome.lease_owner,
    }  # fmt: skip


def plain_uuid(value: Any) -> UUID:
    """A uuid.UUID: asyncpg hands back its own UUID type; records hold plain ones."""
    return value if type(value) is UUID else UUID(bytes=value.bytes)


def _records(text: str) -> tuple[dict[str, Any], ...]:
    return tuple(orjson.loads(text))


_u = plain_uuid
_AUDIT: dict[str, Callable[[Any], Any]] = {"created_user_id": _u, "modified_user_id": _u}
# Per record type, how a column's value becomes the field's value (others pass as they are).
_DECODE: dict[type, dict[str, Callable[[Any], Any]]] = {
    ApiKey: {"api_key_id": _u, "group_key": _u,
             "scopes": lambda names: frozenset(Scope(s) for s in names)},
    Webhook: {"webhook_id": _u, "group_key": _u, "status_code": WebhookStatus,
              "request_content_type": ContentType, "callback_http_method": HttpMethod,
              "status_reason": StatusReason, **_AUDIT},
    WebhookRule: {"webhook_rule_id": _u, "webhook_id": _u, "group_key": _u,
                  "event_type": EventType, **_AUDIT},
    Notification: {"notification_id": _u, "group_key": _u, "webhook_id": _u, "event_id": _u,
                   "event_type": EventType, "records": _records, "state": NotificationState},
    Attempt: {"notification_id": _u},
}  # fmt: skip


def decode(cls: type[R], row: Mapping[str, Any], prefix: str = "") -> R:
    """The record of this type in `row` (columns named `prefix` + field name)."""
    convert = _DECODE[cls]
    values = {f.name: row[prefix + f.name] for f in fields(cls)}
    return cls(**{k: convert[k](v) if k in convert and v is not None else v
                  for k, v in values.items()})  # fmt: skip


def notifications(rows: Sequence[Mapping[str, Any]]) -> list[Notification]:
    """The notifications in rows of a claim."""
    return [decode(Notification, row) for row in rows]


def listings() -> shared.Listings:
    """The paged listings (queries.listings), `is_successful` cast to an integer."""
    return shared.listings("is_successful::int")


def migration_files() -> list[tuple[int, str]]:
    """(version, SQL) of every migration of this dialect, in order."""
    return shared.migration_files(MIGRATIONS)


def statements(script: str) -> list[Sql]:
    """A migration as one statement of no parameters, which asyncpg sends as it is (the
    simple query protocol runs several statements in one call)."""
    return [Sql(script, ())]
