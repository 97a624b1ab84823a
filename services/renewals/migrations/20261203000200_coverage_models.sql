-- Versions of the coverage model: service tiers with their rules and the
-- CSM hours each tier's accounts need. The latest version is in force.
CREATE TABLE renewals.coverage_models (
    version             integer PRIMARY KEY CHECK (version > 0),
    currency            text NOT NULL,
    csm_hours_per_month double precision NOT NULL CHECK (csm_hours_per_month > 0),
    -- The tiers in rule order: [{id, name, min_arr_minor, segments, hours_per_account_month}].
    tiers               jsonb NOT NULL,
    create_time         timestamptz NOT NULL DEFAULT now()
);
