-- Prospect-fit models share the churn models' table and life cycle; the
-- kind tells them apart (1 churn, 2 prospect fit; horizon_days holds
-- prospect fit's look days).
ALTER TABLE health.churn_models ADD COLUMN kind smallint NOT NULL DEFAULT 1 CHECK (kind IN (1, 2));
DROP INDEX health.churn_models_ready_idx;
CREATE INDEX churn_models_ready_idx ON health.churn_models (kind, create_time DESC) WHERE status = 2;
