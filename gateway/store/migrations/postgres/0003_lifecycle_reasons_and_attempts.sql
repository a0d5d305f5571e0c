-- Why a webhook is not Active, beside its status (lifecycle.StatusReason): renewing the
-- expirationDate of an expired webhook reactivates it, while a paused one stays paused.
ALTER TABLE webhooks ADD COLUMN status_reason text;
UPDATE webhooks SET status_reason = CASE
    WHEN status_code = 'Errored' THEN 'failing'
    WHEN status_code = 'Inactive' AND status_message LIKE 'expired%' THEN 'expired'
    WHEN status_code = 'Inactive' AND status_message LIKE '%410 Gone%' THEN 'unsubscribed'
    WHEN status_code = 'Inactive' THEN 'paused'
END;
-- Expiry has one message now, the one readers were shown: "expired on <date>Z".
UPDATE webhooks
SET status_message = 'expired on '
    || to_char(expiration_date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') || 'Z'
WHERE status_reason = 'expired' AND expiration_date IS NOT NULL;

-- Every failed attempt of a notification, kept when a later attempt replaces it on the
-- notification's row (a success stays on the row only): the history keeps why each one failed.
CREATE TABLE attempts (
    notification_id uuid NOT NULL REFERENCES notifications (notification_id) ON DELETE CASCADE,
    attempt bigint NOT NULL,
    timestamp timestamptz NOT NULL,
    response_status_code text,
    process_result_message text,
    request_message text,
    response_message text,
    PRIMARY KEY (notification_id, attempt)
);
