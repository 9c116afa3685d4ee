-- Key store: organisations, API keys (only SHA-256 digests), and the per-request usage log.
CREATE TABLE organisations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES organisations(id),
    name          TEXT,
    digest        BLOB NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    rpm           INTEGER NOT NULL,
    tpm           INTEGER NOT NULL,
    tpd           INTEGER NOT NULL,
    concurrency   INTEGER NOT NULL,
    services      TEXT NOT NULL,
    voices        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    revoked_at    INTEGER,
    last_used_at  INTEGER,
    replaced_by   TEXT REFERENCES api_keys(id)
);
CREATE INDEX api_keys_org ON api_keys(org_id);

CREATE TABLE usage_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    key_id      TEXT,
    org         TEXT,
    service     TEXT,
    route       TEXT NOT NULL,
    tokens      INTEGER NOT NULL,
    status      INTEGER NOT NULL,
    latency_ms  INTEGER NOT NULL,
    request_id  TEXT NOT NULL
);
CREATE INDEX usage_log_key_at ON usage_log(key_id, at);
