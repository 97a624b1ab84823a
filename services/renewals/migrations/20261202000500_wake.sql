-- Wake the syncer when subscriptions are queued, and the job runner when a
-- forecast job is started (tenure_platform::wake).
CREATE TRIGGER subscription_queue_wake AFTER INSERT ON renewals.subscription_queue
    FOR EACH STATEMENT EXECUTE FUNCTION renewals.wake('subscriptions');
CREATE TRIGGER forecast_jobs_wake AFTER INSERT ON renewals.forecast_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION renewals.wake('jobs');
