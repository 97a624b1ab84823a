-- Outbox delivery by lease: a dispatcher claims a batch (lease_until,
-- lease_token) in a short transaction and delivers it with no row locked;
-- a message that failed its last attempt is set aside (dead_at) until an
-- operator retries it.
ALTER TABLE {schema}.outbox
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN lease_token uuid,
    ADD COLUMN dead_at     timestamptz;
DROP INDEX {schema}.outbox_pending_idx;
CREATE INDEX outbox_pending_idx ON {schema}.outbox (topic, next_attempt_at, id)
    WHERE delivered_at IS NULL AND dead_at IS NULL;
CREATE INDEX outbox_dead_idx ON {schema}.outbox (dead_at) WHERE dead_at IS NOT NULL;
