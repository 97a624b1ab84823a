-- Trained churn models with their training settings, figures and report.
CREATE TABLE health.churn_models (
    model_id     uuid PRIMARY KEY,
    status       smallint NOT NULL,
    horizon_days integer NOT NULL,
    l2           double precision NOT NULL,
    model        jsonb,
    report       bytea,
    error        text NOT NULL DEFAULT '',
    create_time  timestamptz NOT NULL DEFAULT now(),
    finish_time  timestamptz
);
CREATE INDEX churn_models_ready_idx ON health.churn_models (create_time DESC) WHERE status = 2;
