-- When each event id was first seen, so that the dedup window can be kept
-- to a stated length (EVENT_DEDUP_WINDOW) instead of growing for ever.
ALTER TABLE ingestion.event_ids ADD COLUMN seen_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX event_ids_seen_idx ON ingestion.event_ids (seen_at);
