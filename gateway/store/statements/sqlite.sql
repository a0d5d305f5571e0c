-- SQLite's own statements, where they differ from statements/shared.sql (the same names, the
-- same fill-ins): lists of ids as JSON text (json_each), and the delivery path's positional
-- rows. PostgreSQL's row locks (LOCK_*) have no block here: SQLite skips a steps.Lock, its
-- writer holding the whole file, and sqlite_queries names them None.

-- name: CREATE_MIGRATIONS
CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)

-- name: EXPIRING
SELECT {webhook_columns} FROM webhooks
WHERE status_code = 'Active' AND expiration_date IS NOT NULL AND expiration_date <= :now

-- name: EXPIRY_WARNINGS
-- Active webhooks that expire within the horizon and were not warned of that date (WARN_EXPIRY).
SELECT {webhook_columns} FROM webhooks
WHERE status_code = 'Active' AND expiration_date > :now AND expiration_date <= :horizon
    AND (expiry_warned_for IS NULL OR expiry_warned_for <> expiration_date)

-- name: WEBHOOKS_ANY_GROUP
-- Webhooks by id, whatever their group, in one read: the delivery worker's senders, which meet
-- many webhooks at once after a fan-out.
SELECT {webhook_columns} FROM webhooks WHERE webhook_id IN (SELECT value FROM json_each(:webhook_ids))

-- name: LOCK_WEBHOOKS
-- The webhooks a transaction is about to change, as they are now (PostgreSQL locks them here).
SELECT {webhook_columns} FROM webhooks
WHERE webhook_id IN (SELECT value FROM json_each(:webhook_ids))

-- name: RESERVE_SEQUENCES
-- Reserves sequence numbers for many webhooks in one statement: :counts is a JSON array of
-- [webhook_id, group_key, count]; RETURNING gives each webhook's last number, and its status and
-- deliveryOrder as this transaction sees them (the notifications' state is decided from them).
-- Checks the group too, so a notification can never be filed under another group's webhook.
UPDATE webhooks SET last_sequence = last_sequence + r.count
FROM (SELECT json_extract(value, '$[0]') AS webhook_id,
    json_extract(value, '$[1]') AS group_key, json_extract(value, '$[2]') AS count
    FROM json_each(:counts)) AS r
WHERE webhooks.webhook_id = r.webhook_id AND webhooks.group_key = r.group_key
RETURNING webhooks.webhook_id, webhooks.group_key, webhooks.last_sequence,
    webhooks.status_code, webhooks.status_message, webhooks.expiration_date,
    webhooks.delivery_order

-- name: RULES_FOR_WEBHOOKS
SELECT {rule_columns} FROM webhook_rules WHERE group_key = :group_key
    AND webhook_id IN (SELECT value FROM json_each(:webhook_ids))
ORDER BY created, webhook_rule_id

-- name: INSERT_EVENT
-- The two inserts of the publish path take positional rows (event_row, notification_row), in
-- the order of their columns: binding by name looks each of a row's names up in its dict, from
-- C, row after row.
INSERT INTO events ({event_columns}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)

-- name: INSERT_NOTIFICATION
INSERT INTO notifications ({notification_columns})
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
    ?20, ?21, ?22, ?23, ?24)

-- name: INSERT_WAITING
-- A Strict webhook's new notifications, waiting in its queue (gateway.ordering; queued 1).
INSERT INTO notifications ({notification_columns}, queued)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
    ?20, ?21, ?22, ?23, ?24, 1)

-- name: CLAIM_DUE
-- The literal state = 'pending' lets SQLite use the partial index notifications_due. What it
-- returns is a models.Due but its lease, which sqlite_queries.claimed has already: each column
-- read back costs the sqlite3 module a call or more.
UPDATE notifications SET lease_owner = :owner, lease_until = :lease_until
WHERE notification_id IN (
    SELECT notification_id FROM notifications
    WHERE state = 'pending' AND next_attempt_at <= :now
        AND (lease_until IS NULL OR lease_until <= :now)
        AND webhook_id NOT IN (SELECT value FROM json_each(:exclude))
        AND group_key NOT IN (SELECT value FROM json_each(:exclude_groups)) AND {FIRST_HEAD}
    ORDER BY next_attempt_at, webhook_id, sequence LIMIT :limit
) RETURNING {claimed_columns}

-- name: LEASES
-- Settling a batch of attempts: each notification's lease holder and webhook id, then each of
-- those webhooks once, as they are now (LOCK_WEBHOOKS: a join repeated the whole webhook row
-- for every notification, hundreds a batch); then the writes, one statement each, over the
-- whole batch (SETTLE_ATTEMPT bound by position, numbered by sqlite_queries).
SELECT notification_id, lease_owner, webhook_id FROM notifications
WHERE notification_id IN (SELECT value FROM json_each(:ids))

-- name: ATTEMPTS
SELECT {a.attempt_columns} FROM attempts a
JOIN notifications n ON n.notification_id = a.notification_id
WHERE n.group_key = :group_key AND n.webhook_id = :webhook_id
    AND a.notification_id IN (SELECT value FROM json_each(:ids))
ORDER BY a.notification_id, a.attempt

-- name: PARKED_OF_ACTIVE
-- The invariants of gateway.lifecycle, counted and repaired by store.check_invariants. Both
-- are read from the webhooks' side: the parked ones of each Active webhook (an index probe
-- each), the pending ones of each webhook that is not Active (usually none). A scan of every
-- pending row would read a whole backlog once a minute. The repairs check again, row by row.
-- CROSS JOIN: SQLite then reads the webhooks first, as written, rather than a partial index of
-- every parked or pending row.
SELECT n.notification_id, n.webhook_id FROM webhooks w
CROSS JOIN notifications n ON n.webhook_id = w.webhook_id AND n.state = 'parked'
WHERE {IS_ACTIVE}

-- name: PENDING_OF_INACTIVE
SELECT n.notification_id, n.webhook_id FROM webhooks w
CROSS JOIN notifications n ON n.webhook_id = w.webhook_id AND n.state = 'pending'
WHERE NOT ({IS_ACTIVE}) AND (n.lease_until IS NULL OR n.lease_until <= :now)
