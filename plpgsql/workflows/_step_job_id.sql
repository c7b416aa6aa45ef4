-- _step_job_id(p_workflow_id, p_step_id): the id of a workflow step's job, a function
-- of the step, so that the primary key of jobs allows one job per step (migration
-- 0008, whose CHECK constraint spells the same expression: a constraint cannot
-- depend on a function that is installed after the migrations).
-- A single immutable expression: the planner inlines it where it is used.
-- Locks nothing, changes nothing.
CREATE OR REPLACE FUNCTION {{schema}}._step_job_id(p_workflow_id uuid, p_step_id text)
RETURNS uuid
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $fn$
    SELECT md5(p_workflow_id::text || '/' || p_step_id)::uuid
$fn$;

COMMENT ON FUNCTION {{schema}}._step_job_id(uuid, text) IS
    'Id of a workflow step''s job: md5(workflow_id || ''/'' || step_id) as a uuid.';
