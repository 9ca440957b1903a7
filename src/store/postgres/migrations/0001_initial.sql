-- The first schema. Every table carries the Talkdesk account its rows belong
-- to: a store handle is opened for one account (today always 'default'), so
-- several accounts can later share one database without seeing each other.

-- The engine snapshot, an opaque document owned by the engine. JSON, not
-- JSONB: stored as written (JSONB refuses the \u0000 escape and would turn
-- an odd operator message into a snapshot that can never be saved).
CREATE TABLE engine_state (
    account    TEXT PRIMARY KEY,
    snapshot   JSON NOT NULL,
    updated_at BIGINT NOT NULL -- wall-clock milliseconds since the epoch
);

-- The audit log; `id` is the paging cursor of /v1/events.
CREATE TABLE audit (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account TEXT NOT NULL,
    at      BIGINT NOT NULL, -- wall-clock milliseconds since the epoch
    kind    TEXT NOT NULL,
    message TEXT NOT NULL,
    data    JSONB
);
CREATE INDEX audit_account_id ON audit (account, id);
CREATE INDEX audit_account_kind ON audit (account, kind, id);
