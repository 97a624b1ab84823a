-- Outbox: messages for other services, written in the same transaction as the
-- change that causes them and delivered at least once by the dispatcher.
CREATE TABLE {schema}.outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id      uuid NOT NULL UNIQUE,
    topic           text NOT NULL,
    payload         bytea NOT NULL,
    trace_context   jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    delivered_at    timestamptz
);
CREATE INDEX outbox_pending_idx ON {schema}.outbox (next_attempt_at, id) WHERE delivered_at IS NULL;

-- Idempotency keys: the first answer to each (method, request_id), replayed
-- to retries of the same request.
CREATE TABLE {schema}.idempotency_keys (
    method      text NOT NULL,
    request_id  text NOT NULL,
    fingerprint bytea NOT NULL,
    response    bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (method, request_id)
);
