-- The durable input queue (store/inputs.rs): alerts and operator changes,
-- written before their sender gets a 2xx, applied by the engine's owner in id
-- order. Appends for one account hold a transaction advisory lock, so ids
-- commit in increasing order and a reader's cursor never skips one.
-- JSON, not JSONB, for the same reason as engine_state.snapshot.
CREATE TABLE inputs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account     TEXT NOT NULL,
    accepted_at BIGINT NOT NULL, -- wall-clock milliseconds since the epoch
    input       JSON NOT NULL
);
CREATE INDEX inputs_account_id ON inputs (account, id);
