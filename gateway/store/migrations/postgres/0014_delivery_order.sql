-- A webhook's deliveryOrder (issue 22): Unordered, what every webhook did before, or Strict (one
-- notification in flight, in sequence order; gateway.ordering). A Strict webhook's queue is its
-- notifications waiting behind the head ('waiting', never claimed) and the head (pending or
-- parked, marked in_order when it became the head, or when its webhook became Strict). Rows
-- of Unordered webhooks keep in_order false and stay out of the index: they pay nothing for it.
ALTER TABLE webhooks ADD COLUMN delivery_order text NOT NULL DEFAULT 'Unordered';
ALTER TABLE notifications ADD COLUMN in_order boolean NOT NULL DEFAULT false;
-- A Strict webhook's queue by state, in sequence order: its lowest waiting row, its head, its
-- rows in flight, each an index probe (never a read past its waiting rows).
CREATE INDEX notifications_queue ON notifications (webhook_id, state, sequence)
    WHERE state = 'waiting' OR (in_order AND state IN ('pending', 'parked'));
