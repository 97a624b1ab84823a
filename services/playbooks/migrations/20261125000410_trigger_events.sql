-- Events from other services that may start playbooks, as received.
CREATE TABLE playbooks.trigger_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      text NOT NULL,
    kind        text NOT NULL,
    account_id  text NOT NULL,
    payload     jsonb NOT NULL,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX trigger_events_account_idx ON playbooks.trigger_events (account_id, occurred_at);
