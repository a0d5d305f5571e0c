-- A webhook's successPolicy and retryPolicy (issue 19); the defaults are what every webhook did
-- before: any 2xx is a delivery, and every failure is retried.
ALTER TABLE webhooks ADD COLUMN success_policy text NOT NULL DEFAULT 'Any2xx';
ALTER TABLE webhooks ADD COLUMN retry_policy text NOT NULL DEFAULT 'AllFailures';
