-- A claim writes only a notification's lease (lease_owner, lease_until). PostgreSQL can then
-- rewrite the row in place, a heap-only (HOT) update that adds no index entry, when no index
-- covers a column it changes and the row's page has room for the new version. Before this,
-- neither held: the index by lease owner made every claim add an entry to each of the table's
-- indexes, and the claim was the store's dearest statement (issue 21).
-- - The index by lease owner goes. What read it (a worker giving its leases back on shutdown)
--   reads the pending rows instead, as SQLite always has; the claim, the settlement and the
--   lease checks find rows by id.
-- - Inserts fill pages to half, so that a row's page has room for its claimed version. Measured
--   in S1 with one webhook (the server's counts read by an ad hoc poller): at 65-80%, only
--   43-55% of the claims stayed on their page; at 50%, 92% did. Dead versions are pruned from a
--   page as it fills, so the room comes back.
DROP INDEX notifications_lease_owner;
ALTER TABLE notifications SET (fillfactor = 50);
