-- Wake-ups: a statement that adds work NOTIFYs the channel
-- `<schema>_<what>` when its transaction commits (never when it rolls
-- back), so the service's loops wake at once instead of polling
-- (tenure_platform::wake). One notice per statement, not per row.
CREATE FUNCTION {schema}.wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_' || TG_ARGV[0], '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_wake AFTER INSERT ON {schema}.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.wake('outbox');
