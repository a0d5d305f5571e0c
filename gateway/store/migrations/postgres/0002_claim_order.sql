-- Claims take the longest-due notifications first (ORDER BY next_attempt_at, webhook_id,
-- sequence), so one index in that order serves them; the index by webhook it replaces was kept
-- up to date on every insert for an order no query asks for any more.
DROP INDEX notifications_claim;
DROP INDEX notifications_due;
CREATE INDEX notifications_due
    ON notifications (next_attempt_at, webhook_id, sequence) WHERE state = 'pending';
