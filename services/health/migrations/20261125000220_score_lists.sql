-- What lists and the distribution filter and sort by, from the scored signals.
ALTER TABLE health.scores ADD COLUMN segment text NOT NULL DEFAULT '';
ALTER TABLE health.scores ADD COLUMN owner text NOT NULL DEFAULT '';
ALTER TABLE health.scores ADD COLUMN currency text NOT NULL DEFAULT '';
ALTER TABLE health.scores ADD COLUMN arr_minor bigint NOT NULL DEFAULT 0;
CREATE INDEX scores_score_idx ON health.scores (score, account_id);
CREATE INDEX scores_segment_idx ON health.scores (segment, score);
