"""The statements SQLite and PostgreSQL share, written once with `:name` parameters.

Each dialect's module (`sqlite_queries`, `postgres_queries`) holds only what differs: types,
JSON and array parameters, locks, the delivery path's batched statements. SQLite runs these
texts as they are; PostgreSQL numbers their parameters (`postgres_queries.sql`). Listing
templates take `{where}` and `{order}` only from `gateway.store.filter_sql`, which emits
whitelisted columns and placeholders, never user text.
"""

from __future__ import annotations

from pathlib import Path

from gateway.store.base import (
    HISTORY_DEFAULT_ORDER,
    HISTORY_FIELDS,
    RULE_DEFAULT_ORDER,
    RULE_FIELDS,
    WEBHOOK_DEFAULT_ORDER,
    WEBHOOK_FIELDS,
)
from gateway.store.filter_sql import Listing, whitelist


def columns(names: str) -> tuple[str, str]:
    """A column list and its matching named-placeholder list."""
    cols = [c.strip() for c in names.split(",")]
    return ", ".join(cols), ", ".join(f":{c}" for c in cols)


def _assignments(names: str, *, skip: tuple[str, ...]) -> str:
    return ", ".join(f"{c} = :{c}" for c in (c.strip() for c in names.split(",")) if c not in skip)


# What a transaction tells listening processes on commit (steps.Notify; PostgreSQL only):
# new work is due; an owner changed a webhook (paused, reactivated, new secret; its id).
NEW_WORK_CHANNEL = "gateway_new_work"
WEBHOOK_CHANGED_CHANNEL = "gateway_webhook_changed"

IS_APPLIED = "SELECT 1 FROM schema_migrations WHERE version = :version"
RECORD_MIGRATION = "INSERT INTO schema_migrations (version, applied_at) VALUES (:version, :now)"
PING = "SELECT 1"

# -- API keys -------------------------------------------------------------------------------
_KEY_COLS, _KEY_VALUES = columns(
    "api_key_id, group_key, group_name, key_hash, scopes, created, revoked"
)
INSERT_API_KEY = f"INSERT INTO api_keys ({_KEY_COLS}) VALUES ({_KEY_VALUES})"
API_KEY_BY_HASH = f"SELECT {_KEY_COLS} FROM api_keys WHERE key_hash = :key_hash"
LIST_API_KEYS = f"SELECT {_KEY_COLS} FROM api_keys ORDER BY created, api_key_id"
REVOKE_API_KEY = "UPDATE api_keys SET revoked = :revoked WHERE api_key_id = :api_key_id"
GROUP_KEY_FOR_NAME = (
    "SELECT group_key FROM api_keys WHERE group_name = :group_name ORDER BY created LIMIT 1"
)

# -- Webhooks -------------------------------------------------------------------------------
HOOK_NAMES = (
    "webhook_id, group_key, name, status_code, status_message, client_secret, "
    "request_content_type, callback_http_method, callback_url, expiration_date, retry_count, "
    "created, created_user_id, modified, modified_user_id, partition_key, failure_count, "
    "previous_secret, previous_secret_expires, status_reason"
)
HOOK_COLS, _HOOK_VALUES = columns(HOOK_NAMES)
INSERT_WEBHOOK = f"INSERT INTO webhooks ({HOOK_COLS}) VALUES ({_HOOK_VALUES})"
GET_WEBHOOK = (
    f"SELECT {HOOK_COLS} FROM webhooks WHERE webhook_id = :webhook_id AND group_key = :group_key"
)
GET_WEBHOOK_ANY_GROUP = f"SELECT {HOOK_COLS} FROM webhooks WHERE webhook_id = :webhook_id"
WEBHOOK_EXISTS = "SELECT 1 FROM webhooks WHERE webhook_id = :webhook_id AND group_key = :group_key"
DELETE_WEBHOOK = "DELETE FROM webhooks WHERE webhook_id = :webhook_id AND group_key = :group_key"
QUERY_WEBHOOKS = (
    f"SELECT {HOOK_COLS} FROM webhooks WHERE {{where}} ORDER BY {{order}} "
    "LIMIT :limit OFFSET :offset"
)
COUNT_WEBHOOKS = "SELECT count(*) FROM webhooks WHERE {where}"


def edit_webhook(values: tuple[str, ...], expect: tuple[str, ...], *, same_as: str) -> str:
    """An owner's edit: set only the named columns (`:v_<name>`), only while the expected ones
    still hold their values (`:e_<name>`, compared with `same_as`, the dialect's null-safe
    equality); the row after it. Names come from store.base.EDITABLE, never from a request."""
    # With nothing to set, the row is still matched (locked) and its expectations checked.
    sets = ", ".join(f"{name} = :v_{name}" for name in values) or "modified = modified"
    guards = "".join(f" AND {name} {same_as} :e_{name}" for name in expect)
    return (
        f"UPDATE webhooks SET {sets} "
        f"WHERE webhook_id = :webhook_id AND group_key = :group_key{guards} "
        f"RETURNING {HOOK_COLS}"
    )


# A status change of an owner or of the expiry sweep; PARK_PENDING or RELEASE_PARKED follows in
# the same transaction. (CAST: PostgreSQL cannot tell a bare parameter's type in a CASE.)
SET_STATUS = (
    "UPDATE webhooks SET status_code = :status_code, status_message = :status_message, "
    "status_reason = :status_reason, "
    "failure_count = CASE WHEN CAST(:reset_failures AS boolean) THEN 0 ELSE failure_count END "
    f"WHERE webhook_id = :webhook_id RETURNING {HOOK_COLS}"
)
# previous_secret takes the secret as it was before this statement: two regenerations at once
# chain (each answers a secret that signs), where two read-modify-writes lost one.
REGENERATE_SECRET = (
    "UPDATE webhooks SET previous_secret = client_secret, client_secret = :secret, "
    "previous_secret_expires = :previous_until, modified = :now, modified_user_id = :user_id "
    f"WHERE webhook_id = :webhook_id AND group_key = :group_key RETURNING {HOOK_COLS}"
)
TOUCH_WEBHOOK = (
    f"UPDATE webhooks SET modified = :now WHERE webhook_id = :webhook_id RETURNING {HOOK_COLS}"
)

# -- Rules ----------------------------------------------------------------------------------
_RULE_NAMES = (
    "webhook_rule_id, webhook_id, group_key, table_key, event_type, filter, created, "
    "created_user_id, modified, modified_user_id"
)
RULE_COLS, _RULE_VALUES = columns(_RULE_NAMES)
_RULE_COLS_R = ", ".join(f"r.{c}" for c in RULE_COLS.split(", "))
_HOOK_COLS_W = ", ".join(f"w.{c} AS w_{c}" for c in HOOK_COLS.split(", "))
INSERT_RULE = f"INSERT INTO webhook_rules ({RULE_COLS}) VALUES ({_RULE_VALUES})"
GET_RULE = (
    f"SELECT {RULE_COLS} FROM webhook_rules "
    "WHERE webhook_rule_id = :webhook_rule_id AND group_key = :group_key"
)
UPDATE_RULE = (
    f"UPDATE webhook_rules SET {_assignments(_RULE_NAMES, skip=('webhook_rule_id', 'group_key'))} "
    "WHERE webhook_rule_id = :webhook_rule_id AND group_key = :group_key"
)
DELETE_RULE = (
    "DELETE FROM webhook_rules WHERE webhook_rule_id = :webhook_rule_id AND group_key = :group_key"
)
QUERY_RULES = (
    f"SELECT {RULE_COLS} FROM webhook_rules WHERE {{where}} ORDER BY {{order}} "
    "LIMIT :limit OFFSET :offset"
)
COUNT_RULES = "SELECT count(*) FROM webhook_rules WHERE {where}"
MATCHING_RULES = (
    f"SELECT {_RULE_COLS_R}, {_HOOK_COLS_W} FROM webhook_rules r "
    "JOIN webhooks w ON w.webhook_id = r.webhook_id "
    "WHERE r.group_key = :group_key AND r.table_key = :table_key AND r.event_type = :event_type "
    "ORDER BY r.created, r.webhook_rule_id"
)

# -- Notifications --------------------------------------------------------------------------
NOTE_NAMES = (
    "notification_id, group_key, webhook_id, event_id, table_key, event_type, event_type_label, "
    "records, sequence, triggered_at, state, next_attempt_at, created, attempts, lease_until, "
    "lease_owner, request_sent, is_successful, response_status_code, process_result_message, "
    "request_message, response_message, timestamp"
)
NOTE_COLUMNS = tuple(c.strip() for c in NOTE_NAMES.split(","))
NOTE_COLS = ", ".join(NOTE_COLUMNS)
# Failed attempts go to the log too, numbered by the row's count (already increased).
LOG_ATTEMPT = (
    "INSERT INTO attempts (notification_id, attempt, timestamp, response_status_code, "
    "process_result_message, request_message, response_message) "
    "SELECT notification_id, attempts, timestamp, response_status_code, process_result_message, "
    "request_message, response_message FROM notifications WHERE notification_id = :notification_id"
)
# Releasing clears leases: a worker that still holds one of them dropped it when it learned the
# webhook left Active; if it did not, its outcome is refused and the notification goes again.
RELEASE_PARKED = (
    "UPDATE notifications SET state = 'pending', next_attempt_at = :now, timestamp = :now, "
    "process_result_message = :message, lease_owner = NULL, lease_until = NULL "
    "WHERE webhook_id = :webhook_id AND state = 'parked'"
)
# Guarded by the webhook being Active in the same statement (on PostgreSQL its row is locked
# first, LOCK_ACTIVE_WEBHOOK): a hand retry never sends to a webhook that is not, and never
# touches the recorded attempt.
REQUEUE_NOTIFICATION = (
    "UPDATE notifications SET state = 'pending', next_attempt_at = :now, timestamp = :now, "
    "lease_owner = NULL, lease_until = NULL "
    "WHERE notification_id = :notification_id AND webhook_id = :webhook_id "
    "AND group_key = :group_key AND state IN ('pending', 'parked', 'failed') "
    "AND EXISTS (SELECT 1 FROM webhooks w WHERE w.webhook_id = :webhook_id "
    "AND w.status_code = 'Active' AND (w.expiration_date IS NULL OR w.expiration_date > :now))"
)
# Settling an attempt that sent a request: it replaces the last attempt's fields on the row.
SETTLE_ATTEMPT = (
    "UPDATE notifications SET state = :state, "
    "next_attempt_at = coalesce(:next_attempt_at, next_attempt_at), "
    "attempts = attempts + 1, request_sent = true, is_successful = :is_successful, "
    "response_status_code = :response_status_code, "
    "process_result_message = :process_result_message, request_message = :request_message, "
    "response_message = :response_message, timestamp = :now, "
    "lease_owner = NULL, lease_until = NULL "
    "WHERE notification_id = :notification_id AND lease_owner = :lease_owner"
)
# Settling an attempt that sent no request (parked, due again, or cannot be rendered): the
# last attempt's fields stay.
SETTLE_UNSENT = (
    "UPDATE notifications SET state = :state, "
    "next_attempt_at = coalesce(:next_attempt_at, next_attempt_at), "
    "process_result_message = :process_result_message, timestamp = :now, "
    "lease_owner = NULL, lease_until = NULL "
    "WHERE notification_id = :notification_id AND lease_owner = :lease_owner"
)
SETTLE_LIFECYCLE = (
    "UPDATE webhooks SET failure_count = :failure_count, status_code = :status_code, "
    "status_message = :status_message, status_reason = :status_reason, "
    "modified = CASE WHEN status_code <> :status_code THEN :now ELSE modified END "
    "WHERE webhook_id = :webhook_id"
)
# Parking keeps leases: a send in flight is still recorded by its worker. :keep (or NULL)
# names a notification left as it is.
PARK_PENDING = (
    "UPDATE notifications SET state = 'parked', timestamp = :now, "
    "process_result_message = :message "
    "WHERE webhook_id = :webhook_id AND state = 'pending' "
    "AND coalesce(notification_id <> :keep, true)"
)
RELEASE_LEASES = (
    "UPDATE notifications SET lease_owner = NULL, lease_until = NULL "
    "WHERE state = 'pending' AND lease_owner = :owner"
)
GET_NOTIFICATION = (
    f"SELECT {NOTE_COLS} FROM notifications WHERE notification_id = :notification_id "
    "AND webhook_id = :webhook_id AND group_key = :group_key"
)
NOTIFICATION_STATE = (
    "SELECT state FROM notifications WHERE notification_id = :notification_id "
    "AND webhook_id = :webhook_id AND group_key = :group_key"
)
# The invariants of gateway.lifecycle (store.check_invariants): each dialect reads the rows
# that break them its own way; both repair them row by row, checking again as they write.
IS_ACTIVE = "w.status_code = 'Active' AND (w.expiration_date IS NULL OR w.expiration_date > :now)"
_ACTIVE_OWNER = (
    "EXISTS (SELECT 1 FROM webhooks w WHERE w.webhook_id = notifications.webhook_id "
    f"AND {IS_ACTIVE})"
)
RELEASE_ONE = (
    "UPDATE notifications SET state = 'pending', next_attempt_at = :now, timestamp = :now, "
    "process_result_message = :message, lease_owner = NULL, lease_until = NULL "
    f"WHERE notification_id = :notification_id AND state = 'parked' AND {_ACTIVE_OWNER}"
)
PARK_ONE = (
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
PRUNE_HISTORY = "DELETE FROM notifications WHERE state = 'succeeded' AND timestamp < :before"
# Events whose notifications are all gone serve nobody once they are older than the cutoff.
PRUNE_EVENTS = (
    "DELETE FROM events WHERE created < :before "
    "AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.event_id = events.event_id)"
)
DELIVERY_STATS = (
    "SELECT (SELECT count(*) FROM notifications WHERE state = 'pending') AS pending, "
    "(SELECT count(*) FROM notifications WHERE state = 'parked') AS parked, "
    "(SELECT count(*) FROM notifications WHERE state = 'failed') AS failed, "
    "(SELECT count(*) FROM notifications WHERE state = 'succeeded') AS succeeded, "
    "(SELECT min(next_attempt_at) FROM notifications WHERE state = 'pending') AS first_due"
)

# -- Handshake nonces ------------------------------------------------------------------------
TAKE_HANDSHAKE_NONCE = (
    "INSERT INTO handshake_nonces (nonce, expires) VALUES (:nonce, :expires) "
    "ON CONFLICT (nonce) DO NOTHING"
)
PRUNE_HANDSHAKE_NONCES = "DELETE FROM handshake_nonces WHERE expires <= :now"

# -- Filterable columns: lowercase wire name -> SQL -------------------------------------------
WEBHOOK_SQL = {
    "webhookid": "webhook_id", "groupkey": "group_key", "name": "name",
    "statuscode": "status_code", "statusmessage": "status_message",
    "requestcontenttype": "request_content_type", "callbackhttpmethod": "callback_http_method",
    "callbackurl": "callback_url", "expirationdate": "expiration_date",
    "retrycount": "retry_count", "created": "created", "createduserid": "created_user_id",
    "modified": "modified", "modifieduserid": "modified_user_id", "partitionkey": "partition_key",
}  # fmt: skip
RULE_SQL = {
    "webhookruleid": "webhook_rule_id", "webhookid": "webhook_id", "groupkey": "group_key",
    "tablekey": "table_key", "eventtype": "event_type", "filter": "filter", "created": "created",
    "createduserid": "created_user_id", "modified": "modified",
    "modifieduserid": "modified_user_id",
}  # fmt: skip
WEBHOOKS = Listing(
    QUERY_WEBHOOKS,
    COUNT_WEBHOOKS,
    whitelist(WEBHOOK_SQL, WEBHOOK_FIELDS),
    WEBHOOK_DEFAULT_ORDER,
    "webhook_id",
)
RULES = Listing(
    QUERY_RULES, COUNT_RULES, whitelist(RULE_SQL, RULE_FIELDS), RULE_DEFAULT_ORDER,
    "webhook_rule_id",
)  # fmt: skip


def history(is_successful_as_int: str) -> Listing:
    """The history listing; the dialect says how `is_successful` counts as 0 or 1 in SQL."""
    columns = {
        "webhookhistoryid": "notification_id", "webhookid": "webhook_id",
        "groupkey": "group_key", "eventtype": "event_type_label", "requestsent": "request_sent",
        "issuccessful": "is_successful", "responsestatuscode": "response_status_code",
        "processresultmessage": "process_result_message",
        # As the wire shows it: every attempt but a final successful one counts as a failure.
        "failurecount": f"(attempts - {is_successful_as_int})", "timestamp": "timestamp",
    }  # fmt: skip
    return Listing(
        QUERY_HISTORY,
        COUNT_HISTORY,
        whitelist(columns, HISTORY_FIELDS),
        HISTORY_DEFAULT_ORDER,
        "notification_id",
    )


def migration_files(directory: Path) -> list[tuple[int, str]]:
    """(version, SQL) of every migration file in `directory`, in order: 0001_initial.sql is
    version 1."""
    files = sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    return [(int(f.name[:4]), f.read_text(encoding="utf-8")) for f in files]
