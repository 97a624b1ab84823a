-- Accounts as ingestion and health last reported them.
CREATE TABLE renewals.accounts (
    account_id        text PRIMARY KEY,
    name              text NOT NULL DEFAULT '',
    segment           text NOT NULL DEFAULT '',
    owner             text NOT NULL DEFAULT '',
    health_score      double precision,
    health_band       text,
    -- Health's churn model: probability of churn and the model that said so.
    churn_probability double precision,
    churn_model_id    text,
    health_synced_at  timestamptz,
    refreshed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX accounts_segment_idx ON renewals.accounts (segment);

-- Every version of every subscription, as ingestion stored it.
CREATE TABLE renewals.subscription_versions (
    subscription_id text NOT NULL,
    updated_at      timestamptz NOT NULL,
    account_id      text NOT NULL,
    status          smallint NOT NULL CHECK (status BETWEEN 1 AND 4),
    term_start      date NOT NULL,
    term_end        date NOT NULL,
    currency        char(3) NOT NULL,
    arr_minor       bigint NOT NULL CHECK (arr_minor >= 0),
    PRIMARY KEY (subscription_id, updated_at)
);
CREATE INDEX subscription_versions_account_idx ON renewals.subscription_versions (account_id);

-- One renewal opportunity per subscription term: the term's latest state.
CREATE TABLE renewals.opportunities (
    subscription_id text NOT NULL,
    term_end        date NOT NULL,
    account_id      text NOT NULL,
    term_start      date NOT NULL,
    currency        char(3) NOT NULL,
    arr_minor       bigint NOT NULL,
    -- 1 open, 2 renewed (a later term followed), 3 lost (cancelled or expired).
    state           smallint NOT NULL CHECK (state BETWEEN 1 AND 3),
    -- For a renewed term: the ARR of the term that followed.
    next_arr_minor  bigint,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, term_end)
);
CREATE INDEX opportunities_term_end_idx ON renewals.opportunities (term_end, subscription_id);
CREATE INDEX opportunities_account_idx ON renewals.opportunities (account_id);

-- The renewal probability the pipeline showed when the outcome was recorded,
-- for calibrating model probabilities against what happened.
ALTER TABLE renewals.outcomes ADD COLUMN model_probability double precision;

-- Renewal-approaching events sent, once per opportunity and threshold.
CREATE TABLE renewals.reminders (
    subscription_id text NOT NULL,
    term_end        date NOT NULL,
    threshold_days  integer NOT NULL,
    -- False for a threshold passed while a tighter one was due.
    emitted         boolean NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, term_end, threshold_days)
);

-- Forecast jobs for callers that cannot hold a stream, and their rows.
CREATE TABLE renewals.forecast_jobs (
    job_id       uuid PRIMARY KEY,
    request      bytea NOT NULL,
    -- 1 queued, 2 running, 3 succeeded, 4 failed.
    state        smallint NOT NULL,
    total_rows   bigint NOT NULL DEFAULT 0,
    done_rows    bigint NOT NULL DEFAULT 0,
    error        text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE TABLE renewals.forecast_job_rows (
    job_id  uuid NOT NULL REFERENCES renewals.forecast_jobs ON DELETE CASCADE,
    seq     bigint NOT NULL,
    row     bytea NOT NULL,
    PRIMARY KEY (job_id, seq)
);
