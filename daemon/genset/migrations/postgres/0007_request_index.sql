-- The request_id index took a random B-tree insert on every recorded exchange (the ids are
-- random) for the benefit of the few requests that took more than one attempt. Only those
-- rows are indexed now: look a request's attempts up with
--   WHERE request_id = ? AND (NOT final_attempt OR attempt > 0)
-- (a request answered at its first attempt has no other rows).
DROP INDEX IF EXISTS exchanges_request;
CREATE INDEX exchanges_request_multi ON exchanges (request_id) WHERE NOT final_attempt OR attempt > 0;
