-- The first day on which the account signals can use any state a record
-- has had (Record::useful_from, the earliest over its versions): before
-- it the record is skipped, its versions unread (an invoice issued after
-- a past day a job asks about is not probed for that day). NULL: no such
-- day. Kept with every upsert; the records stored before are given theirs
-- here from their versions, by the same rules.
ALTER TABLE ingestion.record_heads ADD COLUMN IF NOT EXISTS useful_from date;

UPDATE ingestion.record_heads h SET useful_from = v.day
FROM (
  SELECT kind, record_id, min(CASE kind
      WHEN 'subscription' THEN (data->>'term_start')::date
      WHEN 'invoice' THEN (data->>'issued_on')::date
      WHEN 'success_plan' THEN (data->>'start_on')::date
      WHEN 'survey' THEN ((data->>'responded_at')::timestamptz AT TIME ZONE 'UTC')::date
      WHEN 'external_signal' THEN ((data->>'occurred_at')::timestamptz AT TIME ZONE 'UTC')::date
      WHEN 'ticket' THEN (least((data->>'opened_at')::timestamptz, (data->>'closed_at')::timestamptz)
        AT TIME ZONE 'UTC')::date
    END) AS day
  FROM ingestion.record_versions
  WHERE kind IN ('subscription', 'invoice', 'success_plan', 'survey', 'external_signal', 'ticket')
  GROUP BY kind, record_id
) v
WHERE h.kind = v.kind AND h.record_id = v.record_id;
