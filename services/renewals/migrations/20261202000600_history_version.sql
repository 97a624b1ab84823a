-- A counter of changes to the history forecasts learn from: contracts,
-- their outcomes, subscription versions and account segments. Constraint
-- triggers, deferred to commit, advance it once per changed row as the
-- changing transaction commits, so the service can keep the rates it
-- read from history until the counter moves (forecasts/history.rs).
CREATE SEQUENCE renewals.history_version;
CREATE FUNCTION renewals.history_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('renewals.history_version');
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER opportunities_history
    AFTER INSERT OR UPDATE OR DELETE ON renewals.opportunities
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION renewals.history_changed();
CREATE CONSTRAINT TRIGGER outcomes_history
    AFTER INSERT OR UPDATE OR DELETE ON renewals.outcomes
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION renewals.history_changed();
CREATE CONSTRAINT TRIGGER subscription_versions_history
    AFTER INSERT OR UPDATE OR DELETE ON renewals.subscription_versions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION renewals.history_changed();
CREATE CONSTRAINT TRIGGER accounts_history
    AFTER INSERT OR DELETE OR UPDATE OF segment ON renewals.accounts
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION renewals.history_changed();
