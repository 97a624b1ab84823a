-- Typed custom attributes of accounts, versioned with the account.
ALTER TABLE ingestion.accounts ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}';
ALTER TABLE ingestion.account_versions ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}';

-- Every other kind of source record (contacts, subscriptions, features,
-- tickets, survey responses, invoices, external signals, success metrics):
-- the newest state per record, and every applied version of it.
CREATE TABLE ingestion.record_heads (
    kind        text NOT NULL,
    record_id   text NOT NULL,
    account_id  text,
    updated_at  timestamptz NOT NULL,
    data        jsonb NOT NULL,
    PRIMARY KEY (kind, record_id)
);
CREATE INDEX record_heads_account_idx ON ingestion.record_heads (account_id, kind);

CREATE TABLE ingestion.record_versions (
    kind        text NOT NULL,
    record_id   text NOT NULL,
    account_id  text,
    valid_from  timestamptz NOT NULL,
    data        jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, record_id, valid_from)
);
CREATE INDEX record_versions_account_idx ON ingestion.record_versions (account_id, kind, record_id, valid_from);

-- Sponsor and champion changes, dated by the source: among the strongest churn warnings.
CREATE TABLE ingestion.relationship_changes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  text NOT NULL,
    contact_id  text NOT NULL,
    role        text NOT NULL CHECK (role IN ('sponsor', 'champion')),
    change      text NOT NULL CHECK (change IN ('added', 'removed', 'departed')),
    occurred_at timestamptz NOT NULL,
    UNIQUE (contact_id, role, change, occurred_at)
);
CREATE INDEX relationship_changes_account_idx ON ingestion.relationship_changes (account_id, occurred_at);

-- Dated contract changes of subscriptions; never overwritten.
CREATE TABLE ingestion.subscription_changes (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id    text NOT NULL,
    account_id         text NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('new', 'expansion', 'contraction', 'renewal', 'cancellation')),
    occurred_at        timestamptz NOT NULL,
    currency           char(3) NOT NULL,
    previous_arr_minor bigint NOT NULL,
    new_arr_minor      bigint NOT NULL,
    previous_term_end  date,
    new_term_end       date NOT NULL,
    UNIQUE (subscription_id, kind, occurred_at)
);
CREATE INDEX subscription_changes_account_idx ON ingestion.subscription_changes (account_id, occurred_at);

-- Usage events, partitioned by month of occurrence (partitions are created
-- as months are first seen). Message ids are unique across partitions
-- through event_ids.
CREATE TABLE ingestion.usage_events (
    message_id  text NOT NULL,
    account_id  text NOT NULL,
    user_id     text NOT NULL,
    event_name  text NOT NULL,
    occurred_at timestamptz NOT NULL,
    quantity    double precision NOT NULL,
    properties  jsonb,
    received_at timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (occurred_at);
CREATE INDEX usage_events_account_idx ON ingestion.usage_events (account_id, occurred_at);

CREATE TABLE ingestion.event_ids (
    message_id text PRIMARY KEY
);

-- Daily rollups kept current at ingest, so signals never scan raw events.
CREATE TABLE ingestion.usage_daily_features (
    account_id text NOT NULL,
    day        date NOT NULL,
    feature    text NOT NULL,
    events     bigint NOT NULL,
    quantity   double precision NOT NULL,
    PRIMARY KEY (account_id, day, feature)
);
CREATE TABLE ingestion.usage_daily_users (
    account_id text NOT NULL,
    day        date NOT NULL,
    user_id    text NOT NULL,
    PRIMARY KEY (account_id, day, user_id)
);
