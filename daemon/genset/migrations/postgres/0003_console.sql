-- The admin console (crate genset-admin-ui): users, sessions, audit log, login attempts,
-- bootstrap tokens, and a per-minute rollup of traffic for the dashboards. Keep in step with
-- ../sqlite.

CREATE TABLE console_users (
    id                  BIGSERIAL PRIMARY KEY,
    username            TEXT    NOT NULL UNIQUE,
    password_hash       TEXT    NOT NULL,       -- argon2id PHC string
    role                TEXT    NOT NULL,       -- admin | operator | viewer
    disabled            BOOLEAN NOT NULL DEFAULT FALSE,
    created_ms          BIGINT  NOT NULL,
    updated_ms          BIGINT  NOT NULL,
    password_changed_ms BIGINT  NOT NULL,
    last_login_ms       BIGINT
);

-- Only sha256(session token) is stored: a copy of the table does not let anyone in.
CREATE TABLE console_sessions (
    id_hash      TEXT    PRIMARY KEY,
    user_id      BIGINT  NOT NULL REFERENCES console_users (id),
    created_ms   BIGINT  NOT NULL,
    last_seen_ms BIGINT  NOT NULL,
    address      TEXT    NOT NULL,
    user_agent   TEXT    NOT NULL,
    revoked_ms   BIGINT
);
CREATE INDEX console_sessions_user ON console_sessions (user_id, created_ms);

CREATE TABLE console_audit (
    id      BIGSERIAL PRIMARY KEY,
    ts_ms   BIGINT  NOT NULL,
    actor   TEXT    NOT NULL,   -- username, or '-' before login
    action  TEXT    NOT NULL,   -- login, login.failed, access.denied, mode.flip, user.create, ...
    target  TEXT    NOT NULL,
    outcome TEXT    NOT NULL,   -- ok | denied | failed
    address TEXT    NOT NULL,
    detail  TEXT
);
CREATE INDEX console_audit_action ON console_audit (action, id);
CREATE INDEX console_audit_actor ON console_audit (actor, id);

CREATE TABLE console_login_attempts (
    id       BIGSERIAL PRIMARY KEY,
    ts_ms    BIGINT  NOT NULL,
    username TEXT    NOT NULL,
    address  TEXT    NOT NULL,
    ok       BOOLEAN NOT NULL
);
CREATE INDEX console_login_attempts_user ON console_login_attempts (username, address, ok, ts_ms);

-- One-time setup tokens (sha256), valid while no admin exists.
CREATE TABLE console_bootstrap (
    token_hash TEXT    PRIMARY KEY,
    created_ms BIGINT  NOT NULL,
    expires_ms BIGINT  NOT NULL
);

-- Requests per minute, use case and server, folded in from `exchanges` by id high-water mark
-- (meta key console.rollup_id), so dashboards never scan the exchanges table.
CREATE TABLE console_minutes (
    minute_ms    BIGINT  NOT NULL,
    use_case     TEXT    NOT NULL,
    served_by    TEXT    NOT NULL,
    requests     BIGINT  NOT NULL,
    errors       BIGINT  NOT NULL,
    total_ms_sum DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (minute_ms, use_case, served_by)
);

-- The traffic page: newest first by (ts_ms, id), keyset-paginated on that pair, one index per
-- filter so every filter (with or without a time window) is an index range walk.
CREATE INDEX exchanges_uc_ts ON exchanges (use_case, ts_ms, id);
CREATE INDEX exchanges_served_by_ts ON exchanges (served_by, ts_ms, id);
CREATE INDEX exchanges_status_ts ON exchanges (status, ts_ms, id);
-- SQLite's exchanges_ts already ends with the rowid (= id); PostgreSQL needs it spelled out.
CREATE INDEX exchanges_ts_id ON exchanges (ts_ms, id);
