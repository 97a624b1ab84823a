-- The first day from which the account signals can no longer use a record
-- head's state (Record::useful_before): a settled head is skipped from that
-- day on without its data being read. NULL: no such day. Written with
-- every upsert; the states stored before are given theirs here, by the
-- same rules.
ALTER TABLE ingestion.record_heads ADD COLUMN IF NOT EXISTS useful_before date;

UPDATE ingestion.record_heads SET useful_before = CASE
    WHEN data->>'status' IN ('active', 'trial') THEN (data->>'term_end')::date
    ELSE least((data->>'term_start')::date, (data->>'term_end')::date)
  END
WHERE kind = 'subscription';

UPDATE ingestion.record_heads
SET useful_before = (greatest((data->>'closed_at')::timestamptz, (data->>'opened_at')::timestamptz)
    AT TIME ZONE 'UTC' + interval '90 days')::date + 1
WHERE kind = 'ticket' AND data->>'closed_at' IS NOT NULL;

UPDATE ingestion.record_heads SET useful_before = CASE
    WHEN data->>'status' = 'void' THEN (data->>'issued_on')::date
    ELSE (data->>'paid_on')::date
  END
WHERE kind = 'invoice';

UPDATE ingestion.record_heads
SET useful_before = ((data->>'occurred_at')::timestamptz AT TIME ZONE 'UTC' + interval '90 days')::date + 1
WHERE kind = 'external_signal';
