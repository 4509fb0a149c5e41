-- The request_id index took a random B-tree insert on every recorded exchange (the ids are
-- random) for the benefit of the few requests that took more than one attempt. Only those
-- rows are indexed now: look a request's attempts up with
--   WHERE request_id = ? AND (final_attempt = 0 OR attempt > 0)
-- (a request answered at its first attempt has no other rows).
DROP INDEX IF EXISTS exchanges_request;
CREATE INDEX exchanges_request_multi ON exchanges (request_id) WHERE final_attempt = 0 OR attempt > 0;

-- Every per-use-case read orders by (ts_ms, id) now (the console's traffic list, the JSON API's
-- /api/v1/traffic, the evaluator's replay sampling) and uses exchanges_uc_ts; the older
-- (use_case, id) index only cost an insert per exchange.
DROP INDEX IF EXISTS exchanges_use_case;
