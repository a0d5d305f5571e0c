-- Reusable authentications (issue 19): credentials that webhooks of the same group reference.
-- sealed_secret holds the password or header value sealed with a key derived from the
-- gateway's secret key (gateway.sealed), never the text itself.
CREATE TABLE authentications (
    authentication_id TEXT PRIMARY KEY,
    group_key TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    username TEXT,
    header_name TEXT,
    sealed_secret TEXT NOT NULL,
    created TEXT NOT NULL,
    created_user_id TEXT NOT NULL,
    modified TEXT NOT NULL,
    modified_user_id TEXT NOT NULL
);
CREATE INDEX authentications_group_created
    ON authentications (group_key, created, authentication_id);

-- An authentication in use cannot be deleted (the API names its webhooks first; the key
-- refuses what slips past, such as a webhook created meanwhile).
ALTER TABLE webhooks ADD COLUMN authentication_id TEXT
    REFERENCES authentications (authentication_id);
CREATE INDEX webhooks_authentication ON webhooks (authentication_id)
    WHERE authentication_id IS NOT NULL;
