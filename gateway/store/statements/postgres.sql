-- PostgreSQL's own statements, where they differ from statements/shared.sql (the same names,
-- the same fill-ins): row locks, arrays, NOTIFY, the delivery path. postgres_queries numbers
-- the :name parameters ($1 ...) once, as it reads them.

-- name: CREATE_MIGRATIONS
CREATE TABLE IF NOT EXISTS schema_migrations
(version integer PRIMARY KEY, applied_at timestamptz NOT NULL)

-- name: LOCK_MIGRATIONS
-- One process at a time applies migrations; the key is any constant ("gateway" in ASCII).
SELECT pg_advisory_xact_lock(29099075147620729)

-- name: LOCK_GROUP_WEBHOOKS
-- One create under max_webhooks_per_group at a time per group counts and adds its webhooks: a
-- group has no row of its own to lock, so a transaction-scoped advisory lock keyed on it, in
-- the two-key space (apart from LOCK_MIGRATIONS' one key); 22344 is any constant ("WH").
SELECT pg_advisory_xact_lock(22344, hashtext(:group_key::uuid::text))

-- name: HOLD_AUTHENTICATION
-- FOR SHARE: a concurrent DELETE_AUTHENTICATION waits for the webhook's write, then finds it
-- among the users; one that committed first leaves no row to read.
SELECT 1 FROM authentications
WHERE authentication_id = :authentication_id AND group_key = :group_key FOR SHARE

-- name: LOCK_AUTHENTICATION
-- FOR UPDATE, before DELETE_AUTHENTICATION reads its users: a webhook write holding it
-- (HOLD_AUTHENTICATION) is waited for, and the users read afterwards include that webhook.
SELECT 1 FROM authentications
WHERE authentication_id = :authentication_id AND group_key = :group_key FOR UPDATE

-- name: NOTIFY
SELECT pg_notify(:channel, :payload)

-- name: EXPIRING
-- The rows are locked in id order, like every other writer of several webhooks.
SELECT {webhook_columns} FROM webhooks WHERE status_code = 'Active'
    AND expiration_date IS NOT NULL AND expiration_date <= :now
ORDER BY webhook_id FOR NO KEY UPDATE

-- name: EXPIRY_WARNINGS
-- Active webhooks that expire within the horizon and were not warned of that date
-- (WARN_EXPIRY), locked in id order like every other writer of several webhooks.
SELECT {webhook_columns} FROM webhooks
WHERE status_code = 'Active' AND expiration_date > :now AND expiration_date <= :horizon
    AND (expiry_warned_for IS NULL OR expiry_warned_for <> expiration_date)
ORDER BY webhook_id FOR NO KEY UPDATE

-- name: WEBHOOKS_ANY_GROUP
-- Webhooks by id, whatever their group, in one read: the delivery worker's senders, which meet
-- many webhooks at once after a fan-out.
SELECT {webhook_columns} FROM webhooks WHERE webhook_id = ANY(:webhook_ids::uuid[])

-- name: LOCK_WEBHOOKS
-- Lock the webhooks a transaction is about to change, always in id order, so that two
-- processes settling or numbering notifications of the same webhooks queue instead of
-- deadlocking. NO KEY UPDATE still lets other transactions insert rows that reference them.
SELECT {webhook_columns} FROM webhooks WHERE webhook_id = ANY(:webhook_ids::uuid[])
ORDER BY webhook_id FOR NO KEY UPDATE

-- name: LOCK_NOTICE_SUBSCRIBERS
-- A change of these webhooks' status may publish a lifecycle notice, which locks the webhooks
-- subscribed to notices in their groups (RESERVE_SEQUENCES). A publish to a group locks every
-- webhook it reaches in id order, so the transaction locks the changed webhooks and those
-- subscribers in that one order first: taken one after the other, they deadlocked with it.
SELECT 1 FROM webhooks
WHERE webhook_id = ANY(:webhook_ids::uuid[]) OR webhook_id IN (
    SELECT r.webhook_id FROM webhook_rules r
    WHERE r.table_key = :table_key AND r.event_type = :event_type AND r.group_key IN (
        SELECT group_key FROM webhooks WHERE webhook_id = ANY(:webhook_ids::uuid[])))
ORDER BY webhook_id FOR NO KEY UPDATE

-- name: LOCK_WEBHOOK_IDS
SELECT 1 FROM webhooks WHERE webhook_id = ANY(:webhook_ids::uuid[])
ORDER BY webhook_id FOR NO KEY UPDATE

-- name: RESERVE_SEQUENCES
-- Reserves `count` numbers per webhook in one statement; RETURNING gives the last of each, with
-- the webhook's status and deliveryOrder (the notifications' state is decided from them).
-- Checks the group too, so a notification can never be filed under another group's webhook.
UPDATE webhooks w SET last_sequence = w.last_sequence + c.count
FROM unnest(:webhook_ids::uuid[], :group_keys::uuid[], :counts::bigint[])
    AS c (webhook_id, group_key, count)
WHERE w.webhook_id = c.webhook_id AND w.group_key = c.group_key
RETURNING w.webhook_id, w.group_key, w.last_sequence, w.status_code, w.status_message,
    w.expiration_date, w.delivery_order

-- name: RULES_FOR_WEBHOOKS
SELECT {rule_columns} FROM webhook_rules WHERE group_key = :group_key
    AND webhook_id = ANY(:webhook_ids::uuid[]) ORDER BY created, webhook_rule_id

-- name: COLUMN_TYPES
-- Each column's type, for the inserts that postgres_queries.unnested makes one statement of.
SELECT t.name, a.attname, format_type(a.atttypid, a.atttypmod)
FROM unnest(:tables::text[]) AS t (name)
JOIN pg_attribute a ON a.attrelid = to_regclass(t.name)
WHERE a.attnum > 0 AND NOT a.attisdropped

-- name: INSERT_EVENT
INSERT INTO events ({event_columns}) VALUES ({event_values})

-- name: INSERT_NOTIFICATION
INSERT INTO notifications ({notification_columns}) VALUES ({notification_values})

-- name: INSERT_WAITING
-- A Strict webhook's new notifications, waiting in its queue (gateway.ordering; queued 1).
INSERT INTO notifications ({notification_columns}, queued) VALUES ({notification_values}, 1)

-- name: CLAIM_DUE
-- SKIP LOCKED: rows another process is claiming right now are passed over, not waited for, so
-- concurrent claims never block each other and never take the same row. A row claimed and
-- committed by another process after this snapshot is re-checked against the WHERE clause when
-- locked, and its new lease excludes it.
WITH due AS (
    SELECT notification_id FROM notifications
    WHERE state = 'pending' AND next_attempt_at <= :now
        AND (lease_until IS NULL OR lease_until <= :now)
        AND webhook_id <> ALL(:exclude::uuid[]) AND group_key <> ALL(:exclude_groups::uuid[])
        AND {FIRST_HEAD}
    ORDER BY next_attempt_at, webhook_id, sequence LIMIT :limit FOR UPDATE SKIP LOCKED
)
UPDATE notifications n SET lease_owner = :owner, lease_until = :lease_until
FROM due WHERE n.notification_id = due.notification_id RETURNING {n.due_columns}

-- name: LEASES
-- Settling attempts: each notification's lease holder and webhook id; then, their webhooks
-- locked (LOCK_WEBHOOKS), again, locking the rows still leased by the outcomes' owners, so that
-- a claim cannot take one over between this check and the write.
SELECT notification_id, lease_owner, webhook_id FROM notifications
WHERE notification_id = ANY(:ids::uuid[])

-- name: LOCK_LEASES
SELECT n.notification_id, n.lease_owner, n.webhook_id FROM notifications n
JOIN unnest(:ids::uuid[], :owners::text[]) AS l (notification_id, owner)
    ON n.notification_id = l.notification_id AND n.lease_owner = l.owner
ORDER BY n.notification_id FOR UPDATE OF n

-- name: LOCK_LEASED_WEBHOOKS
-- release_leases locks the webhooks of the leases it gives back, as every other writer does.
SELECT 1 FROM webhooks WHERE webhook_id IN (SELECT webhook_id FROM notifications
    WHERE lease_owner = :owner AND state = 'pending') ORDER BY webhook_id FOR NO KEY UPDATE

-- name: ATTEMPTS
SELECT {a.attempt_columns} FROM attempts a
JOIN notifications n ON n.notification_id = a.notification_id
WHERE n.group_key = :group_key AND n.webhook_id = :webhook_id
    AND a.notification_id = ANY(:ids::uuid[]) ORDER BY a.notification_id, a.attempt

-- name: PARKED_OF_ACTIVE
-- The invariants of gateway.lifecycle, counted and repaired by store.check_invariants, read
-- from the webhooks' side (the parked ones of each Active webhook, the pending ones of each
-- webhook that is not Active); each repair checks its row again as it writes.
SELECT n.notification_id, n.webhook_id FROM webhooks w
JOIN notifications n ON n.webhook_id = w.webhook_id AND n.state = 'parked'
WHERE {IS_ACTIVE}

-- name: PENDING_OF_INACTIVE
SELECT n.notification_id, n.webhook_id FROM webhooks w
JOIN notifications n ON n.webhook_id = w.webhook_id AND n.state = 'pending'
WHERE NOT ({IS_ACTIVE}) AND (n.lease_until IS NULL OR n.lease_until <= :now)

-- name: ACTIVITY_HOUR
-- The UTC hour of an attempt's timestamp as 'YYYY-MM-DDTHH' (DELIVERY_ACTIVITY), as SQLite's.
to_char(tried.timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24')
