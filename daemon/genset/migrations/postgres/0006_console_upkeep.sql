-- The admin console, second part: latency histograms in the per-minute rollup (the Overview's
-- and use case pages' latency charts), and the indexes its retention sweeps walk (audit log,
-- sign-in attempts, sessions). Keep in step with ../sqlite.

-- Log-scale histograms (4 buckets per doubling) of the total time and the time to first
-- byte of the final attempts folded into the row, as "bucket:count bucket:count …".
ALTER TABLE console_minutes ADD COLUMN total_hist TEXT NOT NULL DEFAULT '';
ALTER TABLE console_minutes ADD COLUMN ttfb_hist TEXT NOT NULL DEFAULT '';

CREATE INDEX console_audit_ts ON console_audit (ts_ms);
CREATE INDEX console_login_attempts_ts ON console_login_attempts (ts_ms);
CREATE INDEX console_sessions_seen ON console_sessions (last_seen_ms);
