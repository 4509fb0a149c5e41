-- Failover: breaker state that survives a restart, and the attempts behind each client request.
CREATE TABLE upstream_state (
    upstream   TEXT PRIMARY KEY,
    state      TEXT NOT NULL,      -- JSON of control::breaker::Persisted
    updated_ms BIGINT NOT NULL
);

-- One client request may take several upstream attempts: they share request_id; only the row
-- with final_attempt = 1 is what the client got (failed attempts are never completions).
ALTER TABLE exchanges ADD COLUMN request_id TEXT;
ALTER TABLE exchanges ADD COLUMN attempt BIGINT NOT NULL DEFAULT 0;
ALTER TABLE exchanges ADD COLUMN final_attempt BOOLEAN NOT NULL DEFAULT TRUE;
-- none | fallback | continuation | local-policy
ALTER TABLE exchanges ADD COLUMN rescue TEXT;
-- cloud | failover | forced-local | forced-cloud: the controller's mode when the request arrived
ALTER TABLE exchanges ADD COLUMN mode TEXT;
CREATE INDEX exchanges_request ON exchanges (request_id);
CREATE INDEX events_kind ON events (kind, ts_ms);
