-- CSMs' own assessments of accounts; the latest unexpired one is a signal.
CREATE TABLE health.assessments (
    assessment_id uuid PRIMARY KEY,
    account_id    text NOT NULL,
    score         double precision NOT NULL CHECK (score BETWEEN 0 AND 100),
    note          text NOT NULL DEFAULT '',
    assessed_by   text NOT NULL DEFAULT '',
    assessed_at   timestamptz NOT NULL DEFAULT now(),
    expires_on    date NOT NULL
);
CREATE INDEX assessments_account_idx ON health.assessments (account_id, assessed_at DESC);
