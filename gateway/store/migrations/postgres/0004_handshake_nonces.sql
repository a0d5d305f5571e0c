-- The nonces of handshake codes already accepted, so that every process sharing the database
-- refuses a code used once (a code passes only once). A row is kept until its code could not
-- pass anyway (`expires`), then housekeeping deletes it.
CREATE TABLE handshake_nonces (
    nonce text PRIMARY KEY,
    expires timestamptz NOT NULL
);
CREATE INDEX handshake_nonces_expires ON handshake_nonces (expires);
