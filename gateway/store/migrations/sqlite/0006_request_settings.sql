-- A webhook's request settings (gateway.models.Webhook): its owner's headers, the config echoed
-- in every notification body, and the failure window, each JSON text; and when its failure
-- window starts counting (its last reactivation).
ALTER TABLE webhooks ADD COLUMN headers TEXT NOT NULL DEFAULT '[]';
ALTER TABLE webhooks ADD COLUMN config TEXT;
ALTER TABLE webhooks ADD COLUMN failure_window TEXT;
ALTER TABLE webhooks ADD COLUMN window_start TEXT;

-- The failure window counts a webhook's failed attempts within the last seconds: the attempt
-- log keeps each one's webhook, and an index finds the recent ones without the notifications.
ALTER TABLE attempts ADD COLUMN webhook_id TEXT;
UPDATE attempts SET webhook_id = (
    SELECT n.webhook_id FROM notifications n WHERE n.notification_id = attempts.notification_id
);
CREATE INDEX attempts_window ON attempts (webhook_id, timestamp);
