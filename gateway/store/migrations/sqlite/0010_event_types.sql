-- The event-type catalogue (gateway.catalogue): one row per (group, table, event type), whose
-- uniqueness the index keeps; `record_schema` is the JSON Schema of one record, as JSON text.
CREATE TABLE event_types (
    event_type_id TEXT PRIMARY KEY,
    group_key TEXT NOT NULL,
    table_key TEXT NOT NULL,
    event_type TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    category TEXT,
    record_schema TEXT,
    deprecated INTEGER NOT NULL,
    created TEXT NOT NULL,
    created_user_id TEXT NOT NULL,
    modified TEXT NOT NULL,
    modified_user_id TEXT NOT NULL
);
CREATE UNIQUE INDEX event_types_declared ON event_types (group_key, table_key, event_type);
CREATE INDEX event_types_group_created ON event_types (group_key, created, event_type_id);
