-- Lifecycle notices and re-verification (gateway.notices, Management.reverify_due): the expiry
-- date an `expiring` notice went out for (once per date), when the callback last passed a
-- handshake, and when the re-verification sweep runs it next (NULL: to be scheduled).
ALTER TABLE webhooks ADD COLUMN expiry_warned_for TEXT;
ALTER TABLE webhooks ADD COLUMN verified_at TEXT;
ALTER TABLE webhooks ADD COLUMN reverify_due TEXT;
CREATE INDEX webhooks_reverify_due ON webhooks (reverify_due) WHERE status_code = 'Active';
