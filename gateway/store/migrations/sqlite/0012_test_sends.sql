-- Test sends (POST /api/v1/Webhooks/{webhookId}/test) are kept in their webhook's history,
-- marked: recorded finished, never claimed, retried by hand or counted against the lifecycle.
ALTER TABLE notifications ADD COLUMN is_test INTEGER NOT NULL DEFAULT 0;
