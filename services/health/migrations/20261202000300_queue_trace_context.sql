-- The trace of the notice that marked an account, so that rescoring it
-- later (signals from ingestion, changes to playbooks) continues that trace.
ALTER TABLE health.rescore_queue ADD COLUMN trace_context jsonb NOT NULL DEFAULT '{}';
