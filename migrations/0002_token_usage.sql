-- Tokens charged per key in 15-minute slots, so the rolling-day (TPD) limit survives a
-- restart. Rows older than a day and a slot are deleted as usage is written.
CREATE TABLE IF NOT EXISTS token_usage (
    key_id        TEXT    NOT NULL,
    slot_start_ms INTEGER NOT NULL,
    tokens        INTEGER NOT NULL CHECK (tokens >= 0),
    PRIMARY KEY (key_id, slot_start_ms)
) WITHOUT ROWID;
