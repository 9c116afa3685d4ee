-- Refused unauthenticated attempts, aggregated: one row per source address and period
-- instead of one per request, so a client without a key cannot grow the database quickly.
CREATE TABLE IF NOT EXISTS auth_refusals (
    at        INTEGER NOT NULL,
    source    TEXT    NOT NULL,
    attempts  INTEGER NOT NULL CHECK (attempts > 0)
);
CREATE INDEX IF NOT EXISTS auth_refusals_at ON auth_refusals(at);
