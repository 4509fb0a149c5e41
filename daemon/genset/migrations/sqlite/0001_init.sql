-- genset store, SQLite dialect. Keep in step with ../postgres.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE exchanges (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms             INTEGER NOT NULL,
    api               TEXT    NOT NULL,
    endpoint          TEXT    NOT NULL,
    use_case          TEXT    NOT NULL,
    served_by         TEXT    NOT NULL,
    model             TEXT,
    status            INTEGER NOT NULL,
    stream            INTEGER NOT NULL,
    completed         INTEGER NOT NULL,
    error             TEXT,
    client_key_hash   TEXT,
    virtual_key_id    TEXT,
    ttfb_ms           REAL,
    total_ms          REAL    NOT NULL,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    request_body      TEXT,
    response_body     TEXT,
    request_bytes     INTEGER NOT NULL,
    response_bytes    INTEGER NOT NULL,
    truncated         INTEGER NOT NULL,
    prompt_fingerprint TEXT
);
CREATE INDEX exchanges_ts ON exchanges (ts_ms);
CREATE INDEX exchanges_use_case ON exchanges (use_case, id);
CREATE INDEX exchanges_fingerprint ON exchanges (use_case, prompt_fingerprint);

-- Salted hashes of client keys the cloud accepted: how genset recognises legitimate clients.
CREATE TABLE client_keys (
    key_hash      TEXT PRIMARY KEY,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    accepted      INTEGER NOT NULL
);

CREATE TABLE virtual_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    use_case   TEXT,
    upstream   TEXT,
    key_hash   TEXT NOT NULL UNIQUE,
    last4      TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);

-- The timeline: every change of mode, breaker state or verdict, with its cause.
CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms   INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    cause   TEXT    NOT NULL,
    detail  TEXT
);
CREATE INDEX events_ts ON events (ts_ms);
