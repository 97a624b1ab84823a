-- Maturity models: versions of a named model, its levels and behaviours as
-- JSON (the domain form), like scorecards.
CREATE TABLE health.maturity_models (
    name        text NOT NULL,
    version     integer NOT NULL,
    definition  jsonb NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

-- Each account's level on the latest version of each model, as last
-- scored: since when it has held it, and whether playbooks were told it is
-- stuck there.
CREATE TABLE health.maturity_levels (
    model_name     text NOT NULL,
    account_id     text NOT NULL,
    model_version  integer NOT NULL,
    level          smallint NOT NULL,
    since          date NOT NULL,
    stuck_notified boolean NOT NULL DEFAULT false,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_name, account_id)
);
CREATE INDEX maturity_levels_account_idx ON health.maturity_levels (account_id);
