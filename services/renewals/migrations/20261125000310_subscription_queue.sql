-- Subscriptions changed in ingestion that the pipeline has to refresh.
CREATE TABLE renewals.subscription_queue (
    subscription_id text PRIMARY KEY,
    first_marked_at timestamptz NOT NULL DEFAULT now(),
    last_marked_at  timestamptz NOT NULL DEFAULT now()
);
