-- A webhook's deliveryOrder (issue 22): Unordered, what every webhook did before, or Strict (one
-- notification in flight, in sequence order; gateway.ordering). Where a notification stands in
-- its Strict webhook's queue: NULL in none (every Unordered webhook's), 1 waiting (its state is
-- 'waiting'), 2 the head, or one in flight since the webhook became Strict (pending or parked;
-- settled, it is set to NULL in the same transaction).
ALTER TABLE webhooks ADD COLUMN delivery_order text NOT NULL DEFAULT 'Unordered';
ALTER TABLE notifications ADD COLUMN queued smallint;
-- A Strict webhook's queue, by place, in sequence order: its lowest waiting notification, its
-- head and those in flight, each an index probe. Only the queues' own statements write `queued`,
-- so a claim stays a HOT update and Unordered webhooks pay nothing for the index.
CREATE INDEX notifications_queue ON notifications (webhook_id, queued, sequence)
    WHERE queued IS NOT NULL;
