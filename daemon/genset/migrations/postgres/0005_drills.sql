-- Failover drills (issue 8): live drills (real traffic served locally for some use cases until
-- a deadline) and replay drills (recorded traffic replayed against the local engine). The
-- deadline is stored so a drill never outlives it across a restart. Keep in step with
-- ../sqlite.
CREATE TABLE drills (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,   -- live | replay
    state       TEXT    NOT NULL,   -- running | finished | aborted
    verdict     TEXT,               -- passed | passed-with-findings | failed (set when it ends)
    use_cases   TEXT    NOT NULL,   -- JSON array of names
    started_ms  BIGINT  NOT NULL,
    deadline_ms BIGINT  NOT NULL,
    ended_ms    BIGINT,
    actor       TEXT    NOT NULL,   -- who started it (operator, or schedule:<name>)
    spec        TEXT    NOT NULL,   -- JSON: what was asked (duration, period, speed)
    result      TEXT                -- JSON: drill::DrillResult
);
CREATE INDEX drills_started ON drills (started_ms);
CREATE INDEX drills_state ON drills (state);
