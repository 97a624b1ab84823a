-- Wake the scorer when accounts are queued for rescoring, and watch streams
-- when a change is logged (tenure_platform::wake).
CREATE TRIGGER rescore_queue_wake AFTER INSERT ON health.rescore_queue
    FOR EACH STATEMENT EXECUTE FUNCTION health.wake('rescore');
CREATE TRIGGER change_log_wake AFTER INSERT ON health.change_log
    FOR EACH STATEMENT EXECUTE FUNCTION health.wake('changes');
