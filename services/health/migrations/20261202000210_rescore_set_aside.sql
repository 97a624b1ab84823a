-- Accounts a rescore could not score (for example unknown to ingestion),
-- set aside with the reason so they never block the queue; a later change
-- notice queues them again.
CREATE TABLE health.rescore_set_aside (
    account_id   text PRIMARY KEY,
    reason       text NOT NULL,
    set_aside_at timestamptz NOT NULL DEFAULT now()
);
