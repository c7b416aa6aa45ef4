-- 0006: workflow steps are only ever found by key, so every update of a step row
-- (its state, its remaining_deps counter, its job_id) can be HOT.
-- advance_workflows now knows which steps became ready (the counter update returns
-- them), so the partial index of ready steps, whose predicate made each decrement
-- an index insert, goes; so does the unique index on job_id (jobs_one_per_workflow_step
-- already guarantees one job per step, and nothing looks steps up by job).
-- _enqueue_ready takes the steps to look at; its old signature is dropped (every
-- function is installed again after a migration).
DROP INDEX {{schema}}.workflow_steps_ready;
ALTER TABLE {{schema}}.workflow_steps DROP CONSTRAINT workflow_steps_job_id_key;
DROP FUNCTION IF EXISTS {{schema}}._enqueue_ready(uuid[], timestamptz);
