-- 0003 workflows: workflows, their steps, and the queue of step events that the
-- batched advancement function consumes.
--
-- Workflow states: pending -> running (a step started) -> completed (every step
-- succeeded) | failed (a step failed or was cancelled; no further step starts).
-- A step's state mirrors its job's state and is written in the same transaction as
-- the job's, on the step row: pruning job rows never strands a workflow.
CREATE TABLE {{schema}}.workflows (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    state text NOT NULL DEFAULT 'pending',
    steps_total integer NOT NULL DEFAULT 0 CHECK (steps_total >= 0),
    -- maintained by advance_workflows, once per workflow per batch (not per completion)
    steps_succeeded integer NOT NULL DEFAULT 0 CHECK (steps_succeeded >= 0),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    completed_at timestamptz,
    CONSTRAINT workflows_state_valid CHECK (state IN ('pending', 'running', 'completed', 'failed')),
    CONSTRAINT workflows_finished_has_completed_at CHECK (
        (state IN ('completed', 'failed')) = (completed_at IS NOT NULL)
    ),
    CONSTRAINT workflows_completed_means_all_succeeded CHECK (
        state <> 'completed' OR steps_succeeded = steps_total
    )
);

-- listing (newest first, by state) and pruning (finished, by age)
CREATE INDEX workflows_state_updated ON {{schema}}.workflows (state, updated_at);

CREATE TABLE {{schema}}.workflow_steps (
    workflow_id uuid NOT NULL REFERENCES {{schema}}.workflows (id) ON DELETE CASCADE,
    step_id text NOT NULL CHECK (step_id <> ''),
    position integer NOT NULL,
    -- the step's job as Job.pack() gives it: func, kwargs, queue, priority, ...
    job jsonb NOT NULL CHECK (jsonb_typeof(job) = 'object'),
    dependencies text[] NOT NULL DEFAULT '{}',
    -- steps that depend on this one (the reverse edges), for the counters
    dependents text[] NOT NULL DEFAULT '{}',
    -- dependencies that have not succeeded yet; the step is ready at 0
    remaining_deps integer NOT NULL CHECK (remaining_deps >= 0),
    state text NOT NULL DEFAULT 'pending',
    job_id uuid UNIQUE,
    started_at timestamptz,
    completed_at timestamptz,
    PRIMARY KEY (workflow_id, step_id),
    CONSTRAINT workflow_steps_state_valid CHECK (
        state IN ('pending', 'running', 'retrying', 'succeeded', 'failed', 'cancelled')
    ),
    CONSTRAINT workflow_steps_no_self_dependency CHECK (NOT step_id = ANY (dependencies)),
    CONSTRAINT workflow_steps_started_has_job CHECK (state = 'pending' OR job_id IS NOT NULL)
);

-- the ready steps of a workflow, without scanning its other steps
CREATE INDEX workflow_steps_ready ON {{schema}}.workflow_steps (workflow_id)
    WHERE job_id IS NULL AND remaining_deps = 0;

-- What changed since the last advancement: a step reached a final state, or
-- (step_id NULL) the workflow needs another look. Insert-only for completers;
-- advance_workflows deletes what it consumes. No foreign key: inserts stay cheap
-- and events of deleted workflows are dropped by advance_workflows.
CREATE TABLE {{schema}}.workflow_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id uuid NOT NULL,
    step_id text,
    state text,
    available_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX workflow_events_workflow ON {{schema}}.workflow_events (workflow_id);

-- A step's job names its workflow and step; the unique index makes "each step's
-- job is enqueued exactly once" a constraint, also with many advancing processes.
ALTER TABLE {{schema}}.jobs
    ADD COLUMN workflow_id uuid,
    ADD COLUMN step_id text,
    ADD CONSTRAINT jobs_step_names_workflow CHECK ((workflow_id IS NULL) = (step_id IS NULL));

CREATE UNIQUE INDEX jobs_one_per_workflow_step ON {{schema}}.jobs (workflow_id, step_id)
    WHERE workflow_id IS NOT NULL;

-- complete_jobs now also returns the workflow of each job (a new return type needs a
-- DROP; every function is installed again after a migration).
DROP FUNCTION IF EXISTS {{schema}}.complete_jobs(text, jsonb, timestamptz);
