-- The initial schema for PostgreSQL: the same tables and columns as the SQLite set, with native
-- types (uuid, timestamptz, boolean, bigint, text[]). Records are `json`, not `jsonb`, so that a
-- notification carries the records exactly as they were published (key order, number spelling).

CREATE TABLE api_keys (
    api_key_id uuid PRIMARY KEY,
    group_key uuid NOT NULL,
    group_name text NOT NULL,
    key_hash text NOT NULL UNIQUE,
    scopes text[] NOT NULL,
    created timestamptz NOT NULL,
    revoked timestamptz
);
CREATE INDEX api_keys_group_name ON api_keys (group_name, created);

CREATE TABLE webhooks (
    webhook_id uuid PRIMARY KEY,
    group_key uuid NOT NULL,
    name text NOT NULL,
    status_code text NOT NULL,
    status_message text,
    client_secret text NOT NULL,
    request_content_type text NOT NULL,
    callback_http_method text NOT NULL,
    callback_url text NOT NULL,
    expiration_date timestamptz,
    -- bigint like every filterable whole number, so that any 64-bit filter value binds.
    retry_count bigint NOT NULL,
    created timestamptz NOT NULL,
    created_user_id uuid NOT NULL,
    modified timestamptz NOT NULL,
    modified_user_id uuid NOT NULL,
    partition_key text,
    failure_count bigint NOT NULL DEFAULT 0,
    previous_secret text,
    previous_secret_expires timestamptz,
    -- The last notification sequence number handed out for this webhook.
    last_sequence bigint NOT NULL DEFAULT 0
);
CREATE INDEX webhooks_group_created ON webhooks (group_key, created, webhook_id);
CREATE INDEX webhooks_expiring ON webhooks (expiration_date)
    WHERE status_code = 'Active' AND expiration_date IS NOT NULL;

CREATE TABLE webhook_rules (
    webhook_rule_id uuid PRIMARY KEY,
    webhook_id uuid NOT NULL REFERENCES webhooks (webhook_id) ON DELETE CASCADE,
    group_key uuid NOT NULL,
    table_key text NOT NULL,
    event_type text NOT NULL,
    filter text,
    created timestamptz NOT NULL,
    created_user_id uuid NOT NULL,
    modified timestamptz NOT NULL,
    modified_user_id uuid NOT NULL
);
CREATE INDEX webhook_rules_match ON webhook_rules (group_key, table_key, event_type);
CREATE INDEX webhook_rules_webhook ON webhook_rules (webhook_id);

CREATE TABLE events (
    event_id uuid PRIMARY KEY,
    group_key uuid NOT NULL,
    table_key text NOT NULL,
    event_type text NOT NULL,
    records json NOT NULL,
    created timestamptz NOT NULL
);
CREATE INDEX events_created ON events (created);

CREATE TABLE notifications (
    notification_id uuid PRIMARY KEY,
    group_key uuid NOT NULL,
    webhook_id uuid NOT NULL REFERENCES webhooks (webhook_id) ON DELETE CASCADE,
    event_id uuid NOT NULL REFERENCES events (event_id),
    table_key text NOT NULL,
    event_type text NOT NULL,
    -- "Invoice.U": the history's eventType, kept so that filters on it use a plain column.
    event_type_label text NOT NULL,
    records json NOT NULL,
    sequence bigint NOT NULL,
    triggered_at timestamptz NOT NULL,
    state text NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    created timestamptz NOT NULL,
    attempts bigint NOT NULL DEFAULT 0,
    lease_until timestamptz,
    lease_owner text,
    request_sent boolean NOT NULL DEFAULT false,
    is_successful boolean NOT NULL DEFAULT false,
    response_status_code text,
    process_result_message text,
    request_message text,
    response_message text,
    timestamp timestamptz NOT NULL
);
-- Claims read pending rows in (webhook, sequence) order; the partial index stays as small as the
-- queue and hands rows over already sorted, so a claim stops after `limit` of them.
CREATE INDEX notifications_claim ON notifications (webhook_id, sequence) WHERE state = 'pending';
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE state = 'pending';
CREATE INDEX notifications_history ON notifications (webhook_id, timestamp);
CREATE INDEX notifications_event ON notifications (event_id);
CREATE INDEX notifications_succeeded ON notifications (timestamp) WHERE state = 'succeeded';
CREATE INDEX notifications_parked ON notifications (webhook_id) WHERE state = 'parked';
CREATE INDEX notifications_failed ON notifications (timestamp) WHERE state = 'failed';
-- Releasing a worker's leases on shutdown, and the multi-process tests, look rows up by owner.
CREATE INDEX notifications_lease_owner ON notifications (lease_owner) WHERE lease_owner IS NOT NULL;
