-- How each subscription term's renewal ended. Money in integer minor units.
CREATE TABLE renewals.outcomes (
    outcome_id         uuid PRIMARY KEY,
    account_id         text NOT NULL,
    subscription_id    text NOT NULL,
    term_end_date      date NOT NULL,
    kind               smallint NOT NULL CHECK (kind BETWEEN 1 AND 3),
    currency           char(3) NOT NULL,
    previous_arr_minor bigint NOT NULL CHECK (previous_arr_minor >= 0),
    new_arr_minor      bigint NOT NULL CHECK (new_arr_minor >= 0),
    churn_reason       smallint NOT NULL DEFAULT 0,
    churn_note         text NOT NULL DEFAULT '',
    decided_on         date NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subscription_id, term_end_date)
);
CREATE INDEX outcomes_decided_idx ON renewals.outcomes (decided_on DESC, outcome_id DESC);
CREATE INDEX outcomes_account_idx ON renewals.outcomes (account_id);
