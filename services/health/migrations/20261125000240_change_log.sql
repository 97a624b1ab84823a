-- Every change of an account's score or band, in order, for watchers.
CREATE TABLE health.change_log (
    seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id     text NOT NULL,
    score          double precision NOT NULL,
    band           smallint NOT NULL,
    previous_score double precision,
    previous_band  smallint NOT NULL DEFAULT 0,
    segment        text NOT NULL,
    owner          text NOT NULL,
    change_time    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX change_log_segment_idx ON health.change_log (segment, seq);
