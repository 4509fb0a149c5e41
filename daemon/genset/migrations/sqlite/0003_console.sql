-- The admin console (crate genset-admin-ui): users, sessions, audit log, login attempts,
-- bootstrap tokens, and a per-minute rollup of traffic for the dashboards. Keep in step with
-- ../postgres.

CREATE TABLE console_users (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    username            TEXT    NOT NULL UNIQUE,
    password_hash       TEXT    NOT NULL,       -- argon2id PHC string
    role                TEXT    NOT NULL,       -- admin | operator | viewer
    disabled            INTEGER NOT NULL DEFAULT 0,
    created_ms          INTEGER NOT NULL,
    updated_ms          INTEGER NOT NULL,
    password_changed_ms INTEGER NOT NULL,
    last_login_ms       INTEGER
);

-- Only sha256(session token) is stored: a copy of the table does not let anyone in.
CREATE TABLE console_sessions (
    id_hash      TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES console_users (id),
    created_ms   INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    address      TEXT    NOT NULL,
    user_agent   TEXT    NOT NULL,
    revoked_ms   INTEGER
);
CREATE INDEX console_sessions_user ON console_sessions (user_id, created_ms);

CREATE TABLE console_audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms   INTEGER NOT NULL,
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
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms    INTEGER NOT NULL,
    username TEXT    NOT NULL,
    address  TEXT    NOT NULL,
    ok       INTEGER NOT NULL
);
CREATE INDEX console_login_attempts_user ON console_login_attempts (username, address, ok, ts_ms);

-- One-time setup tokens (sha256), valid while no admin exists.
CREATE TABLE console_bootstrap (
    token_hash TEXT    PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);

-- Requests per minute, use case and server, folded in from `exchanges` by id high-water mark
-- (meta key console.rollup_id), so dashboards never scan the exchanges table.
CREATE TABLE console_minutes (
    minute_ms    INTEGER NOT NULL,
    use_case     TEXT    NOT NULL,
    served_by    TEXT    NOT NULL,
    requests     INTEGER NOT NULL,
    errors       INTEGER NOT NULL,
    total_ms_sum REAL    NOT NULL,
    PRIMARY KEY (minute_ms, use_case, served_by)
);

-- The traffic page: newest first by (ts_ms, id), keyset-paginated on that pair, one index per
-- filter so every filter (with or without a time window) is an index range walk.
CREATE INDEX exchanges_uc_ts ON exchanges (use_case, ts_ms, id);
CREATE INDEX exchanges_served_by_ts ON exchanges (served_by, ts_ms, id);
CREATE INDEX exchanges_status_ts ON exchanges (status, ts_ms, id);
-- (Unfiltered: exchanges_ts, which in SQLite already ends with the rowid, i.e. id; the
-- PostgreSQL migration adds (ts_ms, id) for the same walk.)
