ALTER TABLE health.scores ADD COLUMN parent_account_id text NOT NULL DEFAULT '';
CREATE INDEX scores_parent_idx ON health.scores (parent_account_id) WHERE parent_account_id <> '';
