-- Reports read the readiness computations of their period (plus the latest before it, by
-- use case): a range on ts_ms, instead of every computation ever stored (about 52k rows a
-- year per use case).
CREATE INDEX readiness_ts ON readiness (ts_ms);
