-- Only changes to what the history reads move its counter: the horizon
-- probability kept on an open term (the daily sweep, a health sync) changes
-- no rate, and counting it made every forecast read the whole history
-- again after each sweep.
DROP TRIGGER opportunities_history ON renewals.opportunities;
CREATE CONSTRAINT TRIGGER opportunities_history
    AFTER INSERT OR DELETE OR UPDATE OF subscription_id, term_end, account_id, term_start,
        currency, arr_minor, state, next_arr_minor
    ON renewals.opportunities
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION renewals.history_changed();
