-- Where renewals stands in health's change log: the cursor of the last
-- change whose account it refreshed, so a restart resumes after it.
CREATE TABLE renewals.health_cursor (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    cursor     text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
