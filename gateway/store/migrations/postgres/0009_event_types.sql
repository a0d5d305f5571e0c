-- The event-type catalogue (gateway.catalogue): one row per (group, table, event type), whose
-- uniqueness the index keeps; `record_schema` is the JSON Schema of one record, kept as `json`
-- (the text as it was sent, like the records).
CREATE TABLE event_types (
    event_type_id uuid PRIMARY KEY,
    group_key uuid NOT NULL,
    table_key text NOT NULL,
    event_type text NOT NULL,
    name text NOT NULL,
    description text,
    category text,
    record_schema json,
    deprecated boolean NOT NULL,
    created timestamptz NOT NULL,
    created_user_id uuid NOT NULL,
    modified timestamptz NOT NULL,
    modified_user_id uuid NOT NULL
);
CREATE UNIQUE INDEX event_types_declared ON event_types (group_key, table_key, event_type);
CREATE INDEX event_types_group_created ON event_types (group_key, created, event_type_id);
