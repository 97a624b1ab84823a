-- Wake the matcher when a trigger event arrives, and the executors when a
-- step is added (tenure_platform::wake). Steps that fall due later are
-- waited for by their due time.
CREATE TRIGGER trigger_events_wake AFTER INSERT ON playbooks.trigger_events
    FOR EACH STATEMENT EXECUTE FUNCTION playbooks.wake('triggers');
CREATE TRIGGER steps_wake AFTER INSERT ON playbooks.steps
    FOR EACH STATEMENT EXECUTE FUNCTION playbooks.wake('steps');
