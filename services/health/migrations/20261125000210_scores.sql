-- Every version of every scorecard; scores name the version that made them.
CREATE TABLE health.scorecards (
    name        text NOT NULL,
    version     integer NOT NULL CHECK (version >= 1),
    segment     text NOT NULL,
    definition  jsonb NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);
CREATE INDEX scorecards_segment_idx ON health.scorecards (segment, create_time DESC);

-- The latest score of each account, with its full explanation.
CREATE TABLE health.scores (
    account_id        text PRIMARY KEY,
    score             double precision NOT NULL,
    band              smallint NOT NULL,
    scorecard_name    text NOT NULL,
    scorecard_version integer NOT NULL,
    as_of             date NOT NULL,
    detail            bytea NOT NULL,
    compute_time      timestamptz NOT NULL DEFAULT now()
);

-- One snapshot per account and day, the last computation of that day.
CREATE TABLE health.score_history (
    account_id        text NOT NULL,
    day               date NOT NULL,
    score             double precision NOT NULL,
    band              smallint NOT NULL,
    scorecard_name    text NOT NULL,
    scorecard_version integer NOT NULL,
    PRIMARY KEY (account_id, day)
);
