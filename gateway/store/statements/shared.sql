-- The statements SQLite and PostgreSQL both run, by name; statements/sqlite.sql and
-- statements/postgres.sql hold only what differs. gateway.store.queries reads the blocks: a
-- `-- name: NAME` line, comments (left out of the statement), the statement. Parameters are
-- :name. Fill-ins: {webhook_columns} a table's columns (its record's fields, in order),
-- {webhook_values} the same as parameters, {w.webhook_columns} qualified by an alias,
-- {w.webhook_columns AS w_*} renamed too; {IS_ACTIVE} another block; {where}, {order},
-- {sets}, {guards} are filled as the statement runs (a listing, an owner's edit).

-- name: IS_APPLIED
SELECT 1 FROM schema_migrations WHERE version = :version

-- name: RECORD_MIGRATION
INSERT INTO schema_migrations (version, applied_at) VALUES (:version, :now)

-- name: APPLIED_VERSIONS
SELECT version FROM schema_migrations ORDER BY version


-- name: INSERT_API_KEY
INSERT INTO api_keys ({api_key_columns}) VALUES ({api_key_values})

-- name: API_KEY_BY_HASH
SELECT {api_key_columns} FROM api_keys WHERE key_hash = :key_hash

-- name: LIST_API_KEYS
SELECT {api_key_columns} FROM api_keys ORDER BY created, api_key_id

-- name: REVOKE_API_KEY
UPDATE api_keys SET revoked = :revoked WHERE api_key_id = :api_key_id

-- name: GROUP_KEY_FOR_NAME
SELECT group_key FROM api_keys WHERE group_name = :group_name ORDER BY created LIMIT 1


-- name: INSERT_WEBHOOK
INSERT INTO webhooks ({webhook_columns}) VALUES ({webhook_values})

-- name: GET_WEBHOOK
SELECT {webhook_columns} FROM webhooks WHERE webhook_id = :webhook_id AND group_key = :group_key

-- name: GET_WEBHOOK_ANY_GROUP
SELECT {webhook_columns} FROM webhooks WHERE webhook_id = :webhook_id

-- name: WEBHOOK_EXISTS
SELECT 1 FROM webhooks WHERE webhook_id = :webhook_id AND group_key = :group_key

-- name: DELETE_WEBHOOK
DELETE FROM webhooks WHERE webhook_id = :webhook_id AND group_key = :group_key

-- name: QUERY_WEBHOOKS
SELECT {webhook_columns} FROM webhooks WHERE {where} ORDER BY {order} LIMIT :limit OFFSET :offset

-- name: COUNT_WEBHOOKS
SELECT count(*) FROM webhooks WHERE {where}

-- name: COUNT_GROUP_WEBHOOKS
-- A group's webhooks against max_webhooks_per_group (the index on group_key, created serves it).
SELECT count(*) FROM webhooks WHERE group_key = :group_key

-- name: EDIT_WEBHOOK
-- An owner's edit (queries.edit_webhook): {sets} the named columns, only while {guards} find
-- the expected ones still holding their values; the row after it.
UPDATE webhooks SET {sets}
WHERE webhook_id = :webhook_id AND group_key = :group_key{guards}
RETURNING {webhook_columns}

-- name: SET_STATUS
-- A status change of an owner or of the expiry sweep; PARK_PENDING or RELEASE_PARKED follows in
-- the same transaction. (CAST: PostgreSQL cannot tell a bare parameter's type in a CASE.) A
-- reset also starts the failure window afresh (:window_start, else NULL).
UPDATE webhooks SET status_code = :status_code, status_message = :status_message,
    status_reason = :status_reason,
    failure_count = CASE WHEN CAST(:reset_failures AS boolean) THEN 0 ELSE failure_count END,
    window_start = coalesce(:window_start, window_start)
WHERE webhook_id = :webhook_id RETURNING {webhook_columns}

-- name: REGENERATE_SECRET
-- previous_secret takes the secret as it was before this statement: two regenerations at once
-- chain (each answers a secret that signs), where two read-modify-writes lost one. A webhook
-- with an Ed25519 key pair (signing_key) gets the new pair given, its key likewise kept as the
-- previous one; without a pair given, or without a pair of its own, its keys stay as they are.
UPDATE webhooks SET previous_secret = client_secret, client_secret = :secret,
    previous_signing_key = CASE WHEN signing_key IS NULL OR CAST(:signing_key AS text) IS NULL
        THEN previous_signing_key ELSE signing_key END,
    signing_key = CASE WHEN signing_key IS NULL OR CAST(:signing_key AS text) IS NULL
        THEN signing_key ELSE CAST(:signing_key AS text) END,
    public_key = CASE WHEN signing_key IS NULL OR CAST(:signing_key AS text) IS NULL
        THEN public_key ELSE CAST(:public_key AS text) END,
    previous_secret_expires = :previous_until, modified = :now, modified_user_id = :user_id
WHERE webhook_id = :webhook_id AND group_key = :group_key RETURNING {webhook_columns}

-- name: WARN_EXPIRY
-- An `expiring` notice goes out once per expiry date: the date it went out for is kept, and the
-- row is taken only while it is Active, expires within the horizon and was not warned of it.
UPDATE webhooks SET expiry_warned_for = expiration_date
WHERE webhook_id = :webhook_id AND status_code = 'Active' AND expiration_date > :now
    AND expiration_date <= :horizon
    AND (expiry_warned_for IS NULL OR expiry_warned_for <> expiration_date)
RETURNING {webhook_columns}

-- name: UNSCHEDULED
-- Re-verification: Active webhooks with no due time yet, or one further off than an interval
-- (the interval was shortened); Management.reverify_due gives each its moment.
SELECT webhook_id FROM webhooks
WHERE status_code = 'Active' AND (reverify_due IS NULL OR reverify_due > :latest)
LIMIT :most

-- name: SCHEDULE_REVERIFY
UPDATE webhooks SET reverify_due = :due
WHERE webhook_id = :webhook_id AND (reverify_due IS NULL OR reverify_due > :latest)

-- name: REVERIFY_DUE
-- The webhooks whose re-verification is due, longest-due first, a bounded number a sweep.
SELECT {w.webhook_columns} FROM webhooks w
WHERE {IS_ACTIVE} AND w.reverify_due <= :now
ORDER BY w.reverify_due, w.webhook_id LIMIT :most

-- name: VERIFIED
-- A passed re-verification: only while the callback verified is still the webhook's, it is
-- still Active and still due as when the sweep read it (else the owner's change stands, and its
-- own handshake counted: one that passed, a reactivation say, clears reverify_due).
UPDATE webhooks SET verified_at = :now, reverify_due = :due
WHERE webhook_id = :webhook_id AND status_code = 'Active' AND callback_url = :callback_url
    AND callback_http_method = :callback_http_method AND reverify_due = :reverify_due

-- name: FAIL_VERIFICATION
-- A failed re-verification makes the webhook Errored, under the same guard as VERIFIED (and not
-- expired: then it receives nothing already); PARK_PENDING follows in the same transaction. A
-- pause and a reactivation while it ran put the status back, but not reverify_due.
UPDATE webhooks SET status_code = :status_code, status_message = :status_message,
    status_reason = :status_reason, reverify_due = NULL, modified = :now
WHERE webhook_id = :webhook_id AND status_code = 'Active' AND callback_url = :callback_url
    AND callback_http_method = :callback_http_method AND reverify_due = :reverify_due
    AND (expiration_date IS NULL OR expiration_date > :now)
RETURNING {webhook_columns}

-- name: TOUCH_WEBHOOK
UPDATE webhooks SET modified = :now WHERE webhook_id = :webhook_id RETURNING {webhook_columns}


-- name: INSERT_RULE
INSERT INTO webhook_rules ({rule_columns}) VALUES ({rule_values})

-- name: GET_RULE
SELECT {rule_columns} FROM webhook_rules
WHERE webhook_rule_id = :webhook_rule_id AND group_key = :group_key

-- name: UPDATE_RULE
-- The stored rule replaced, every column (its id and group, in the WHERE clause, stay as they are).
UPDATE webhook_rules SET ({rule_columns}) = ({rule_values})
WHERE webhook_rule_id = :webhook_rule_id AND group_key = :group_key

-- name: DELETE_RULE
DELETE FROM webhook_rules WHERE webhook_rule_id = :webhook_rule_id AND group_key = :group_key

-- name: QUERY_RULES
SELECT {rule_columns} FROM webhook_rules WHERE {where} ORDER BY {order}
LIMIT :limit OFFSET :offset

-- name: COUNT_RULES
SELECT count(*) FROM webhook_rules WHERE {where}

-- name: MATCHING_RULES
-- Each rule's filter, with its webhook as publishing reads it (models.Recipient).
SELECT r.filter, {w.recipient_columns} FROM webhook_rules r
JOIN webhooks w ON w.webhook_id = r.webhook_id
WHERE r.group_key = :group_key AND r.table_key = :table_key AND r.event_type = :event_type
ORDER BY r.created, r.webhook_rule_id


-- name: INSERT_EVENT_TYPE
-- A (table, event type) declared twice in a group inserts nothing: the caller sees no row
-- changed and refuses the whole batch (a concurrent insert waits here, then changes nothing).
INSERT INTO event_types ({event_type_columns}) VALUES ({event_type_values})
ON CONFLICT (group_key, table_key, event_type) DO NOTHING

-- name: GET_EVENT_TYPE
SELECT {event_type_columns} FROM event_types
WHERE event_type_id = :event_type_id AND group_key = :group_key

-- name: UPDATE_EVENT_TYPE
-- What a PATCH may change: never the (table, event type) the entry declares.
UPDATE event_types SET name = :name, description = :description, category = :category,
    record_schema = :record_schema, deprecated = :deprecated, modified = :modified,
    modified_user_id = :modified_user_id
WHERE event_type_id = :event_type_id AND group_key = :group_key

-- name: DELETE_EVENT_TYPE
DELETE FROM event_types WHERE event_type_id = :event_type_id AND group_key = :group_key

-- name: QUERY_EVENT_TYPES
SELECT {event_type_columns} FROM event_types WHERE {where} ORDER BY {order}
LIMIT :limit OFFSET :offset

-- name: COUNT_EVENT_TYPES
SELECT count(*) FROM event_types WHERE {where}

-- name: EVENT_TYPES_OF_GROUP
SELECT {event_type_columns} FROM event_types WHERE group_key = :group_key
ORDER BY table_key, event_type

-- name: IS_ACTIVE
-- Whether webhook w receives (gateway.lifecycle.receives): a fragment of the statements below.
w.status_code = 'Active' AND (w.expiration_date IS NULL OR w.expiration_date > :now)

-- name: ACTIVE_OWNER
-- Whether a notification's webhook receives: a fragment of the statements below.
EXISTS (SELECT 1 FROM webhooks w WHERE w.webhook_id = notifications.webhook_id AND {IS_ACTIVE})

-- name: LOG_ATTEMPT
-- Failed attempts go to the log too, numbered by the row's count (already increased), with
-- their webhook, which WINDOW_FAILURES counts by.
INSERT INTO attempts ({attempt_columns}, webhook_id, elapsed_ms)
SELECT notification_id, attempts, timestamp, response_status_code, process_result_message,
    request_message, response_message, webhook_id, elapsed_ms
FROM notifications WHERE notification_id = :notification_id

-- name: WINDOW_FAILURES
-- A webhook's failed attempts logged after :since, counted up to :most (its failure window's
-- count: more changes nothing), by the index attempts_window.
SELECT count(*) FROM (
    SELECT 1 FROM attempts WHERE webhook_id = :webhook_id AND timestamp > :since LIMIT :most
) AS recent

-- name: RELEASE_PARKED
-- Releasing clears leases: a worker that still holds one of them dropped it when it learned the
-- webhook left Active; if it did not, its outcome is refused and the notification goes again.
UPDATE notifications SET state = 'pending', next_attempt_at = :now, timestamp = :now,
    process_result_message = :message, lease_owner = NULL, lease_until = NULL
WHERE webhook_id = :webhook_id AND state = 'parked'

-- name: RELEASE_HEAD
-- A Strict webhook's release (gateway.ordering): its parked head (and any parked in flight since
-- it became Strict) pending again, leases kept: one a worker is still sending is not sent a
-- second time meanwhile; its outcome settles it, or its lease runs out and a claim takes it.
UPDATE notifications SET state = 'pending', next_attempt_at = :now, timestamp = :now,
    process_result_message = :message
WHERE webhook_id = :webhook_id AND state = 'parked'

-- name: REQUEUE_NOTIFICATION
-- Guarded by the webhook being Active in the same statement (on PostgreSQL its row is locked
-- first, LOCK_WEBHOOKS): a hand retry never sends to a webhook that is not, and never touches
-- the recorded attempt. A test send is never queued: it would count as a delivery. One in
-- flight (leased) is left as it is: it is being sent already, and clearing its lease would
-- have it claimed and sent a second time at once.
UPDATE notifications SET state = 'pending', next_attempt_at = :now, timestamp = :now,
    lease_owner = NULL, lease_until = NULL
WHERE notification_id = :notification_id AND webhook_id = :webhook_id
    AND group_key = :group_key AND state IN ('pending', 'parked', 'failed') AND NOT is_test
    AND (lease_until IS NULL OR lease_until <= :now)
    AND EXISTS (SELECT 1 FROM webhooks w WHERE w.webhook_id = :webhook_id AND {IS_ACTIVE})

-- name: REQUEUE_IN_ORDER
-- A hand retry of a Strict webhook's notification (its row locked, LOCK_WEBHOOKS): it joins the
-- queue, waiting, and _normalize makes it the head if it is the lowest. One in flight (leased)
-- is left as it is: it is being sent already.
UPDATE notifications SET state = 'waiting', queued = 1, timestamp = :now,
    process_result_message = :message, lease_owner = NULL, lease_until = NULL
WHERE notification_id = :notification_id AND webhook_id = :webhook_id
    AND group_key = :group_key AND state IN ('pending', 'parked', 'failed', 'waiting')
    AND NOT is_test AND (lease_until IS NULL OR lease_until <= :now)
    AND EXISTS (SELECT 1 FROM webhooks w WHERE w.webhook_id = :webhook_id AND {IS_ACTIVE})

-- name: SETTLE_ATTEMPT
-- Settling an attempt that sent a request: it replaces the last attempt's fields on the row.
UPDATE notifications SET state = :state,
    next_attempt_at = coalesce(:next_attempt_at, next_attempt_at),
    attempts = attempts + 1, request_sent = true, is_successful = :is_successful,
    response_status_code = :response_status_code,
    process_result_message = :process_result_message, request_message = :request_message,
    response_message = :response_message, elapsed_ms = :elapsed_ms, timestamp = :now,
    lease_owner = NULL, lease_until = NULL
WHERE notification_id = :notification_id AND lease_owner = :lease_owner

-- name: SETTLE_UNSENT
-- Settling an attempt that sent no request (parked, due again, or cannot be rendered): the
-- last attempt's fields stay.
UPDATE notifications SET state = :state,
    next_attempt_at = coalesce(:next_attempt_at, next_attempt_at),
    process_result_message = :process_result_message, timestamp = :now,
    lease_owner = NULL, lease_until = NULL
WHERE notification_id = :notification_id AND lease_owner = :lease_owner

-- name: SETTLE_LIFECYCLE
UPDATE webhooks SET failure_count = :failure_count, status_code = :status_code,
    status_message = :status_message, status_reason = :status_reason,
    modified = CASE WHEN status_code <> :status_code THEN :now ELSE modified END
WHERE webhook_id = :webhook_id

-- name: PARK_PENDING
-- Parking keeps leases: a send in flight is still recorded by its worker. :keep (or NULL)
-- names a notification left as it is.
UPDATE notifications SET state = 'parked', timestamp = :now, process_result_message = :message
WHERE webhook_id = :webhook_id AND state = 'pending' AND coalesce(notification_id <> :keep, true)

-- name: RELEASE_LEASES
-- The webhook of each lease given back: a Strict one's queue is set right after it.
UPDATE notifications SET lease_owner = NULL, lease_until = NULL
WHERE state = 'pending' AND lease_owner = :owner RETURNING webhook_id

-- name: GET_NOTIFICATION
SELECT {notification_columns} FROM notifications WHERE notification_id = :notification_id
    AND webhook_id = :webhook_id AND group_key = :group_key

-- name: NOTIFICATION_STATE
SELECT state, is_test FROM notifications WHERE notification_id = :notification_id
    AND webhook_id = :webhook_id AND group_key = :group_key

-- name: RELEASE_ONE
-- The invariants of gateway.lifecycle (store.check_invariants): each dialect reads the rows
-- that break them its own way (PARKED_OF_ACTIVE, PENDING_OF_INACTIVE); both repair them row by
-- row, checking again as they write.
UPDATE notifications SET state = 'pending', next_attempt_at = :now, timestamp = :now,
    process_result_message = :message, lease_owner = NULL, lease_until = NULL
WHERE notification_id = :notification_id AND state = 'parked' AND {ACTIVE_OWNER}

-- name: PARK_ONE
UPDATE notifications SET state = 'parked', timestamp = :now, process_result_message = :message
WHERE notification_id = :notification_id AND state = 'pending'
    AND (lease_until IS NULL OR lease_until <= :now) AND NOT {ACTIVE_OWNER}

-- name: QUERY_HISTORY
SELECT {notification_columns} FROM notifications WHERE {where} ORDER BY {order}
LIMIT :limit OFFSET :offset

-- name: COUNT_HISTORY
SELECT count(*) FROM notifications WHERE {where}

-- name: PRUNE_HISTORY
DELETE FROM notifications WHERE state = 'succeeded' AND timestamp < :before

-- name: PRUNE_EVENTS
-- Events whose notifications are all gone serve nobody once they are older than the cutoff.
DELETE FROM events WHERE created < :before
    AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.event_id = events.event_id)

-- name: DELIVERY_STATS
-- (The waiting ones are counted by the index of queues, which holds every one of them.)
SELECT (SELECT count(*) FROM notifications WHERE state = 'pending') AS pending,
    (SELECT count(*) FROM notifications WHERE state = 'parked') AS parked,
    (SELECT count(*) FROM notifications WHERE {WAITS}) AS waiting,
    (SELECT count(*) FROM notifications WHERE state = 'failed') AS failed,
    (SELECT count(*) FROM notifications WHERE state = 'succeeded') AS succeeded,
    (SELECT min(next_attempt_at) FROM notifications WHERE state = 'pending') AS first_due


-- name: TAKE_HANDSHAKE_NONCE
INSERT INTO handshake_nonces (nonce, expires) VALUES (:nonce, :expires)
ON CONFLICT (nonce) DO NOTHING

-- name: PRUNE_HANDSHAKE_NONCES
DELETE FROM handshake_nonces WHERE expires <= :now

-- name: REVOKE_PORTAL
-- Two revocations of one subject keep the later of each time: neither undoes the other.
INSERT INTO portal_revocations (subject, revoked_before, expires)
VALUES (:subject, :revoked_before, :expires)
ON CONFLICT (subject) DO UPDATE SET
    revoked_before = CASE WHEN excluded.revoked_before > portal_revocations.revoked_before
        THEN excluded.revoked_before ELSE portal_revocations.revoked_before END,
    expires = CASE WHEN excluded.expires > portal_revocations.expires
        THEN excluded.expires ELSE portal_revocations.expires END

-- name: PORTAL_REVOKED_BEFORE
SELECT max(revoked_before) FROM portal_revocations WHERE subject = :link_id OR subject = :group_key

-- name: PRUNE_PORTAL_REVOCATIONS
DELETE FROM portal_revocations WHERE expires <= :now


-- name: INSERT_AUTHENTICATION
INSERT INTO authentications ({authentication_columns}) VALUES ({authentication_values})

-- name: GET_AUTHENTICATION
SELECT {authentication_columns} FROM authentications
WHERE authentication_id = :authentication_id AND group_key = :group_key

-- name: HOLD_AUTHENTICATION
-- The authentication a webhook is about to name, read in the transaction that writes it: gone
-- (deleted since the API checked), it is refused as unknown, before its foreign key fails.
SELECT 1 FROM authentications
WHERE authentication_id = :authentication_id AND group_key = :group_key

-- name: UPDATE_AUTHENTICATION
-- The stored authentication replaced, every column (its id and group, in the WHERE clause, stay
-- as they are).
UPDATE authentications SET ({authentication_columns}) = ({authentication_values})
WHERE authentication_id = :authentication_id AND group_key = :group_key

-- name: DELETE_AUTHENTICATION
DELETE FROM authentications
WHERE authentication_id = :authentication_id AND group_key = :group_key

-- name: AUTHENTICATION_USERS
-- The webhooks that send with an authentication: told when it changes, named when it cannot
-- be deleted (webhooks_authentication is their index).
SELECT webhook_id, name FROM webhooks
WHERE authentication_id = :authentication_id AND group_key = :group_key
ORDER BY created, webhook_id

-- name: QUERY_AUTHENTICATIONS
SELECT {authentication_columns} FROM authentications WHERE {where} ORDER BY {order}
LIMIT :limit OFFSET :offset

-- name: COUNT_AUTHENTICATIONS
SELECT count(*) FROM authentications WHERE {where}

-- name: ACTIVITY_HOUR
-- The UTC hour of an attempt's timestamp as 'YYYY-MM-DDTHH' (DELIVERY_ACTIVITY): the head of
-- SQLite's stamped text; PostgreSQL has its own.
substr(tried.timestamp, 1, 13)

-- name: DELIVERY_ACTIVITY
-- One webhook's attempts since :since by UTC hour: delivered ones are its successful rows,
-- failed ones the attempt log; with the receivers' answer times (elapsed_ms, NULL when none
-- came back). Test sends are not deliveries: their rows are left out, and a failed one is
-- never in the attempt log.
SELECT {ACTIVITY_HOUR} AS hour, sum(tried.delivered) AS delivered,
    sum(1 - tried.delivered) AS failed, avg(tried.elapsed_ms) AS mean_ms,
    max(tried.elapsed_ms) AS max_ms
FROM (
    SELECT n.timestamp, 1 AS delivered, n.elapsed_ms FROM notifications n
    WHERE n.webhook_id = :webhook_id AND n.group_key = :group_key AND n.is_successful
        AND NOT n.is_test AND n.timestamp >= :since
    UNION ALL
    SELECT a.timestamp, 0, a.elapsed_ms FROM attempts a
    JOIN webhooks w ON w.webhook_id = a.webhook_id AND w.group_key = :group_key
    WHERE a.webhook_id = :webhook_id AND a.timestamp >= :since
) AS tried
GROUP BY 1 ORDER BY 1


-- name: WAITS
-- A Strict webhook's queue (gateway.ordering) by the index notifications_queue (webhook_id,
-- queued, sequence) WHERE queued IS NOT NULL, which any `queued = n` lets SQLite use: WAITS its
-- waiting notifications, HEADS its head and those in flight (queued 2, pending or parked), each
-- a fragment of the statements below.
queued = 1

-- name: HEADS
queued = 2 AND state IN ('pending', 'parked')

-- name: FIRST_HEAD
-- A claim takes a Strict webhook's head only while no head of a lower sequence is pending or
-- parked: the notifications in flight when it became Strict are all heads, and those of a
-- worker that died would otherwise be claimed together when their leases ran out. A fragment
-- of CLAIM_DUE; an Unordered webhook's rows (queued null) never read the queue.
(queued IS NULL OR NOT EXISTS (SELECT 1 FROM notifications h
    WHERE h.webhook_id = notifications.webhook_id AND h.queued = 2
        AND h.state IN ('pending', 'parked') AND h.sequence < notifications.sequence))

-- name: QUEUE_SETTLED
-- _normalize, first: the heads settled since (delivered, failed for good) leave the index.
UPDATE notifications SET queued = NULL
WHERE webhook_id = :webhook_id AND queued = 2 AND state NOT IN ('pending', 'parked')

-- name: QUEUE_WAITS
-- _normalize, then: every unleased pending or parked notification of the Strict webhook that is
-- not its head (a lower sequence waits, or is pending or parked too) waits; all of them while
-- one is in flight (leased, the lease running).
UPDATE notifications SET state = 'waiting', queued = 1, timestamp = :now,
    process_result_message = :message, lease_owner = NULL, lease_until = NULL
WHERE webhook_id = :webhook_id AND {HEADS} AND (lease_until IS NULL OR lease_until <= :now)
    AND (EXISTS (SELECT 1 FROM notifications
                 WHERE webhook_id = :webhook_id AND {HEADS} AND lease_until > :now)
        OR sequence > (SELECT sequence FROM notifications
                       WHERE webhook_id = :webhook_id AND {WAITS} ORDER BY sequence LIMIT 1)
        OR sequence > (SELECT min(sequence) FROM notifications
                       WHERE webhook_id = :webhook_id AND {HEADS}))

-- name: QUEUE_HEAD
-- _normalize, last: with nothing of the Strict webhook pending or parked (none in flight, no
-- head), its lowest waiting notification becomes the head: :state pending, due from now, if the
-- webhook is Active; parked (:message saying why) if not.
UPDATE notifications SET state = :state, queued = 2, next_attempt_at = :now, timestamp = :now,
    process_result_message = :message, lease_owner = NULL, lease_until = NULL
WHERE notification_id = (SELECT notification_id FROM notifications
        WHERE webhook_id = :webhook_id AND {WAITS} ORDER BY sequence LIMIT 1)
    AND NOT EXISTS (SELECT 1 FROM notifications WHERE webhook_id = :webhook_id AND {HEADS})

-- name: JOIN_QUEUE
-- A webhook became Strict: its pending and parked notifications (in flight or not) join its
-- queue, as heads for _normalize to sort out. Read by the webhook's history index: a switch is
-- rare.
UPDATE notifications SET queued = 2
WHERE webhook_id = :webhook_id AND state IN ('pending', 'parked') AND queued IS NULL

-- name: LEAVE_QUEUE
-- A webhook became Unordered (or the check found waiting notifications of an Unordered one):
-- every waiting one is :state, pending (due now) if it is Active, parked if not; UNQUEUE then
-- takes the rest of its queue out of the index.
UPDATE notifications SET state = :state, queued = NULL, next_attempt_at = :now, timestamp = :now,
    process_result_message = :message
WHERE webhook_id = :webhook_id AND {WAITS}

-- name: UNQUEUE
UPDATE notifications SET queued = NULL WHERE webhook_id = :webhook_id AND queued IS NOT NULL

-- name: STRICT_QUEUES
-- The check of gateway.ordering's rule, from the side of the Strict webhooks (a few probes of
-- the index of queues each): the lowest waiting sequence, the unleased pending or parked
-- notifications (heads: one at most) and the lowest of them, and how many are in flight.
SELECT w.webhook_id,
    (SELECT sequence FROM notifications WHERE webhook_id = w.webhook_id AND {WAITS}
     ORDER BY sequence LIMIT 1) AS first_waiting,
    (SELECT count(*) FROM notifications WHERE webhook_id = w.webhook_id AND {HEADS}
        AND (lease_until IS NULL OR lease_until <= :now)) AS heads,
    (SELECT min(sequence) FROM notifications WHERE webhook_id = w.webhook_id AND {HEADS}
        AND (lease_until IS NULL OR lease_until <= :now)) AS first_head,
    (SELECT count(*) FROM notifications WHERE webhook_id = w.webhook_id AND {HEADS}
        AND lease_until > :now) AS in_flight
FROM webhooks w WHERE w.delivery_order = 'Strict'

-- name: WAITING_OF_UNORDERED
-- The Unordered webhooks with waiting notifications (none should have any), and how many: an
-- index probe per webhook.
SELECT webhook_id, waiting FROM (
    SELECT w.webhook_id, (SELECT count(*) FROM notifications
                          WHERE webhook_id = w.webhook_id AND {WAITS}) AS waiting
    FROM webhooks w WHERE w.delivery_order <> 'Strict'
) AS unordered WHERE waiting > 0
