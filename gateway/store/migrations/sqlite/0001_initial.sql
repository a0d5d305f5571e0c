-- The initial schema. Datetimes are ISO-8601 UTC text of one fixed width
-- ("2024-01-02T03:04:05.000006+00:00") so that text order is time order; UUIDs are lowercase
-- text; booleans 0/1; records are JSON text.

CREATE TABLE api_keys (
    api_key_id TEXT PRIMARY KEY,
    group_key TEXT NOT NULL,
    group_name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created TEXT NOT NULL,
    revoked TEXT
);
CREATE INDEX api_keys_group_name ON api_keys (group_name);

CREATE TABLE webhooks (
    webhook_id TEXT PRIMARY KEY,
    group_key TEXT NOT NULL,
    name TEXT NOT NULL,
    status_code TEXT NOT NULL,
    status_message TEXT,
    client_secret TEXT NOT NULL,
    request_content_type TEXT NOT NULL,
    callback_http_method TEXT NOT NULL,
    callback_url TEXT NOT NULL,
    expiration_date TEXT,
    retry_count INTEGER NOT NULL,
    created TEXT NOT NULL,
    created_user_id TEXT NOT NULL,
    modified TEXT NOT NULL,
    modified_user_id TEXT NOT NULL,
    partition_key TEXT,
    failure_count INTEGER NOT NULL DEFAULT 0,
    previous_secret TEXT,
    previous_secret_expires TEXT,
    -- The last notification sequence number handed out for this webhook.
    last_sequence INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX webhooks_group_created ON webhooks (group_key, created, webhook_id);
CREATE INDEX webhooks_expiring ON webhooks (expiration_date)
    WHERE status_code = 'Active' AND expiration_date IS NOT NULL;

CREATE TABLE webhook_rules (
    webhook_rule_id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks (webhook_id) ON DELETE CASCADE,
    group_key TEXT NOT NULL,
    table_key TEXT NOT NULL,
    event_type TEXT NOT NULL,
    filter TEXT,
    created TEXT NOT NULL,
    created_user_id TEXT NOT NULL,
    modified TEXT NOT NULL,
    modified_user_id TEXT NOT NULL
);
CREATE INDEX webhook_rules_match ON webhook_rules (group_key, table_key, event_type);
CREATE INDEX webhook_rules_webhook ON webhook_rules (webhook_id);

CREATE TABLE events (
    event_id TEXT PRIMARY KEY,
    group_key TEXT NOT NULL,
    table_key TEXT NOT NULL,
    event_type TEXT NOT NULL,
    records TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX events_created ON events (created);

CREATE TABLE notifications (
    notification_id TEXT PRIMARY KEY,
    group_key TEXT NOT NULL,
    webhook_id TEXT NOT NULL REFERENCES webhooks (webhook_id) ON DELETE CASCADE,
    event_id TEXT NOT NULL REFERENCES events (event_id),
    table_key TEXT NOT NULL,
    event_type TEXT NOT NULL,
    -- "Invoice.U": the history's eventType, kept so that filters on it use a plain column.
    event_type_label TEXT NOT NULL,
    records TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    triggered_at TEXT NOT NULL,
    state TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    created TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_until TEXT,
    lease_owner TEXT,
    request_sent INTEGER NOT NULL DEFAULT 0,
    is_successful INTEGER NOT NULL DEFAULT 0,
    response_status_code TEXT,
    process_result_message TEXT,
    request_message TEXT,
    response_message TEXT,
    timestamp TEXT NOT NULL
);
-- Claims read only pending rows; the partial index stays as small as the queue.
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE state = 'pending';
CREATE INDEX notifications_history ON notifications (webhook_id, timestamp);
CREATE INDEX notifications_event ON notifications (event_id);
-- Rows enter this index only when they succeed, so inserts do not pay for it.
CREATE INDEX notifications_succeeded ON notifications (timestamp) WHERE state = 'succeeded';
