-- Monthly partitions of usage_events are made on demand while serving. The
-- runtime role owns no table and may create none, so the schema's owner
-- provides this one function, which makes one month's partition and
-- nothing else, and runs with the owner's rights.
CREATE OR REPLACE FUNCTION ingestion.ensure_usage_events_partition(year int, month int)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ingestion, pg_temp
AS $$
DECLARE
  first_day date := make_date(year, month, 1);
BEGIN
  EXECUTE format(
    'CREATE TABLE IF NOT EXISTS ingestion.%I PARTITION OF ingestion.usage_events FOR VALUES FROM (%L) TO (%L)',
    format('usage_events_%s_%s', lpad(year::text, 4, '0'), lpad(month::text, 2, '0')),
    first_day,
    (first_day + interval '1 month')::date);
END
$$;

REVOKE EXECUTE ON FUNCTION ingestion.ensure_usage_events_partition(int, int) FROM PUBLIC;
