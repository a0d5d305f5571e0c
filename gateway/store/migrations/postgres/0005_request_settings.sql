-- A webhook's request settings (gateway.models.Webhook): its owner's headers, the config echoed
-- in every notification body, and the failure window, each `json` (kept as written); and when
-- its failure window starts counting (its last reactivation).
ALTER TABLE webhooks ADD COLUMN headers json NOT NULL DEFAULT '[]';
ALTER TABLE webhooks ADD COLUMN config json;
ALTER TABLE webhooks ADD COLUMN failure_window json;
ALTER TABLE webhooks ADD COLUMN window_start timestamptz;

-- The failure window counts a webhook's failed attempts within the last seconds: the attempt
-- log keeps each one's webhook, and an index finds the recent ones without the notifications.
ALTER TABLE attempts ADD COLUMN webhook_id uuid;
UPDATE attempts a SET webhook_id = n.webhook_id
FROM notifications n WHERE n.notification_id = a.notification_id;
CREATE INDEX attempts_window ON attempts (webhook_id, timestamp);
