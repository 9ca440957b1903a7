-- Leadership (src/cluster/): one lease per account, and the Talkdesk writes
-- made under each epoch. Expiry uses the database clock (now()), so the
-- replicas' clocks do not matter.
CREATE TABLE leases (
    account     TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,        -- cluster.instance_id of the holder
    token       TEXT NOT NULL,        -- one process start's claim
    epoch       BIGINT NOT NULL,      -- +1 each time the lease changes hands
    acquired_at TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);

-- Every fenced Talkdesk write, recorded by the statement that allowed it.
CREATE TABLE writes (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account TEXT NOT NULL,
    epoch   BIGINT NOT NULL,
    holder  TEXT NOT NULL,
    op      TEXT NOT NULL,
    at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX writes_account_epoch ON writes (account, epoch);
