-- Continuous synthetic testing (issue 6): every scored local answer (a replay of a recorded
-- exchange, or a canary) and the readiness history per use case. Keep in step with
-- ../sqlite.

CREATE TABLE evaluations (
    id                BIGSERIAL PRIMARY KEY,
    ts_ms             BIGINT  NOT NULL,
    round_id          TEXT    NOT NULL,
    use_case          TEXT    NOT NULL,
    source            TEXT    NOT NULL,   -- replay | canary
    exchange_id       BIGINT,             -- the replayed exchange (replays)
    canary            TEXT,               -- the canary's name (canaries)
    model             TEXT    NOT NULL,   -- the local model that answered
    kind              TEXT    NOT NULL,   -- classification | extraction | generation | custom
    score             DOUBLE PRECISION NOT NULL,   -- [0, 1]
    passed            BOOLEAN NOT NULL,
    comparable        BOOLEAN NOT NULL,   -- counts towards readiness
    latency_ms        BIGINT  NOT NULL,
    ttft_ms           BIGINT,
    completion_tokens BIGINT,
    prompt            TEXT,               -- excerpt (the last user message)
    cloud_answer      TEXT,
    local_answer      TEXT,
    error             TEXT,               -- the local engine's error, if it failed
    detail            TEXT                -- JSON: the scorer's detail, assertion results
);
CREATE INDEX evaluations_use_case ON evaluations (use_case, ts_ms);

CREATE TABLE readiness (
    id          BIGSERIAL PRIMARY KEY,
    ts_ms       BIGINT  NOT NULL,
    use_case    TEXT    NOT NULL,
    verdict     TEXT    NOT NULL,         -- ready | marginal | not-ready
    score       DOUBLE PRECISION NOT NULL,  -- mean score over the window
    score_lower DOUBLE PRECISION NOT NULL,  -- 95% Wilson interval
    score_upper DOUBLE PRECISION NOT NULL,
    n           BIGINT  NOT NULL,
    reasons     TEXT    NOT NULL,         -- JSON array of sentences
    detail      TEXT    NOT NULL          -- JSON: genset_eval::Readiness, capacity, window
);
CREATE INDEX readiness_use_case ON readiness (use_case, id);
