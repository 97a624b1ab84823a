-- Trigger events are matched against playbooks once; the trace context
-- of the notice that brought each keeps its runs in the producer's trace.
ALTER TABLE playbooks.trigger_events ADD COLUMN matched_at timestamptz;
ALTER TABLE playbooks.trigger_events ADD COLUMN trace_context jsonb NOT NULL DEFAULT '{}';
CREATE INDEX trigger_events_unmatched_idx ON playbooks.trigger_events (id) WHERE matched_at IS NULL;

-- A playbook run for one account, pinned to the version it started with.
CREATE TABLE playbooks.runs (
    run_id           uuid PRIMARY KEY,
    playbook         text NOT NULL,
    version          integer NOT NULL,
    account_id       text NOT NULL,
    -- 1 active, 2 completed, 3 exited, 4 stalled (a step dead-lettered).
    state            smallint NOT NULL,
    trigger_kind     text NOT NULL,
    trigger_event_id bigint,
    -- Facts templates and conditions can use: account, trigger payload.
    facts            jsonb NOT NULL DEFAULT '{}',
    trace_context    jsonb NOT NULL DEFAULT '{}',
    started_at       timestamptz NOT NULL DEFAULT now(),
    ended_at         timestamptz,
    FOREIGN KEY (playbook, version) REFERENCES playbooks.playbook_versions (name, version)
);
-- One active run per playbook and account.
CREATE UNIQUE INDEX runs_one_active_idx ON playbooks.runs (playbook, account_id) WHERE state IN (1, 4);
CREATE INDEX runs_account_idx ON playbooks.runs (account_id, started_at);
CREATE INDEX runs_playbook_account_idx ON playbooks.runs (playbook, account_id, started_at DESC);

-- Each step a run reached, in order. Pending steps are the work queue.
CREATE TABLE playbooks.steps (
    run_id      uuid NOT NULL REFERENCES playbooks.runs ON DELETE CASCADE,
    seq         integer NOT NULL,
    step_id     text NOT NULL,
    step_type   text NOT NULL,
    -- 1 pending, 2 done, 3 dead.
    state       smallint NOT NULL,
    due_at      timestamptz NOT NULL,
    -- For a wait with a timeout: when it gives up.
    deadline    timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text NOT NULL DEFAULT '',
    result      text NOT NULL DEFAULT '',
    -- When a wait was armed.
    started_at  timestamptz,
    -- When a worker last took it up: picked_at - due_at is the delay.
    picked_at   timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX steps_due_idx ON playbooks.steps (due_at) WHERE state = 1;
CREATE INDEX steps_dead_idx ON playbooks.steps (finished_at, run_id, seq) WHERE state = 3;

CREATE TABLE playbooks.tasks (
    task_id      uuid PRIMARY KEY,
    run_id       uuid NOT NULL,
    seq          integer NOT NULL,
    account_id   text NOT NULL,
    assignee     text NOT NULL,
    title        text NOT NULL,
    body         text NOT NULL,
    priority     text NOT NULL,
    due_on       date NOT NULL,
    -- 1 open, 2 completed.
    status       smallint NOT NULL DEFAULT 1,
    outcome      text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    UNIQUE (run_id, seq)
);
CREATE INDEX tasks_assignee_idx ON playbooks.tasks (assignee, status, due_on, task_id);
CREATE INDEX tasks_account_idx ON playbooks.tasks (account_id);

-- Emails handed to the relay, by Message-ID; the weekly cap counts these.
CREATE TABLE playbooks.emails (
    message_id  text PRIMARY KEY,
    run_id      uuid NOT NULL,
    seq         integer NOT NULL,
    account_id  text NOT NULL,
    recipient   text NOT NULL,
    subject     text NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX emails_recipient_idx ON playbooks.emails (recipient, sent_at);
