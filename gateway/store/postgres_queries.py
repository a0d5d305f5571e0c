"""The PostgreSQL store's SQL, by name, and how records map to rows.

Queries are written with named parameters (`:name`), like the SQLite set, and `Sql` turns them
into asyncpg's numbered ones (`$1`) once, when this module loads; that translation is the only
dialect step, so the filter compiler's output goes through it too. Query templates take
`{where}` and `{order}` only from `gateway.store.filter_sql` (`where_filter`, `order_by`).

Values are native: uuid, timestamptz (aware datetimes), boolean, bigint, text[] for scopes, and
`json` text for records.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Mapping
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
from gateway.store.base import (
    HISTORY_DEFAULT_ORDER,
    HISTORY_FIELDS,
    RULE_DEFAULT_ORDER,
    RULE_FIELDS,
    WEBHOOK_DEFAULT_ORDER,
    WEBHOOK_FIELDS,
)
from gateway.store.filter_sql import Listing, whitelist

MIGRATIONS = Path(__file__).parent / "migrations" / "postgres"
R = TypeVar("R", ApiKey, Webhook, WebhookRule, Notification, Attempt)
Params = Mapping[str, Any]
# `:name`, but not the second colon of a `::type` cast.
_NAMED = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
# LISTEN/NOTIFY channel: add_events (and requeues, releases) tell every worker process.
NEW_WORK_CHANNEL = "gateway_new_work"
# An owner changed a webhook (paused, reactivated, new secret): the payload is its id.
WEBHOOK_CHANGED_CHANNEL = "gateway_webhook_changed"
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


def sql(template: str) -> Sql:
    """Translate `:name` placeholders to `$n` (one number per distinct name)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return Sql(_NAMED.sub(number, template), tuple(names))


def _columns(names: str) -> tuple[str, str]:
    cols = [c.strip() for c in names.split(",")]
    return ", ".join(cols), ", ".join(f":{c}" for c in cols)


def _assignments(names: str, *, skip: tuple[str, ...]) -> str:
    return ", ".join(f"{c} = :{c}" for c in (c.strip() for c in names.split(",")) if c not in skip)


CREATE_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL)"
)
LOCK_MIGRATIONS = sql("SELECT pg_advisory_xact_lock(:key)")
IS_APPLIED = sql("SELECT 1 FROM schema_migrations WHERE version = :version")
RECORD_MIGRATION = sql(
    "INSERT INTO schema_migrations (version, applied_at) VALUES (:version, :now)"
)
PING = sql("SELECT 1")
NOTIFY_NEW_WORK = sql("SELECT pg_notify(:channel, '')")
# An owner's change of a webhook (its id as the payload), for the workers of every process.
NOTIFY_WEBHOOK_CHANGED = sql("SELECT pg_notify(:channel, :webhook_id)")

# -- API keys -------------------------------------------------------------------------------
_KEY_COLS, _KEY_VALUES = _columns(
    "api_key_id, group_key, group_name, key_hash, scopes, created, revoked"
)
INSERT_API_KEY = sql(f"INSERT INTO api_keys ({_KEY_COLS}) VALUES ({_KEY_VALUES})")
API_KEY_BY_HASH = sql(f"SELECT {_KEY_COLS} FROM api_keys WHERE key_hash = :key_hash")
LIST_API_KEYS = sql(f"SELECT {_KEY_COLS} FROM api_keys ORDER BY created, api_key_id")
REVOKE_API_KEY = sql("UPDATE api_keys SET revoked = :revoked WHERE api_key_id = :api_key_id")
GROUP_KEY_FOR_NAME = sql(
    "SELECT group_key FROM api_keys WHERE group_name = :group_name ORDER BY created LIMIT 1"
)

# -- Webhooks -------------------------------------------------------------------------------
_HOOK_NAMES = (
    "webhook_id, group_key, name, status_code, status_message, client_secret, "
    "request_content_type, callback_http_method, callback_url, expiration_date, retry_count, "
    "created, created_user_id, modified, modified_user_id, partition_key, failure_count, "
    "previous_secret, previous_secret_expires, status_reason"
)
HOOK_COLS, _HOOK_VALUES = _columns(_HOOK_NAMES)
INSERT_WEBHOOK = sql(f"INSERT INTO webhooks ({HOOK_COLS}) VALUES ({_HOOK_VALUES})")
GET_WEBHOOK = sql(
    f"SELECT {HOOK_COLS} FROM webhooks WHERE webhook_id = :webhook_id AND group_key = :group_key"
)
GET_WEBHOOK_ANY_GROUP = sql(f"SELECT {HOOK_COLS} FROM webhooks WHERE webhook_id = :webhook_id")
WEBHOOK_EXISTS = sql(
    "SELECT 1 FROM webhooks WHERE webhook_id = :webhook_id AND group_key = :group_key"
)


@functools.lru_cache(maxsize=256)
def edit_webhook(values: tuple[str, ...], expect: tuple[str, ...]) -> Sql:
    """An owner's edit: set only the named columns (`:v_<name>`), only while the expected ones
    still hold their values (`:e_<name>`); the row after it. Names come from
    store.base.EDITABLE, never from a request."""
    # With nothing to set, the row is still matched, locked and its expectations checked.
    sets = ", ".join(f"{name} = :v_{name}" for name in values) or "modified = modified"
    guards = "".join(f" AND {name} IS NOT DISTINCT FROM :e_{name}" for name in expect)
    return sql(
        f"UPDATE webhooks SET {sets} "
        f"WHERE webhook_id = :webhook_id AND group_key = :group_key{guards} "
        f"RETURNING {HOOK_COLS}"
    )


# A status change of an owner or of the expiry sweep; PARK_PENDING or RELEASE_PARKED follows in
# the same transaction.
SET_STATUS = sql(
    "UPDATE webhooks SET status_code = :status_code, status_message = :status_message, "
    "status_reason = :status_reason, "
    "failure_count = CASE WHEN :reset_failures::boolean THEN 0 ELSE failure_count END "
    f"WHERE webhook_id = :webhook_id RETURNING {HOOK_COLS}"
)
# previous_secret takes the secret as it was before this statement: two regenerations at once
# chain (each answers a secret that signs), where two read-modify-writes lost one.
REGENERATE_SECRET = sql(
    "UPDATE webhooks SET previous_secret = client_secret, client_secret = :secret, "
    "previous_secret_expires = :previous_until, modified = :now, modified_user_id = :user_id "
    f"WHERE webhook_id = :webhook_id AND group_key = :group_key RETURNING {HOOK_COLS}"
)
DELETE_WEBHOOK = sql(
    "DELETE FROM webhooks WHERE webhook_id = :webhook_id AND group_key = :group_key"
)
QUERY_WEBHOOKS = (
    f"SELECT {HOOK_COLS} FROM webhooks WHERE {{where}} ORDER BY {{order}} "
    "LIMIT :limit OFFSET :offset"
)
COUNT_WEBHOOKS = "SELECT count(*) FROM webhooks WHERE {where}"
# The rows are locked in id order, like every other writer of several webhooks.
EXPIRING = sql(
    f"SELECT {HOOK_COLS} FROM webhooks WHERE status_code = 'Active' "
    "AND expiration_date IS NOT NULL AND expiration_date <= :now "
    "ORDER BY webhook_id FOR NO KEY UPDATE"
)
TOUCH_WEBHOOK = sql(
    f"UPDATE webhooks SET modified = :now WHERE webhook_id = :webhook_id RETURNING {HOOK_COLS}"
)
# Lock the webhooks a transaction is about to change, always in id order, so that two
# processes settling or numbering notifications of the same webhooks queue instead of
# deadlocking. NO KEY UPDATE still lets other transactions insert rows that reference them.
LOCK_WEBHOOKS = sql(
    f"SELECT {HOOK_COLS} FROM webhooks WHERE webhook_id = ANY(:webhook_ids::uuid[]) "
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
_RULE_NAMES = (
    "webhook_rule_id, webhook_id, group_key, table_key, event_type, filter, created, "
    "created_user_id, modified, modified_user_id"
)
RULE_COLS, _RULE_VALUES = _columns(_RULE_NAMES)
_RULE_COLS_R = ", ".join(f"r.{c}" for c in RULE_COLS.split(", "))
_HOOK_COLS_W = ", ".join(f"w.{c} AS w_{c}" for c in HOOK_COLS.split(", "))
INSERT_RULE = sql(f"INSERT INTO webhook_rules ({RULE_COLS}) VALUES ({_RULE_VALUES})")
GET_RULE = sql(
    f"SELECT {RULE_COLS} FROM webhook_rules "
    "WHERE webhook_rule_id = :webhook_rule_id AND group_key = :group_key"
)
UPDATE_RULE = sql(
    f"UPDATE webhook_rules SET {_assignments(_RULE_NAMES, skip=('webhook_rule_id', 'group_key'))} "
    "WHERE webhook_rule_id = :webhook_rule_id AND group_key = :group_key"
)
DELETE_RULE = sql(
    "DELETE FROM webhook_rules WHERE webhook_rule_id = :webhook_rule_id AND group_key = :group_key"
)
QUERY_RULES = (
    f"SELECT {RULE_COLS} FROM webhook_rules WHERE {{where}} ORDER BY {{order}} "
    "LIMIT :limit OFFSET :offset"
)
COUNT_RULES = "SELECT count(*) FROM webhook_rules WHERE {where}"
RULES_FOR_WEBHOOKS = sql(
    f"SELECT {RULE_COLS} FROM webhook_rules WHERE group_key = :group_key "
    "AND webhook_id = ANY(:webhook_ids::uuid[]) ORDER BY created, webhook_rule_id"
)
MATCHING_RULES = sql(
    f"SELECT {_RULE_COLS_R}, {_HOOK_COLS_W} FROM webhook_rules r "
    "JOIN webhooks w ON w.webhook_id = r.webhook_id "
    "WHERE r.group_key = :group_key AND r.table_key = :table_key AND r.event_type = :event_type "
    "ORDER BY r.created, r.webhook_rule_id"
)

# -- Events and notifications ---------------------------------------------------------------
_EVENT_COLS, _EVENT_VALUES = _columns(
    "event_id, group_key, table_key, event_type, records, created"
)
INSERT_EVENT = sql(f"INSERT INTO events ({_EVENT_COLS}) VALUES ({_EVENT_VALUES})")
_NOTE_NAMES = (
    "notification_id, group_key, webhook_id, event_id, table_key, event_type, event_type_label, "
    "records, sequence, triggered_at, state, next_attempt_at, created, attempts, lease_until, "
    "lease_owner, request_sent, is_successful, response_status_code, process_result_message, "
    "request_message, response_message, timestamp"
)
NOTE_COLS, _NOTE_VALUES = _columns(_NOTE_NAMES)
_NOTE_COLS_N = ", ".join(f"n.{c}" for c in NOTE_COLS.split(", "))
INSERT_NOTIFICATION = sql(f"INSERT INTO notifications ({NOTE_COLS}) VALUES ({_NOTE_VALUES})")
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
# Settling attempts: lock the leased rows (the webhooks are locked first, LOCK_WEBHOOKS), so
# that a claim cannot take one over between this check and the write.
LEASED = sql(
    "SELECT n.notification_id, n.webhook_id FROM notifications n "
    "JOIN unnest(:notification_ids::uuid[], :owners::text[]) AS l (notification_id, owner) "
    "ON n.notification_id = l.notification_id AND n.lease_owner = l.owner "
    "ORDER BY n.notification_id FOR UPDATE OF n"
)
WEBHOOKS_OF = sql(
    "SELECT DISTINCT webhook_id FROM notifications "
    "WHERE notification_id = ANY(:notification_ids::uuid[])"
)
LEASED_WEBHOOKS = sql(
    "SELECT DISTINCT webhook_id FROM notifications WHERE lease_owner = :owner AND state = 'pending'"
)
# An attempt replaces the last attempt's fields on the row.
SETTLE_ATTEMPT = sql(
    "UPDATE notifications SET state = :state, "
    "next_attempt_at = coalesce(:next_attempt_at, next_attempt_at), "
    "attempts = attempts + 1, request_sent = true, is_successful = :is_successful, "
    "response_status_code = :response_status_code, "
    "process_result_message = :process_result_message, request_message = :request_message, "
    "response_message = :response_message, timestamp = :now, "
    "lease_owner = NULL, lease_until = NULL "
    "WHERE notification_id = :notification_id"
)
# No request went out (parked, due again, or cannot be rendered): the last attempt's fields stay.
SETTLE_UNSENT = sql(
    "UPDATE notifications SET state = :state, "
    "next_attempt_at = coalesce(:next_attempt_at, next_attempt_at), "
    "process_result_message = :process_result_message, timestamp = :now, "
    "lease_owner = NULL, lease_until = NULL "
    "WHERE notification_id = :notification_id"
)
# Failed attempts go to the log too, numbered by the row's count (already increased).
LOG_ATTEMPT = sql(
    "INSERT INTO attempts (notification_id, attempt, timestamp, response_status_code, "
    "process_result_message, request_message, response_message) "
    "SELECT notification_id, attempts, timestamp, response_status_code, process_result_message, "
    "request_message, response_message FROM notifications WHERE notification_id = :notification_id"
)
SETTLE_LIFECYCLE = sql(
    "UPDATE webhooks SET failure_count = :failure_count, status_code = :status_code, "
    "status_message = :status_message, status_reason = :status_reason, "
    "modified = CASE WHEN status_code <> :status_code THEN :now ELSE modified END "
    "WHERE webhook_id = :webhook_id"
)
# Parking keeps leases: a send in flight is still recorded by its worker.
PARK_PENDING = sql(
    "UPDATE notifications SET state = 'parked', timestamp = :now, "
    "process_result_message = :message "
    "WHERE webhook_id = :webhook_id AND state = 'pending' "
    "AND notification_id IS DISTINCT FROM :keep::uuid"
)
# Releasing clears leases: a worker that still holds one of them dropped it when it learned the
# webhook left Active; if it did not, its outcome is refused and the notification goes again.
RELEASE_PARKED = sql(
    "UPDATE notifications SET state = 'pending', next_attempt_at = :now, timestamp = :now, "
    "process_result_message = :message, lease_owner = NULL, lease_until = NULL "
    "WHERE webhook_id = :webhook_id AND state = 'parked'"
)
RELEASE_LEASES = sql(
    "UPDATE notifications SET lease_owner = NULL, lease_until = NULL "
    "WHERE state = 'pending' AND lease_owner = :owner"
)
GET_NOTIFICATION = sql(
    f"SELECT {NOTE_COLS} FROM notifications WHERE notification_id = :notification_id "
    "AND webhook_id = :webhook_id AND group_key = :group_key"
)
# Guarded by the webhook being Active, whose row is locked first (FOR SHARE: a concurrent
# pause waits): a hand retry never sends to a webhook that is not, and never touches the
# recorded attempt.
LOCK_ACTIVE_WEBHOOK = sql(
    "SELECT 1 FROM webhooks WHERE webhook_id = :webhook_id AND group_key = :group_key "
    "AND status_code = 'Active' AND (expiration_date IS NULL OR expiration_date > :now) "
    "FOR SHARE"
)
REQUEUE_NOTIFICATION = sql(
    "UPDATE notifications SET state = 'pending', next_attempt_at = :now, timestamp = :now, "
    "lease_owner = NULL, lease_until = NULL "
    "WHERE notification_id = :notification_id AND webhook_id = :webhook_id "
    "AND group_key = :group_key AND state IN ('pending', 'parked', 'failed')"
)
NOTIFICATION_STATE = sql(
    "SELECT state FROM notifications WHERE notification_id = :notification_id "
    "AND webhook_id = :webhook_id AND group_key = :group_key"
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
_IS_ACTIVE = "w.status_code = 'Active' AND (w.expiration_date IS NULL OR w.expiration_date > :now)"
PARKED_OF_ACTIVE = sql(
    "SELECT n.notification_id, n.webhook_id FROM webhooks w "
    "JOIN notifications n ON n.webhook_id = w.webhook_id AND n.state = 'parked' "
    f"WHERE {_IS_ACTIVE}"
)
PENDING_OF_INACTIVE = sql(
    "SELECT n.notification_id, n.webhook_id FROM webhooks w "
    "JOIN notifications n ON n.webhook_id = w.webhook_id AND n.state = 'pending' "
    f"WHERE NOT ({_IS_ACTIVE}) AND (n.lease_until IS NULL OR n.lease_until <= :now)"
)
_ACTIVE_OWNER = (
    "EXISTS (SELECT 1 FROM webhooks w WHERE w.webhook_id = notifications.webhook_id "
    f"AND {_IS_ACTIVE})"
)
RELEASE_ONE = sql(
    "UPDATE notifications SET state = 'pending', next_attempt_at = :now, timestamp = :now, "
    "process_result_message = :message, lease_owner = NULL, lease_until = NULL "
    f"WHERE notification_id = :notification_id AND state = 'parked' AND {_ACTIVE_OWNER}"
)
PARK_ONE = sql(
    "UPDATE notifications SET state = 'parked', timestamp = :now, "
    "process_result_message = :message "
    "WHERE notification_id = :notification_id AND state = 'pending' "
    f"AND (lease_until IS NULL OR lease_until <= :now) AND NOT {_ACTIVE_OWNER}"
)
QUERY_HISTORY = (
    f"SELECT {NOTE_COLS} FROM notifications WHERE {{where}} ORDER BY {{order}} "
    "LIMIT :limit OFFSET :offset"
)
COUNT_HISTORY = "SELECT count(*) FROM notifications WHERE {where}"
PRUNE_HISTORY = sql("DELETE FROM notifications WHERE state = 'succeeded' AND timestamp < :before")
PRUNE_EVENTS = sql(
    "DELETE FROM events WHERE created < :before "
    "AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.event_id = events.event_id)"
)
DELIVERY_STATS = sql(
    "SELECT (SELECT count(*) FROM notifications WHERE state = 'pending') AS pending, "
    "(SELECT count(*) FROM notifications WHERE state = 'parked') AS parked, "
    "(SELECT count(*) FROM notifications WHERE state = 'failed') AS failed, "
    "(SELECT count(*) FROM notifications WHERE state = 'succeeded') AS succeeded, "
    "(SELECT min(next_attempt_at) FROM notifications WHERE state = 'pending') AS first_due"
)

# -- Handshake nonces ------------------------------------------------------------------------
TAKE_HANDSHAKE_NONCE = sql(
    "INSERT INTO handshake_nonces (nonce, expires) VALUES (:nonce, :expires) "
    "ON CONFLICT (nonce) DO NOTHING"
)
PRUNE_HANDSHAKE_NONCES = sql("DELETE FROM handshake_nonces WHERE expires <= :now")

# -- Filterable columns: lowercase wire name -> SQL -------------------------------------------
_WEBHOOK_SQL = {
    "webhookid": "webhook_id", "groupkey": "group_key", "name": "name",
    "statuscode": "status_code", "statusmessage": "status_message",
    "requestcontenttype": "request_content_type", "callbackhttpmethod": "callback_http_method",
    "callbackurl": "callback_url", "expirationdate": "expiration_date",
    "retrycount": "retry_count", "created": "created", "createduserid": "created_user_id",
    "modified": "modified", "modifieduserid": "modified_user_id", "partitionkey": "partition_key",
}  # fmt: skip
_RULE_SQL = {
    "webhookruleid": "webhook_rule_id", "webhookid": "webhook_id", "groupkey": "group_key",
    "tablekey": "table_key", "eventtype": "event_type", "filter": "filter", "created": "created",
    "createduserid": "created_user_id", "modified": "modified",
    "modifieduserid": "modified_user_id",
}  # fmt: skip
_HISTORY_SQL = {
    "webhookhistoryid": "notification_id", "webhookid": "webhook_id", "groupkey": "group_key",
    "eventtype": "event_type_label", "requestsent": "request_sent",
    "issuccessful": "is_successful", "responsestatuscode": "response_status_code",
    "processresultmessage": "process_result_message",
    # As the wire shows it: every attempt but a final successful one counts as a failure.
    "failurecount": "(attempts - is_successful::int)", "timestamp": "timestamp",
}  # fmt: skip


WEBHOOK_COLUMNS = whitelist(_WEBHOOK_SQL, WEBHOOK_FIELDS)
RULE_COLUMNS = whitelist(_RULE_SQL, RULE_FIELDS)
HISTORY_COLUMNS = whitelist(_HISTORY_SQL, HISTORY_FIELDS)


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


WEBHOOKS = Listing(QUERY_WEBHOOKS, COUNT_WEBHOOKS, WEBHOOK_COLUMNS,
                   WEBHOOK_DEFAULT_ORDER, "webhook_id")  # fmt: skip
RULES = Listing(QUERY_RULES, COUNT_RULES, RULE_COLUMNS, RULE_DEFAULT_ORDER, "webhook_rule_id")
HISTORY = Listing(QUERY_HISTORY, COUNT_HISTORY, HISTORY_COLUMNS, HISTORY_DEFAULT_ORDER,
                  "notification_id")  # fmt: skip


def migration_files() -> list[tuple[int, str]]:
    """(version, SQL) of every migration file, in order: 0001_initial.sql is version 1."""
    files = sorted(MIGRATIONS.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    return [(int(f.name[:4]), f.read_text(encoding="utf-8")) for f in files]
