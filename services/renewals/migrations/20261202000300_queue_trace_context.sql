-- The trace of the change that marked a subscription, so that refreshing
-- it later (the calls to ingestion and health) continues that trace.
ALTER TABLE renewals.subscription_queue ADD COLUMN trace_context jsonb NOT NULL DEFAULT '{}';
