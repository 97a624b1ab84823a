-- Accounts whose data changed since they were last scored. One row per
-- account: repeated notices widen the window instead of piling up.
CREATE TABLE health.rescore_queue (
    account_id          text PRIMARY KEY,
    first_marked_at     timestamptz NOT NULL DEFAULT now(),
    last_marked_at      timestamptz NOT NULL DEFAULT now(),
    -- Earliest event time among the changes: history from here on is stale.
    earliest_event_time timestamptz
);
