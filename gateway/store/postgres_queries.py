"""The PostgreSQL store's own SQL, by name, and how records map to rows.

The statements both dialects share are in `gateway.store.queries`; here are the ones that
differ (row locks, arrays, NOTIFY, the delivery path) under the names `SqlStore` uses for both.
All are written with named parameters (`:name`), and `sql` turns them into asyncpg's numbered
ones (`$1`), once per text (cached); the filter compiler's output goes through it too.

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
# Any constant: the advisory lock that lets one process at a time apply migrations.
MIGRATION_LOCK = 0x6761_7465_7761_79


@dataclass(frozen=True, slots=True)
class Sql:
    """A statement with numbered placeholders and the parameter name behind each number."""

    text: str
    names: tuple[str, ...]

    def args(self, params: Params) -> list[Any]:
        """The positional arguments for these named parameters."""
        return [params[name] for name in self.names]


@functools.lru_cache(maxsize=512)
def sql(template: str) -> Sql:
    """Translate `:name` placeholders to `$n` (one number per distinct name); cached, so the
    shared statements (`gateway.store.queries`) are translated once each."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return Sql(_NAMED.sub(number, template), tuple(names))


CREATE_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL)"
)
LOCK_MIGRATIONS = sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
NOTIFY = sql("SELECT pg_notify(:channel, :payload)")

# -- Webhooks -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def edit_webhook(values: tuple[str, ...], expect: tuple[str, ...]) -> Sql:
    """An owner's edit (queries.edit_webhook)."""
    return sql(shared.edit_webhook(values, expect, same_as="IS NOT DISTINCT FROM"))


# The rows are locked in id order, like every other writer of several webhooks.
EXPIRING = sql(
    f"SELECT {shared.HOOK_COLS} FROM webhooks WHERE status_code = 'Active' "
    "AND expiration_date IS NOT NULL AND expiration_date <= :now "
    "ORDER BY webhook_id FOR NO KEY UPDATE"
)
# Lock the webhooks a transaction is about to change, always in id order, so that two
# processes settling or numbering notifications of the same webhooks queue instead of
# deadlocking. NO KEY UPDATE still lets other transactions insert rows that reference them.
LOCK_WEBHOOKS = sql(
    f"SELECT {shared.HOOK_COLS} FROM webhooks WHERE webhook_id = ANY(:webhook_ids::uuid[]) "
    "ORDER BY webhook_id FOR NO KEY UPDATE"
)
LOCK_WEBHOOK_IDS = sql(
    "SELECT 1 FROM webhooks WHERE webhook_id = ANY(:webhook_ids::uuid[]) "
    "ORDER BY webhook_id FOR NO KEY UPDATE"
)
# Reserves `count` numbers per webhook in one statement; RETURNING gives the last of each.
# Checks the group too, so a notification can never be filed under another group's webhook.
RESERVE_SEQUENCES = sql(
    "UPDATE webhooks w SET last_sequence = w.last_sequence + c.count "
    "FROM unnest(:webhook_ids::uuid[], :group_keys::uuid[], :counts::bigint[]) "
    "AS c (webhook_id, group_key, count) "
    "WHERE w.webhook_id = c.webhook_id AND w.group_key = c.group_key "
    "RETURNING w.webhook_id, w.group_key, w.last_sequence, w.status_code, w.status_message, "
    "w.expiration_date"
)

# -- Rules ----------------------------------------------------------------------------------
RULES_FOR_WEBHOOKS = sql(
    f"SELECT {shared.RULE_COLS} FROM webhook_rules WHERE group_key = :group_key "
    "AND webhook_id = ANY(:webhook_ids::uuid[]) ORDER BY created, webhook_rule_id"
)

# -- Events and notifications ---------------------------------------------------------------
_EVENT_COLS, _EVENT_VALUES = shared.columns(
    "event_id, group_key, table_key, event_type, records, created"
)
INSERT_EVENT = sql(f"INSERT INTO events ({_EVENT_COLS}) VALUES ({_EVENT_VALUES})")
NOTE_COLS, _NOTE_VALUES = shared.columns(shared.NOTE_NAMES)
_NOTE_COLS_N = ", ".join(f"n.{c}" for c in NOTE_COLS.split(", "))
INSERT_NOTIFICATION = sql(f"INSERT INTO notifications ({NOTE_COLS}) VALUES ({_NOTE_VALUES})")
# Where add_events reads and numbers a notification row (notification_row: by name).
ROW_GROUP, ROW_WEBHOOK, ROW_SEQUENCE, ROW_STATE = "group_key", "webhook_id", "sequence", "state"
ROW_LEASE_UNTIL, ROW_LEASE_OWNER = "lease_until", "lease_owner"
ROW_MESSAGE = "process_result_message"
# SKIP LOCKED: rows another process is claiming right now are passed over, not waited for, so
# concurrent claims never block each other and never take the same row. A row claimed and
# committed by another process after this snapshot is re-checked against the WHERE clause when
# locked, and its new lease excludes it.
CLAIM_DUE = sql(
    "WITH due AS ("
    "SELECT notification_id FROM notifications "
    "WHERE state = 'pending' AND next_attempt_at <= :now "
    "AND (lease_until IS NULL OR lease_until <= :now) "
    "AND webhook_id <> ALL(:exclude::uuid[]) AND group_key <> ALL(:exclude_groups::uuid[]) "
    "ORDER BY next_attempt_at, webhook_id, sequence LIMIT :limit FOR UPDATE SKIP LOCKED) "
    "UPDATE notifications n SET lease_owner = :owner, lease_until = :lease_until "
    f"FROM due WHERE n.notification_id = due.notification_id RETURNING {_NOTE_COLS_N}"
)
# Settling attempts: each notification's lease holder and webhook id; then, their webhooks
# locked (LOCK_WEBHOOKS), again, locking the rows still leased by the outcomes' owners, so that
# a claim cannot take one over between this check and the write.
LEASES = sql(
    "SELECT notification_id, lease_owner, webhook_id FROM notifications "
    "WHERE notification_id = ANY(:ids::uuid[])"
)
LOCK_LEASES = sql(
    "SELECT n.notification_id, n.lease_owner, n.webhook_id FROM notifications n "
    "JOIN unnest(:ids::uuid[], :owners::text[]) AS l (notification_id, owner) "
    "ON n.notification_id = l.notification_id AND n.lease_owner = l.owner "
    "ORDER BY n.notification_id FOR UPDATE OF n"
)
# release_leases locks the webhooks of the leases it gives back, as every other writer does.
LOCK_LEASED_WEBHOOKS = sql(
    "SELECT 1 FROM webhooks WHERE webhook_id IN (SELECT webhook_id FROM notifications "
    "WHERE lease_owner = :owner AND state = 'pending') ORDER BY webhook_id FOR NO KEY UPDATE"
)
# A hand retry locks its webhook's row if Active (FOR SHARE: a concurrent pause waits), before
# queries.REQUEUE_NOTIFICATION checks that it is.
LOCK_ACTIVE_WEBHOOK = sql(
    "SELECT 1 FROM webhooks WHERE webhook_id = :webhook_id AND group_key = :group_key "
    "AND status_code = 'Active' AND (expiration_date IS NULL OR expiration_date > :now) "
    "FOR SHARE"
)
ATTEMPTS = sql(
    "SELECT a.notification_id, a.attempt, a.timestamp, a.response_status_code, "
    "a.process_result_message, a.request_message, a.response_message FROM attempts a "
    "JOIN notifications n ON n.notification_id = a.notification_id "
    "WHERE n.group_key = :group_key AND n.webhook_id = :webhook_id "
    "AND a.notification_id = ANY(:ids::uuid[]) ORDER BY a.notification_id, a.attempt"
)
# The invariants of gateway.lifecycle, counted and repaired by store.check_invariants, read
# from the webhooks' side (the parked ones of each Active webhook, the pending ones of each
# webhook that is not Active); each repair checks its row again as it writes.
PARKED_OF_ACTIVE = sql(
    "SELECT n.notification_id, n.webhook_id FROM webhooks w "
    "JOIN notifications n ON n.webhook_id = w.webhook_id AND n.state = 'parked' "
    f"WHERE {shared.IS_ACTIVE}"
)
PENDING_OF_INACTIVE = sql(
    "SELECT n.notification_id, n.webhook_id FROM webhooks w "
    "JOIN notifications n ON n.webhook_id = w.webhook_id AND n.state = 'pending' "
    f"WHERE NOT ({shared.IS_ACTIVE}) AND (n.lease_until IS NULL OR n.lease_until <= :now)"
)


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


WEBHOOKS, RULES = shared.WEBHOOKS, shared.RULES
SETTLE_ATTEMPT = shared.SETTLE_ATTEMPT
HISTORY = shared.history("is_successful::int")


def migration_files() -> list[tuple[int, str]]:
    """(version, SQL) of every migration of this dialect, in order."""
    return shared.migration_files(MIGRATIONS)


def statements(script: str) -> list[Sql]:
    """A migration as one statement of no parameters, which asyncpg sends as it is (the
    simple query protocol runs several statements in one call)."""
    return [Sql(script, ())]
