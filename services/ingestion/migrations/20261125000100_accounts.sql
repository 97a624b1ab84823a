-- Accounts as last reported by their source, newest `source_updated_at` wins.
CREATE TABLE ingestion.accounts (
    account_id        text PRIMARY KEY,
    name              text NOT NULL,
    segment           text NOT NULL DEFAULT '',
    industry          text NOT NULL DEFAULT '',
    owner             text NOT NULL DEFAULT '',
    parent_account_id text,
    lifecycle_stage   smallint NOT NULL DEFAULT 0,
    source_updated_at timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX accounts_segment_idx ON ingestion.accounts (segment, account_id);
CREATE INDEX accounts_owner_idx ON ingestion.accounts (owner, account_id);
CREATE INDEX accounts_parent_idx ON ingestion.accounts (parent_account_id) WHERE parent_account_id IS NOT NULL;

-- Every applied version, effective from its source time, so the account as of
-- any past date is known.
CREATE TABLE ingestion.account_versions (
    account_id        text NOT NULL,
    valid_from        timestamptz NOT NULL,
    name              text NOT NULL,
    segment           text NOT NULL,
    industry          text NOT NULL,
    owner             text NOT NULL,
    parent_account_id text,
    lifecycle_stage   smallint NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, valid_from)
);
