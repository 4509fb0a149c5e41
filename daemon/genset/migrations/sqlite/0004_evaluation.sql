-- Continuous synthetic testing (issue 6): every scored local answer (a replay of a recorded
-- exchange, or a canary) and the readiness history per use case. Keep in step with
-- ../postgres.

CREATE TABLE evaluations (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms             INTEGER NOT NULL,
    round_id          TEXT    NOT NULL,
    use_case          TEXT    NOT NULL,
    source            TEXT    NOT NULL,   -- replay | canary
    exchange_id       INTEGER,            -- the replayed exchange (replays)
    canary            TEXT,               -- the canary's name (canaries)
    model             TEXT    NOT NULL,   -- the local model that answered
    kind              TEXT    NOT NULL,   -- classification | extraction | generation | custom
    score             REAL    NOT NULL,   -- [0, 1]
    passed            INTEGER NOT NULL,
    comparable        INTEGER NOT NULL,   -- counts towards readiness
    latency_ms        INTEGER NOT NULL,
    ttft_ms           INTEGER,
    completion_tokens INTEGER,
    prompt            TEXT,               -- excerpt (the last user message)
    cloud_answer      TEXT,
    local_answer      TEXT,
    error             TEXT,               -- the local engine's error, if it failed
    detail            TEXT                -- JSON: the scorer's detail, assertion results
);
CREATE INDEX evaluations_use_case ON evaluations (use_case, ts_ms);

CREATE TABLE readiness (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms       INTEGER NOT NULL,
    use_case    TEXT    NOT NULL,
    verdict     TEXT    NOT NULL,         -- ready | marginal | not-ready
    score       REAL    NOT NULL,         -- mean score over the window
    score_lower REAL    NOT NULL,         -- 95% Wilson interval
    score_upper REAL    NOT NULL,
    n           INTEGER NOT NULL,
    reasons     TEXT    NOT NULL,         -- JSON array of sentences
    detail      TEXT    NOT NULL          -- JSON: genset_eval::Readiness, capacity, window
);
CREATE INDEX readiness_use_case ON readiness (use_case, id);
