-- Portal sessions ended before their time (gateway.portal.revocation): one signed out (subject:
-- its link's id), or every session and unopened link of a group (subject: the group key). A
-- session or link of the subject issued before `revoked_before` is refused. A row is kept
-- until no session it could end is still open (`expires`), then housekeeping deletes it.
CREATE TABLE portal_revocations (
    subject TEXT PRIMARY KEY,
    revoked_before TEXT NOT NULL,
    expires TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX portal_revocations_expires ON portal_revocations (expires);
