-- Sharded leadership (src/cluster/shard.rs): accounts are spread over the
-- live replicas. A replica claims only the accounts assigned to it; a claim
-- that fails records who asked (wanted_by, wanted_at), and the holder hands
-- the account over once its own view of the assignment agrees. Taking the
-- lease clears the request.
ALTER TABLE leases ADD COLUMN wanted_by TEXT, ADD COLUMN wanted_at TIMESTAMPTZ;

-- Membership: one row per replica, heartbeated; live means not expired by
-- the database clock. instance_id is unique per replica; token is one
-- process start (a late leave of an earlier process removes nothing).
CREATE TABLE replicas (
    instance_id TEXT PRIMARY KEY,
    token       TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
