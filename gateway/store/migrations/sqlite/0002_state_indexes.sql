-- Partial indexes for the rarer states, so that counting them (delivery_stats, every metrics
-- scrape) and releasing a webhook's parked notifications read only those rows, not the history.
CREATE INDEX notifications_parked ON notifications (webhook_id) WHERE state = 'parked';
CREATE INDEX notifications_failed ON notifications (timestamp) WHERE state = 'failed';
