-- How long each attempt's receiver took to answer, in milliseconds (NULL: no answer, or an
-- attempt made before this was recorded): on the notification's row for its last attempt,
-- copied to the attempt log with a failed one. The portal draws a webhook's latency from it.
ALTER TABLE notifications ADD COLUMN elapsed_ms double precision;
ALTER TABLE attempts ADD COLUMN elapsed_ms double precision;
