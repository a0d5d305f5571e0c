-- Reusable authentications (issue 19): credentials that webhooks of the same group reference.
-- sealed_secret holds the password or header value sealed with a key derived from the
-- gateway's secret key (gateway.sealed), never the text itself.
CREATE TABLE authentications (
    authentication_id uuid PRIMARY KEY,
    group_key uuid NOT NULL,
    name text NOT NULL,
    kind text NOT NULL,
    username text,
    header_name text,
    sealed_secret text NOT NULL,
    created timestamptz NOT NULL,
    created_user_id uuid NOT NULL,
    modified timestamptz NOT NULL,
    modified_user_id uuid NOT NULL
);
CREATE INDEX authentications_group_created
    ON authentications (group_key, created, authentication_id);

-- An authentication in use cannot be deleted (the API names its webhooks first; the key
-- refuses what slips past, such as a webhook created meanwhile).
ALTER TABLE webhooks ADD COLUMN authentication_id uuid
    REFERENCES authentications (authentication_id);
CREATE INDEX webhooks_authentication ON webhooks (authentication_id)
    WHERE authentication_id IS NOT NULL;
