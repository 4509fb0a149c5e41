-- genset store, PostgreSQL dialect. Keep in step with ../sqlite.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE exchanges (
    id                BIGSERIAL PRIMARY KEY,
    ts_ms             BIGINT  NOT NULL,
    api               TEXT    NOT NULL,
    endpoint          TEXT    NOT NULL,
    use_case          TEXT    NOT NULL,
    served_by         TEXT    NOT NULL,
    model             TEXT,
    status            BIGINT  NOT NULL,
    stream            BOOLEAN NOT NULL,
    completed         BOOLEAN NOT NULL,
    error             TEXT,
    client_key_hash   TEXT,
    virtual_key_id    TEXT,
    ttfb_ms           DOUBLE PRECISION,
    total_ms          DOUBLE PRECISION    NOT NULL,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    request_body      TEXT,
    response_body     TEXT,
    request_bytes     BIGINT  NOT NULL,
    response_bytes    BIGINT  NOT NULL,
    truncated         BOOLEAN NOT NULL,
    prompt_fingerprint TEXT
);
CREATE INDEX exchanges_ts ON exchanges (ts_ms);
CREATE INDEX exchanges_use_case ON exchanges (use_case, id);
CREATE INDEX exchanges_fingerprint ON exchanges (use_case, prompt_fingerprint);

-- Salted hashes of client keys the cloud accepted: how genset recognises legitimate clients.
CREATE TABLE client_keys (
    key_hash      TEXT PRIMARY KEY,
    first_seen_ms BIGINT  NOT NULL,
    last_seen_ms  BIGINT  NOT NULL,
    accepted      BIGINT  NOT NULL
);

CREATE TABLE virtual_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    use_case   TEXT,
    upstream   TEXT,
    key_hash   TEXT NOT NULL UNIQUE,
    last4      TEXT NOT NULL,
    created_ms BIGINT  NOT NULL,
    revoked_ms BIGINT
);

-- The timeline: every change of mode, breaker state or verdict, with its cause.
CREATE TABLE events (
    id      BIGSERIAL PRIMARY KEY,
    ts_ms   BIGINT  NOT NULL,
    kind    TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    cause   TEXT    NOT NULL,
    detail  TEXT
);
CREATE INDEX events_ts ON events (ts_ms);
